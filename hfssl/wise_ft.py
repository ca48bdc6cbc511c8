"""``hfssl wise-ft A B``: weight-space ensembles of two image-text dual encoders (WiSE-FT).

Wortsman et al. 2022, "Robust fine-tuning of zero-shot models" (https://arxiv.org/abs/2109.01903): fine-tuning a
zero-shot model gains accuracy on the reference distribution and often loses it under a distribution shift; the
linear interpolation of the two sets of weights, ``theta(alpha) = (1 - alpha) * theta_A + alpha * theta_B``
(eq. 1, ``A`` the zero-shot / before model, ``B`` the fine-tuned / after one), keeps most of both (their fig. 1).

What is interpolated: every floating tensor of the transferable dual encoder's ``state_dict`` (parameters and
floating buffers such as running statistics, as the paper's code interpolates the whole state dict), in float64
and cast back to its dtype (``torch.lerp``: ``alpha = 0`` gives A's tensor and ``alpha = 1`` B's, bit for bit).
Buffers that are not floating (integer ones, and the non-persistent ``position_ids`` / ``token_type_ids`` that the
state dict leaves out) are B's: the interpolated model is a copy of B with the mixed state dict loaded. A and B must have the same
model class, the same tensor names and the same shape for each: anything else is refused, naming the tensor.

A and B are hfssl runs of an image-text method (their ``encoder/``, or the dual encoder built from the full model
and the run's recipe when there is none) or exported dual-encoder folders / Hub ids
(:meth:`hfssl.evaluation.context.EvaluationContext.dual_encoder`, the objects ``hfssl eval`` scores). Every
interpolated model runs with B's processor. The scoring is the ``zero-shot`` protocol's
(:func:`hfssl.evaluation.protocols.zero_shot.zero_shot_rows`) with the ``data`` and ``eval.zero-shot`` settings of a
recipe (``--recipe``, else B's run recipe, else A's): the held-out split of ``data.source`` is the reference
distribution, each source of ``eval.zero-shot.datasets`` (``builtin:emoji_twitter`` beside ``builtin:emoji``) a
shifted one.

Output (``--output DIR``, a new or empty folder or an earlier report's): ``wise_ft.json`` (alpha -> top-1 / top-5 per
source), ``wise_ft.png`` (top-1 against alpha per source and, with a shifted source, shifted against reference
accuracy along the interpolation: the paper's fig. 1), ``wise_ft.md``; ``--save-alpha X`` also exports
``theta(X)`` as a plain transformers folder with B's processor, ``DIR/alpha-X`` (its own manifest, kind export).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hfssl.evaluation.context import EvaluationContext, run_recipe_path
from hfssl.evaluation.image_text import DualEncoder
from hfssl.evaluation.online import zero_shot_settings
from hfssl.evaluation.protocols.zero_shot import zero_shot_rows
from hfssl.export import write_directory
from hfssl.files import atomic_write_text
from hfssl.plots import figure
from hfssl.recipe import EvalConfig, Recipe, load_recipe
from hfssl.registry import is_hfssl_run
from hfssl.settings import RecipeError

logger = logging.getLogger(__name__)

REPORT_FILES = ("wise_ft.json", "wise_ft.png", "wise_ft.md")
PAPER_URL = "https://arxiv.org/abs/2109.01903"


def parse_alphas(text: str) -> list[float]:
    """``"0,0.25,0.5"`` -> ``[0.0, 0.25, 0.5]``: mixing coefficients in [0, 1], sorted, without repeats."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise RecipeError(f"--alpha {text!r}: give comma-separated numbers in [0, 1], for example "
                          "0,0.25,0.5,0.75,1") from error
    bad = [value for value in values if not (math.isfinite(value) and 0.0 <= value <= 1.0)]
    if not values or bad:
        raise RecipeError(f"--alpha {text!r}: every mixing coefficient must be in [0, 1] (0 is A, 1 is B); got "
                          f"{bad or 'none'}")
    return sorted(set(values))


