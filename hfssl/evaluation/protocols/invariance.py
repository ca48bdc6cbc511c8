"""``invariance``: how much an image encoder's features move under augmentations (:mod:`hfssl.evaluation.invariance`).

On the first ``max_samples`` test images: Wang & Isola's alignment over two views of the training pipeline (the
run's ``views`` section; the default one for a model without a recipe) and uniformity of the clean test features,
and for each view operation applied alone the cosine of an image to its augmented copy and to other images' copies,
the normalised invariance score and the top-1 retrieval of its own copy. One row per operation and a summary row
(``operation: all``: alignment, uniformity and the means over the operations); with ``eval.baselines`` the same rows
for raw pixels of the same augmented images. Any model serving ``image-features`` qualifies: an hfssl run (in
memory at the end of training, or its folder), its exported encoder, any transformers vision model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hfssl.evaluation.context import EvaluationContext, run_recipe_path
from hfssl.evaluation.features import check_finite_features, iter_image_batches
from hfssl.evaluation.invariance import OPERATIONS, Embed, invariance_rows
from hfssl.evaluation.protocols import IMAGE, CardTable, Metric, Protocol, ProtocolCard, Rows, register_protocol
from hfssl.evaluation.protocols.alignment_uniformity import ALIGNMENT, UNIFORMITY
from hfssl.recipe import load_recipe
from hfssl.registry import IMAGE_FEATURES
from hfssl.settings import RecipeError
from hfssl.views import ViewsConfig

POSITIVE = Metric("positive_cosine", "cosine_similarity", "cosine to its augmented copy", False)
NEGATIVE = Metric("negative_cosine", "cosine_similarity", "cosine to other images' copies", False)
INVARIANCE = Metric("invariance", "invariance", "invariance score", True)
COPY_TOP1 = Metric("copy_retrieval_top1", "accuracy", "own copy retrieved (top-1)", True)
#: The most test images: uniformity holds ``N (N - 1) / 2`` distances in memory.
MAX_SAMPLES = 5000


@dataclass
class InvarianceSettings:
    """``eval.invariance``: the ``operations`` applied alone (names of :data:`hfssl.evaluation.invariance.OPERATIONS`,
    default all), the first ``max_samples`` test images (2 to 5000), the ``seed`` of the one generator, and Wang &
    Isola's exponents ``alpha`` (alignment) and ``t`` (uniformity), both 2."""

    operations: tuple[str, ...] = tuple(OPERATIONS)
    max_samples: int = 1000
    seed: int = 0
    alpha: float = 2.0
    t: float = 2.0

    def __post_init__(self) -> None:
        known = ", ".join(OPERATIONS)
        if isinstance(self.operations, str) or not self.operations:
            raise RecipeError(f"eval.invariance.operations must list view operations (from {known}), got "
                              f"{self.operations!r}")
        unknown = [name for name in self.operations if name not in OPERATIONS]
        if unknown:
            raise RecipeError(f"eval.invariance.operations: unknown operation(s) {unknown}; the view operations are "
                              f"{known}")
        if len(set(self.operations)) != len(self.operations):
            raise RecipeError(f"eval.invariance.operations lists an operation twice: {list(self.operations)!r}")
        if not isinstance(self.max_samples, int) or isinstance(self.max_samples, bool) or \
                not 2 <= self.max_samples <= MAX_SAMPLES:
            raise RecipeError(f"eval.invariance.max_samples must be an integer from 2 to {MAX_SAMPLES} (test images "
                              f"measured), got {self.max_samples!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise RecipeError(f"eval.invariance.seed must be an integer >= 0, got {self.seed!r}")
        if not self.alpha > 0 or not self.t > 0:
            raise RecipeError(f"eval.invariance.alpha and t must be > 0 (Wang & Isola use 2), got {self.alpha!r} and "
                              f"{self.t!r}")


def _views(context: EvaluationContext) -> tuple[ViewsConfig, str]:
    """The training ``views`` of the evaluated run (also of a run's exported ``encoder/``), else the defaults."""
    if context.recipe is not None:
        return context.recipe.views, "recipe"
    recipe_file = run_recipe_path(context.model_path) if context.model_path is not None else None
    if recipe_file is not None:
        return load_recipe(recipe_file).views, "recipe"
    return ViewsConfig(), "default"


def held_out_pixels(context: EvaluationContext, max_samples: int) -> torch.Tensor:
    """The first ``max_samples`` images of the labelled test split, uint8 ``(N, C, H, W)``."""
    batches = []
    count = 0
    for pixels, _ in iter_image_batches(context.image_splits().test, min(max_samples, 1024)):
        batches.append(pixels[:max_samples - count])
        count += len(batches[-1])
        if count >= max_samples:
            break
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(batches)))


