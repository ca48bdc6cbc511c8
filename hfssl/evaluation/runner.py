"""Evaluation protocols, their registry, and ``eval_results.json``.

A protocol is registered once in :data:`PROTOCOLS` under the name used by recipes
(``eval.protocols``) and by ``hfssl eval --protocol``. There are two kinds:

* ``features`` protocols (``knn``, ``linear``) score frozen image features. They are called as
  ``run(train_features (N, D), train_labels (N,), test_features (M, D), test_labels (M,),
  eval_config, num_classes) -> list[dict]`` and run both on the model's features and, when
  ``eval.baselines`` is set, on raw pixels (the ``baselines`` list).
* ``path`` protocols need the model itself, not image features (word similarity and analogies
  of a word2vec run). They are called as ``run(path, data_config, eval_config) -> list[dict]``.

Each returned dict is one result row; the runner adds ``"protocol"`` (and ``"features"`` for
feature protocols). Metric names are the protocol's own (``top1``/``top5``, ``spearman``,
``accuracy``); accuracies are fractions in [0, 1].

Registering a protocol from another module::

    from hfssl.evaluation.runner import register_protocol
    register_protocol("word-similarity", evaluate_word_similarity, kind="path", description="...")

Modules listed in :data:`PROTOCOL_MODULES` are imported the first time the registry is looked up,
so their protocols are known to recipes and to the CLI without importing them (and their optional
dependencies, such as gensim) when hfssl is imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hfssl.evaluation.features import extract_features, iter_image_batches, load_feature_extractor
from hfssl.evaluation.knn import knn_evaluate
from hfssl.evaluation.linear_probe import linear_probe
from hfssl.training.recipe import DataConfig, EvalConfig

logger = logging.getLogger(__name__)

FEATURES = "features"
PATH = "path"
#: Modules whose import registers more protocols; a module that is not installed is skipped.
PROTOCOL_MODULES: list[str] = ["hfssl.evaluation.word_vectors"]


@dataclass(frozen=True)
class EvalProtocol:
    """A named evaluation protocol.

    Attributes:
        name: the name used in ``eval.protocols`` and ``--protocol``.
        run: the function (signature by ``kind``, see the module docstring).
        kind: ``"features"`` (frozen image features) or ``"path"`` (the model path).
        description: one line for ``hfssl eval --help`` and error messages.
    """

    name: str
    run: Callable[..., list[dict[str, Any]]]
    kind: str = FEATURES
    description: str = ""

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self.run(*args, **kwargs)


PROTOCOLS: dict[str, EvalProtocol] = {}
_modules_loaded = False


def register_protocol(
    name: str, run: Callable[..., list[dict[str, Any]]], kind: str = FEATURES, description: str = ""
) -> EvalProtocol:
    """Add (or replace) a protocol in :data:`PROTOCOLS` and return it."""
    if kind not in (FEATURES, PATH):
        raise ValueError(f"protocol {name!r}: kind must be {FEATURES!r} or {PATH!r}, got {kind!r}")
    protocol = EvalProtocol(name, run, kind, description)
    PROTOCOLS[name] = protocol
    return protocol


def _load_protocol_modules() -> None:
    global _modules_loaded
    if _modules_loaded:
        return
    _modules_loaded = True
    for module in PROTOCOL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:  # the module exists but one of its imports is missing
                raise
            logger.debug("protocol module %s is not available", module)


def available_protocols() -> list[str]:
    """Names of every registered protocol."""
    _load_protocol_modules()
    return sorted(PROTOCOLS)


def get_protocol(name: str) -> EvalProtocol:
    """Look up a protocol by name, with the list of known ones in the error."""
    _load_protocol_modules()
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; known protocols: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


def _knn_protocol(
    train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray, eval_config: EvalConfig, num_classes: int
) -> list[dict[str, Any]]:
    return knn_evaluate(train_f, train_y, test_f, test_y, eval_config.knn_k, eval_config.knn_temperature, num_classes)


def _linear_protocol(
    train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray, eval_config: EvalConfig, num_classes: int
) -> list[dict[str, Any]]:
    return [linear_probe(train_f, train_y, test_f, test_y, eval_config.linear_c_grid, eval_config.validation_fraction, num_classes)]


register_protocol("knn", _knn_protocol, description="weighted kNN on L2-normalised features (Wu et al. 2018), top-1/top-5 per k")
register_protocol("linear", _linear_protocol, description="logistic regression on standardised frozen features, C chosen on a validation split")


def evaluate_features(
    train_f: np.ndarray,
    train_y: np.ndarray,
    test_f: np.ndarray,
    test_y: np.ndarray,
    eval_config: EvalConfig,
    protocols: Sequence[str],
    num_classes: int,
    features_name: str = "model",
) -> list[dict[str, Any]]:
    """Run feature protocols on ``(N, D)`` train and ``(M, D)`` test features.

    Args:
        train_f / test_f: frozen features; train_y / test_y: int class indices.
        eval_config: k values, temperature, C grid, validation fraction.
        protocols: names of ``features`` protocols (``knn``, ``linear``).
        num_classes: number of classes C.
        features_name: written to each row's ``"features"`` (``model``, ``raw_pixels``).

    Returns:
        result rows ``{"protocol", "features", ...metrics}`` in protocol order.
    """
    rows: list[dict[str, Any]] = []
    for name in protocols:
        protocol = get_protocol(name)
        if protocol.kind != FEATURES:
            raise ValueError(f"protocol {name!r} evaluates a model path, not image features; run it through evaluate_path")
        for row in protocol(train_f, train_y, test_f, test_y, eval_config, num_classes):
            rows.append({"protocol": name, "features": features_name, **row})
    return rows


def raw_pixel_features(dataset: Any, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Flattened uint8 pixels scaled to [0, 1]: ``(N, C*H*W)`` float32 and the ``(N,)`` labels."""
    pixels, labels = [], []
    for batch, batch_labels in iter_image_batches(dataset, batch_size):
        pixels.append(batch.reshape(len(batch), -1).astype(np.float32) / 255.0)
        labels.append(batch_labels)
    return np.concatenate(pixels), np.concatenate(labels)