def check_same_architecture(model_a: torch.nn.Module, model_b: torch.nn.Module, names: tuple[str, str] = ("A", "B")
                            ) -> None:
    """The same class, tensor names and shapes; a :class:`ValueError` names the first difference."""
    first, second = names
    if type(model_a) is not type(model_b):
        raise ValueError(f"{first} is a {type(model_a).__name__} and {second} a {type(model_b).__name__}: WiSE-FT "
                         "interpolates two models of the same architecture (a fine-tuned model and the one it started from)")
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    only_a, only_b = sorted(set(state_a) - set(state_b)), sorted(set(state_b) - set(state_a))
    if only_a or only_b:
        raise ValueError(f"{first} and {second} differ in architecture: "
                         + "; ".join(part for part in (
                             f"{len(only_a)} tensors only in {first} ({', '.join(only_a[:3])})" if only_a else "",
                             f"{len(only_b)} tensors only in {second} ({', '.join(only_b[:3])})" if only_b else "")
                             if part))
    for name, tensor in state_a.items():
        if tensor.shape != state_b[name].shape:
            raise ValueError(f"{first} and {second} differ in architecture: {name} has shape {tuple(tensor.shape)} in "
                             f"{first} and {tuple(state_b[name].shape)} in {second}")


def interpolate_state(state_a: dict[str, torch.Tensor], state_b: dict[str, torch.Tensor], alpha: float
                      ) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * A + alpha * B`` for every floating tensor (computed in float64, cast to B's dtype; exact at
    ``alpha`` 0 and 1); other tensors (integer buffers) are B's. Both mappings have the same names and shapes."""
    mixed = {}
    for name, tensor_b in state_b.items():
        tensor_a = state_a[name]
        if tensor_b.is_floating_point():
            value = torch.lerp(tensor_a.detach().to(torch.float64), tensor_b.detach().to(torch.float64), alpha)
            mixed[name] = value.to(tensor_b.dtype)
        else:
            mixed[name] = tensor_b.detach().clone()
    return mixed


def interpolated_model(model_a: torch.nn.Module, model_b: torch.nn.Module, alpha: float) -> torch.nn.Module:
    """A copy of ``model_b`` holding ``theta(alpha)`` (see :func:`interpolate_state`), in eval mode."""
    check_same_architecture(model_a, model_b)
    model = copy.deepcopy(model_b)
    model.load_state_dict(interpolate_state(model_a.state_dict(), model_b.state_dict(), alpha), strict=True)
    return model.eval()


@dataclass
class WiseFTResult:
    """``alphas``: alpha -> source -> ``{"top1", "top5"}``; ``reference``: the evaluation data's source;
    ``shifted``: the other sources; ``paths``: the files written."""

    alphas: dict[float, dict[str, dict[str, float]]]
    reference: str
    shifted: list[str]
    paths: dict[str, Path]


def scoring_recipe(path_a: str, path_b: str, recipe_path: str | None) -> Recipe:
    """The recipe whose ``data`` and ``eval.zero-shot`` settings score the models: ``recipe_path``, else B's run
    recipe, else A's."""
    if recipe_path is None:
        found = [recipe for recipe in (run_recipe_path(path_b), run_recipe_path(path_a)) if recipe is not None]
        if not found:
            raise RecipeError(f"neither {path_a} nor {path_b} is an hfssl run with a recipe.yaml: give --recipe, a "
                              "recipe whose data (the reference distribution's held-out split) and eval.zero-shot "
                              "(templates, class names, datasets: the shifted distributions) score the models")
        recipe_path = str(found[0])
    recipe = load_recipe(recipe_path)
    if recipe.spec.modality != "image-text":
        raise RecipeError(f"{recipe_path} is a {recipe.method} recipe ({recipe.spec.modality} data): WiSE-FT scores "
                          "zero-shot classification, which needs an image-text recipe (data of image-caption pairs)")
    zero_shot_settings(recipe)  # a bad eval.zero-shot is refused before any model is loaded
    return recipe