def run_invariance(context: EvaluationContext, settings: InvarianceSettings) -> Rows:
    """The rows of :func:`hfssl.evaluation.invariance.invariance_rows` for the model (and raw pixels)."""
    encoder = context.image_encoder()
    views, source = _views(context)
    pixels = held_out_pixels(context, settings.max_samples).to(encoder.device)

    def model_features(batch: torch.Tensor) -> torch.Tensor:
        features = encoder.embed(encoder.transform(batch).to(encoder.device))
        if not torch.isfinite(features).all():  # a diverged model is never scored (exit code 3)
            check_finite_features(features.float().cpu().numpy(), context.describe_model(), "test (or augmented test)")
        return features

    embedders: dict[str, Embed] = {"model": model_features}
    if context.eval_config.baselines:
        embedders["raw_pixels"] = lambda batch: batch.reshape(len(batch), -1).float().div(255.0)
    was_training = encoder.model.training
    encoder.model.eval()
    try:
        found = invariance_rows(embedders, pixels, views, tuple(settings.operations), settings.seed,
                                context.eval_config.batch_size, settings.alpha, settings.t)
    finally:
        encoder.model.train(was_training)
    return [{"features": name, **row, "seed": settings.seed, "views": source} for name, rows in found.items()
            for row in rows]


def invariance_table(rows: list[dict[str, Any]]) -> CardTable:
    """The card's operation x similarity table; the summary row (``all``) carries alignment and uniformity."""
    columns = ("Operation", "cosine to its copy", "cosine to other images", "invariance (%)",
               "own copy retrieved, top-1 (%)", "alignment", "uniformity")
    cells = []
    for row in rows:
        name = "all (mean)" if row["operation"] == "all" else row["operation"]
        cells.append((name, _number(row.get("positive_cosine")), _number(row.get("negative_cosine")),
                      _percent(row.get("invariance")), _percent(row.get("copy_retrieval_top1")),
                      _number(row.get("alignment")), _number(row.get("uniformity"))))
    samples = rows[0].get("samples", "the")
    views = {row.get("views") for row in rows}
    where = "the run's views section" if views == {"recipe"} else "the default views settings"
    return CardTable("Invariance to augmentations", columns, tuple(cells),
                     f"Each operation applied alone to {samples} test images, with the strengths of {where}; cosines "
                     "of L2-normalised features; invariance = (copy - others) / (1 - others), 100 for features that do "
                     "not move; the last row: the means over the operations, and alignment and uniformity (Wang & Isola "
                     "2020, lower is better) over two training views of each image and over pairs of clean test images.")


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) else "-"


INVARIANCE_PROTOCOL = register_protocol(Protocol(
    "invariance", (IMAGE_FEATURES,), run_invariance, InvarianceSettings,
    "invariance of frozen features to each view operation alone (cosine to the augmented copy, copy retrieval), "
    "with alignment over training views and uniformity (Wang & Isola 2020)",
    data=IMAGE, held_out=True,
    card=ProtocolCard("Invariance", "**Invariance to augmentations**: each view operation of the training pipeline "
                      "applied alone to test images; the cosine similarity of an image's frozen features to those of "
                      "its augmented copy and to other images' copies, the invariance score (copy - others) / "
                      "(1 - others) and how often the nearest copy is the image's own; with Wang & Isola's alignment "
                      "(two training views of an image) and uniformity (the test features), lower is better for both.",
                      "image-feature-extraction", "feature-extraction",
                      (INVARIANCE, COPY_TOP1, POSITIVE, NEGATIVE, ALIGNMENT, UNIFORMITY),
                      setting_labels={"operation": "operation"}, bookkeeping=("samples", "operations", "views"),
                      table=invariance_table)))
