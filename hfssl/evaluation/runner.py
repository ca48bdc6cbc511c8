"""The one evaluation dispatcher: the end of training and ``hfssl eval`` both run :func:`evaluate`.

:func:`evaluate` takes an :class:`~hfssl.evaluation.context.EvaluationContext` and a list of
protocol names (:mod:`hfssl.evaluation.protocols`), checks that the model can serve each one, runs
them, and returns the ``eval_results.json`` mapping (ARCHITECTURE.md): ``dataset``, the splits,
``num_train`` / ``num_test`` / ``num_classes`` when image protocols ran, ``results`` (the model's
rows) and ``baselines`` (raw-pixel rows). :func:`check_eval_config` is the same check without the
work, run when a recipe is loaded for training, so that a protocol the model cannot serve, an
unknown protocol or a misspelt protocol setting stops the run before it starts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hfssl.data.config import SourceConfig
from hfssl.files import atomic_write_text
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.protocols import PROTOCOLS, available_protocols, get_protocol
from hfssl.recipe import EvalConfig, Recipe
from hfssl.settings import RecipeError, build_section, suggest

logger = logging.getLogger(__name__)

#: ``features`` values of baseline rows (raw pixels for images, TF-IDF for text).
BASELINE_FEATURES = ("raw_pixels", "tfidf")


def check_eval_config(eval_config: EvalConfig, capabilities: Sequence[str], model: str,
                      protocols: Sequence[str] | None = None) -> None:
    """Refuse unknown protocols, settings of unknown protocols, bad settings and protocols the model
    cannot serve, each with the reason and the fix.

    Args:
        eval_config: the recipe's ``eval`` section.
        capabilities: what the model provides (``MethodSpec.provides``).
        model: how to name the model in messages (``the simclr model``).
        protocols: the protocols to run; defaults to ``eval_config.protocols``.

    Raises:
        RecipeError: naming the protocol or setting.
    """
    names = list(eval_config.protocols if protocols is None else protocols)
    known = available_protocols()
    for name in names:
        if name not in PROTOCOLS:
            raise RecipeError(f"unknown evaluation protocol {name!r} in eval.protocols.{suggest(name, known)} "
                              f"Known protocols: {', '.join(known)}")
    for name, values in eval_config.settings.items():
        if name not in PROTOCOLS:
            raise RecipeError(f"eval.{name}: no evaluation protocol is called {name!r}.{suggest(name, known)}")
        protocol = PROTOCOLS[name]
        if protocol.settings is None:
            if values:
                raise RecipeError(f"eval.{name}: the {name} protocol has no settings; remove eval.{name}")
            continue
        build_section(protocol.settings, f"eval.{name}", values)
    for name in names:
        missing = [need for need in PROTOCOLS[name].needs if need not in capabilities]
        if missing:
            servable = [other for other in known if all(need in capabilities for need in PROTOCOLS[other].needs)]
            raise RecipeError(
                f"evaluation protocol {name!r} needs {', '.join(missing)}, which {model} does not provide "
                f"(it provides {', '.join(capabilities) or 'nothing'}); protocols it can serve: "
                f"{', '.join(servable) or 'none'}"
            )


def check_recipe(recipe: Recipe) -> None:
    """:func:`check_eval_config` for a training recipe (its method's capabilities)."""
    spec = recipe.spec
    check_eval_config(recipe.eval, spec.provides, f"the {spec.name} model")


def evaluate(context: EvaluationContext, protocols: Sequence[str] | None = None) -> dict[str, Any]:
    """Run ``protocols`` (default: ``context.eval_config.protocols``) and return the results mapping."""
    names = list(context.eval_config.protocols if protocols is None else protocols)
    if not names:
        raise ValueError("no evaluation protocol given; choose from: " + ", ".join(available_protocols()))
    check_eval_config(context.eval_config, context.capabilities, context.describe_model(), names)
    data = context.data_config
    output: dict[str, Any] = {
        "dataset": data.source if data is not None else None,
        "train_split": data.train_split if data is not None else None,
        "test_split": data.eval_split if data is not None else None,
    }
    results: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    for name in names:
        protocol = get_protocol(name)
        for row in protocol.run(context, context.settings(protocol)):
            (baselines if row.get("features") in BASELINE_FEATURES else results).append({"protocol": name, **row})
        context.protocols_run.append(name)
    if "splits" in context._cache:  # image protocols ran: record what they were measured on
        splits = context.image_splits()
        output.update(num_train=len(splits.train), num_test=len(splits.test), num_classes=context.num_classes)
    output.update(results=results, baselines=baselines)
    for row in results + baselines:
        if row.get("section", "all") == "all":
            logger.info("eval %s (%s): %s", row.get("protocol"), row.get("features", "model"),
                        {k: v for k, v in row.items() if k in ("k", "C", "dataset", "top1", "top5", "spearman", "accuracy")})
    return output


def draw_protocol_pictures(context: EvaluationContext, images_dir: Path) -> list[Path]:
    """The pictures of the protocols that ran on ``context`` and draw their own (``Protocol.draw``)."""
    pictures: list[Path] = []
    for name in dict.fromkeys(context.protocols_run):
        protocol = get_protocol(name)
        if protocol.draw is not None:
            Path(images_dir).mkdir(parents=True, exist_ok=True)
            pictures += protocol.draw(context, Path(images_dir))
    return pictures


def evaluate_path(path: str, data: SourceConfig | None, eval_config: EvalConfig,
                  protocols: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate a model path (hfssl run, exported encoder, transformers vision model, word2vec file)."""
    return evaluate(EvaluationContext.for_path(path, data, eval_config), protocols)


def evaluate_features(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                      eval_config: EvalConfig, protocols: Sequence[str], num_classes: int,
                      features_name: str = "model") -> list[dict[str, Any]]:
    """Run feature protocols on given ``(N, D)`` / ``(M, D)`` features (rows named ``features_name``)."""
    rows: list[dict[str, Any]] = []
    for name in protocols:
        protocol = get_protocol(name)
        if protocol.score is None:
            raise ValueError(f"protocol {name!r} does not score image features (it needs {', '.join(protocol.needs)})")
        settings = build_section(protocol.settings, f"eval.{name}", eval_config.protocol_settings(name))
        for row in protocol.score(train_f, train_y, test_f, test_y, settings, num_classes):
            row.pop("predictions", None)
            rows.append({"protocol": name, "features": features_name, **row})
    return rows


def _same_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(key) == b.get(key) for key in ("dataset", "train_split", "test_split"))


def merge_eval_results(existing: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Merge new results into an existing ``eval_results.json`` mapping.

    Rows of the protocols that ran again are replaced; rows of other protocols are kept, except
    image-feature rows (those with a ``"features"`` key) measured on a different dataset or split than the new image results (the
    top-level ``dataset`` field would otherwise mislabel them), which are dropped with a warning.
    """
    new_protocols = {row.get("protocol") for row in new.get("results", []) + new.get("baselines", [])}
    new_has_images = "num_train" in new
    data_changed = new_has_images and "num_train" in existing and not _same_data(existing, new)
    if data_changed:
        logger.warning(
            "eval results: %s was evaluated on %s (%s/%s) before; dropping its old image-feature rows",
            "the model", existing.get("dataset"), existing.get("train_split"), existing.get("test_split"),
        )
    def keep(row: dict[str, Any]) -> bool:
        if row.get("protocol") in new_protocols:
            return False
        # Rows of feature protocols carry "features" (model / raw_pixels); path protocols' rows do not.
        return not (data_changed and "features" in row)

    merged = dict(existing)
    if new_has_images or "dataset" not in existing:
        merged.update({key: value for key, value in new.items() if key not in ("results", "baselines")})
    for section in ("results", "baselines"):
        merged[section] = [row for row in existing.get(section, []) if keep(row)] + list(new.get(section, []))
    return merged


def write_eval_results(results: dict[str, Any], output: str | Path, merge: bool = True) -> dict[str, Any]:
    """Write results as JSON (atomically), merged with the file's current content when ``merge``.

    Returns:
        what was written.
    """
    output = Path(output)
    if output.is_dir():
        raise ValueError(f"cannot write the results to {str(output)!r}: it is a folder; give a file path, for example "
                         f"{str(output / 'eval_results.json')!r}")
    if merge and output.is_file():
        try:
            existing = json.loads(output.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{str(output)!r} is not valid JSON ({error}); move it away or pass another --output") from error
        results = merge_eval_results(existing, results)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Atomic, with the umask's mode (mkstemp alone would leave it 0600); a full disk is exit code 4.
    atomic_write_text(output, json.dumps(results, indent=2) + "\n", "evaluation results")
    return results


def format_results_table(results: dict[str, Any]) -> str:
    """A fixed-width text table of the result and baseline rows, for logs."""
    rows = [("protocol", "features", "settings", "metrics")]
    metric_names = ("top1", "top5", "spearman", "pearson", "accuracy", "recall_at_1", "recall_at_5", "recall_at_10")
    for row in results.get("results", []) + results.get("baselines", []):
        settings = ", ".join(
            f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in row.items()
            if key not in ("protocol", "features", *metric_names) and value is not None
            and not isinstance(value, (list, dict))  # class names of zero-shot rows: in the JSON only
        )
        metrics = ", ".join(f"{key}={100 * row[key]:.2f}%" if key in ("top1", "top5", "accuracy") or key.startswith("recall")
                            else f"{key}={row[key]:.4f}"
                            for key in metric_names if isinstance(row.get(key), (int, float)))
        rows.append((str(row.get("protocol")), str(row.get("features", "-")), settings, metrics))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    header = f"dataset {results.get('dataset')} ({results.get('train_split')} -> {results.get('test_split')})"
    if "num_train" in results:
        header += f": {results['num_train']} train, {results['num_test']} test, {results['num_classes']} classes"
    return "\n".join([header, *lines])