def load_endpoint(path: str, name: str, eval_config: EvalConfig) -> DualEncoder:
    """The dual encoder of A or B (``name``), as ``hfssl eval`` loads it."""
    context = EvaluationContext.for_path(path, None, eval_config)
    try:
        return context.dual_encoder()
    except (ValueError, OSError) as error:
        raise ValueError(f"{name} ({path}): {error}") from error


def check_output_folder(output: Path) -> None:
    """A new or empty folder, or one holding an earlier report (its files are replaced); never a run or export."""
    if output.exists() and not output.is_dir():
        raise RecipeError(f"--output {output} is a file; give a folder for the WiSE-FT report")
    if output.is_dir():
        if is_hfssl_run(output) or (output / ".hfssl-manifest.json").exists():
            raise RecipeError(f"--output {output} is an hfssl run or export folder; give another folder")
        names = {path.name for path in output.iterdir()}
        if names and "wise_ft.json" not in names:
            raise RecipeError(f"--output {output} holds other files ({', '.join(sorted(names)[:3])}); give a new or "
                              "empty folder, or the folder of an earlier `hfssl wise-ft` report")


def wise_ft(path_a: str, path_b: str, alphas: Sequence[float], output: str | Path, recipe_path: str | None = None,
            save_alpha: float | None = None, device: str | None = None) -> WiseFTResult:
    """Score ``theta(alpha)`` for each alpha and write the report (see the module docstring)."""
    output = Path(output)
    check_output_folder(output)
    if save_alpha is not None and not (math.isfinite(save_alpha) and 0.0 <= save_alpha <= 1.0):
        raise RecipeError(f"--save-alpha {save_alpha}: a mixing coefficient in [0, 1]")
    recipe = scoring_recipe(path_a, path_b, recipe_path)
    settings = zero_shot_settings(recipe)
    encoder_a = load_endpoint(path_a, "A", recipe.eval)
    encoder_b = load_endpoint(path_b, "B", recipe.eval)
    check_same_architecture(encoder_a.model, encoder_b.model, (f"A ({path_a})", f"B ({path_b})"))
    if encoder_a.processor.image_processor.to_dict() != encoder_b.processor.image_processor.to_dict():
        logger.warning("A's and B's image processors differ: every interpolated model is scored with B's")
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model_a, model_b = encoder_a.model.to(target).eval(), encoder_b.model.to(target).eval()
    data = EvaluationContext(eval_config=recipe.eval, data_config=recipe.data, recipe=recipe)
    results: dict[float, dict[str, dict[str, float]]] = {}
    for alpha in alphas:
        model = interpolated_model(model_a, model_b, alpha)
        rows = zero_shot_rows(DualEncoder(model, encoder_b.processor, recipe.eval.batch_size, name=f"alpha={alpha:g}"),
                              data.image_text_test, settings)
        results[alpha] = {row.get("dataset", recipe.data.source): {"top1": row["top1"], "top5": row["top5"]}
                          for row in rows}
        logger.info("WiSE-FT alpha=%g: %s", alpha, {source: round(value["top1"], 4) for source, value in
                                                    results[alpha].items()})
        del model
    result = WiseFTResult(results, recipe.data.source, list(settings.datasets), {})
    output.mkdir(parents=True, exist_ok=True)
    result.paths = write_report(result, output, path_a, path_b)
    if save_alpha is not None:
        folder = output / f"alpha-{save_alpha:g}"
        model = interpolated_model(model_a, model_b, save_alpha).to("cpu")
        with write_directory(folder) as staging:
            model.save_pretrained(staging, safe_serialization=True)
            encoder_b.processor.save_pretrained(staging)
        result.paths["model"] = folder
    return result