def _eval_data_config(data: DataConfig, eval_config: EvalConfig) -> DataConfig:
    """The data config with the evaluation's sample limits applied (the smaller limit wins)."""

    def smaller(a: int | None, b: int | None) -> int | None:
        return b if a is None else a if b is None else min(a, b)

    return dataclasses.replace(
        data,
        max_train_samples=smaller(data.max_train_samples, eval_config.max_train_samples),
        max_eval_samples=smaller(data.max_eval_samples, eval_config.max_test_samples),
    )


def _split_protocols(protocols: Sequence[str]) -> tuple[list[str], list[EvalProtocol]]:
    features, paths = [], []
    for name in protocols:
        protocol = get_protocol(name)
        if protocol.kind == FEATURES:
            features.append(name)
        else:
            paths.append(protocol)
    return features, paths


def evaluate_path(path: str, data: DataConfig, eval_config: EvalConfig, protocols: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate a model path (hfssl run, exported encoder or transformers vision model).

    Feature protocols load the labelled image splits of ``data`` with
    :func:`hfssl.data.load_image_splits`, extract frozen features with
    :func:`hfssl.evaluation.features.load_feature_extractor`, and, when ``eval_config.baselines``
    is set, run the same protocols on raw pixels. Path protocols get ``(path, data, eval_config)``.

    Args:
        path: the model to evaluate.
        data: where the evaluation images come from (source, splits, columns, image size).
        eval_config: protocol settings and sample limits.
        protocols: protocol names; defaults to ``eval_config.protocols``.

    Returns:
        the ``eval_results.json`` mapping (see ARCHITECTURE.md): dataset, splits, ``num_train``,
        ``num_test`` and ``num_classes`` (when image protocols ran), ``results`` and ``baselines``.
    """
    protocols = list(eval_config.protocols if protocols is None else protocols)
    if not protocols:
        raise ValueError("no evaluation protocol given; choose from: " + ", ".join(available_protocols()))
    feature_protocols, path_protocols = _split_protocols(protocols)
    output: dict[str, Any] = {"dataset": data.source, "train_split": data.train_split, "test_split": data.eval_split}
    if feature_protocols:
        output.update(_evaluate_images(path, _eval_data_config(data, eval_config), eval_config, feature_protocols))
    else:
        output.update(results=[], baselines=[])
    for protocol in path_protocols:
        output["results"].extend({"protocol": protocol.name, **row} for row in protocol(path, data, eval_config))
    return output


def _evaluate_images(path: str, data: DataConfig, eval_config: EvalConfig, protocols: list[str]) -> dict[str, Any]:
    from hfssl.data import load_image_splits

    splits = load_image_splits(data)
    if splits.test is None:
        raise ValueError(f"dataset {data.source!r} has no test split to evaluate on; set the test split (data.eval_split / --test-split)")
    if splits.num_classes is None:
        raise ValueError(f"dataset {data.source!r} has no labels: kNN and linear probes need a label column (--label-column)")
    extractor = load_feature_extractor(path)
    train_f, train_y = extract_features(extractor, splits.train, eval_config.batch_size)
    test_f, test_y = extract_features(extractor, splits.test, eval_config.batch_size)
    logger.info("features: %d train and %d test rows of width %d from %s", len(train_y), len(test_y), train_f.shape[1], path)
    return image_results(train_f, train_y, test_f, test_y, splits.train, splits.test, eval_config, protocols,
                         int(splits.num_classes))


def image_results(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                  train_set: Any, test_set: Any, eval_config: EvalConfig, protocols: list[str],
                  num_classes: int) -> dict[str, Any]:
    """The image part of eval_results.json: counts, the model's rows and (when
    ``eval_config.baselines``) the same protocols on the raw pixels of ``train_set`` / ``test_set``."""
    output: dict[str, Any] = {
        "num_train": int(len(train_y)),
        "num_test": int(len(test_y)),
        "num_classes": num_classes,
        "results": evaluate_features(train_f, train_y, test_f, test_y, eval_config, protocols, num_classes, "model"),
        "baselines": [],
    }
    if eval_config.baselines:
        train_p, _ = raw_pixel_features(train_set)
        test_p, _ = raw_pixel_features(test_set)
        output["baselines"] = evaluate_features(train_p, train_y, test_p, test_y, eval_config, protocols, num_classes, "raw_pixels")
    return output


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
    if merge and output.is_file():
        try:
            existing = json.loads(output.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{str(output)!r} is not valid JSON ({error}); move it away or pass another --output") from error
        results = merge_eval_results(existing, results)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=output.parent, prefix=".eval_results.", suffix=".json")
    with os.fdopen(handle, "w") as file:
        file.write(json.dumps(results, indent=2) + "\n")
    os.replace(temporary, output)
    return results


def format_results_table(results: dict[str, Any]) -> str:
    """A fixed-width text table of the result and baseline rows, for logs."""
    rows = [("protocol", "features", "settings", "metrics")]
    metric_names = ("top1", "top5", "spearman", "pearson", "accuracy")
    for row in results.get("results", []) + results.get("baselines", []):
        settings = ", ".join(
            f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in row.items()
            if key not in ("protocol", "features", *metric_names) and value is not None
        )
        metrics = ", ".join(f"{key}={100 * row[key]:.2f}%" if key in ("top1", "top5", "accuracy") else f"{key}={row[key]:.4f}"
                            for key in metric_names if isinstance(row.get(key), (int, float)))
        rows.append((str(row.get("protocol")), str(row.get("features", "-")), settings, metrics))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    header = f"dataset {results.get('dataset')} ({results.get('train_split')} -> {results.get('test_split')})"
    if "num_train" in results:
        header += f": {results['num_train']} train, {results['num_test']} test, {results['num_classes']} classes"
    return "\n".join([header, *lines])