def write_report(result: WiseFTResult, output: Path, path_a: str, path_b: str) -> dict[str, Path]:
    """``wise_ft.json``, ``wise_ft.png`` and ``wise_ft.md`` in ``output``."""
    paths = {"json": output / "wise_ft.json", "png": output / "wise_ft.png", "markdown": output / "wise_ft.md"}
    data = {"method": "WiSE-FT (Wortsman et al. 2022)", "paper": PAPER_URL, "model_a": str(path_a),
            "model_b": str(path_b), "reference": result.reference, "shifted": result.shifted,
            "theta": "(1 - alpha) * theta_A + alpha * theta_B over every floating tensor; integer buffers from B",
            "alphas": {f"{alpha:g}": sources for alpha, sources in result.alphas.items()}}
    atomic_write_text(paths["json"], json.dumps(data, indent=2) + "\n")
    draw_curve(result, paths["png"])
    atomic_write_text(paths["markdown"], markdown_report(result, path_a, path_b))
    return paths


def draw_curve(result: WiseFTResult, path: Path) -> Path:
    """Top-1 (%) against alpha, one line per source; with shifted sources, also the shifted top-1 against the
    reference top-1 along the interpolation (Wortsman et al. 2022, fig. 1), alpha written at each point."""
    alphas = list(result.alphas)
    sources = [result.reference, *result.shifted]
    panels = 2 if result.shifted else 1
    fig = figure(5.0 * panels, 4.0)
    axes = fig.add_subplot(1, panels, 1)
    for index, source in enumerate(sources):
        axes.plot(alphas, [100 * result.alphas[alpha][source]["top1"] for alpha in alphas], marker="o",
                  linestyle="-" if index == 0 else "--",
                  label=f"{source} ({'reference' if index == 0 else 'shifted'})")
    axes.set_xlabel("alpha (0: A, zero-shot; 1: B, fine-tuned)")
    axes.set_ylabel("zero-shot top-1 (%)")
    axes.set_title("WiSE-FT: accuracy against the mixing coefficient", fontsize=9)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    if result.shifted:
        curve = fig.add_subplot(1, 2, 2)
        reference = [100 * result.alphas[alpha][result.reference]["top1"] for alpha in alphas]
        for source in result.shifted:
            shifted = [100 * result.alphas[alpha][source]["top1"] for alpha in alphas]
            curve.plot(reference, shifted, marker="o", label=source)
            for alpha, x, y in zip(alphas, reference, shifted):
                curve.annotate(f"{alpha:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        curve.set_xlabel(f"top-1 on {result.reference} (%)")
        curve.set_ylabel("top-1 under the shift (%)")
        curve.set_title("Reference against shifted accuracy (labels: alpha)", fontsize=9)
        curve.legend(fontsize=7)
        curve.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Description": f"hfssl wise-ft alphas={len(alphas)} shifted={len(result.shifted)}"})
    return path


def markdown_report(result: WiseFTResult, path_a: str, path_b: str) -> str:
    sources = [result.reference, *result.shifted]
    lines = ["# WiSE-FT", "",
             f"Weight-space ensembles (Wortsman et al. 2022, [Robust fine-tuning of zero-shot models]({PAPER_URL})) of",
             f"A = `{path_a}` (zero-shot / before) and B = `{path_b}` (fine-tuned / after):",
             "theta(alpha) = (1 - alpha) theta_A + alpha theta_B over every floating tensor (integer buffers from B),",
             f"scored by zero-shot classification on the held-out split of `{result.reference}` (reference)"
             + (f" and of {', '.join(f'`{source}`' for source in result.shifted)} (shifted)." if result.shifted else "."),
             "", "| alpha | " + " | ".join(f"{source} top-1 | top-5" for source in sources) + " |",
             "|---" * (1 + 2 * len(sources)) + "|"]
    for alpha, values in result.alphas.items():
        lines.append(f"| {alpha:g} | " + " | ".join(f"{100 * values[source]['top1']:.1f} % | "
                                                    f"{100 * values[source]['top5']:.1f} %" for source in sources) + " |")
    lines += ["", "![WiSE-FT curve](wise_ft.png)", ""]
    return "\n".join(lines)


__all__ = ["WiseFTResult", "check_same_architecture", "interpolate_state", "interpolated_model", "parse_alphas",
           "wise_ft"]
