"""``few-shot``: seeded N-way K-shot episodes from the test split (nearest centroid, logistic regression)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hfssl.evaluation.few_shot import CLASSIFIERS as FEW_SHOT_CLASSIFIERS
from hfssl.evaluation.few_shot import few_shot_evaluate
from hfssl.evaluation.protocols import ProtocolCard, Rows, feature_protocol, register_protocol
from hfssl.settings import RecipeError


@dataclass
class FewShotSettings:
    """``eval.few-shot``: N-way K-shot episodes drawn from the test split (see :mod:`hfssl.evaluation.few_shot`)."""

    ways: int = 5
    shots: tuple[int, ...] = (1, 5)
    queries: int = 15
    episodes: int = 600
    classifiers: tuple[str, ...] = FEW_SHOT_CLASSIFIERS
    c: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("ways", "queries", "episodes"):
            if getattr(self, name) < 1:
                raise RecipeError(f"eval.few-shot.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.ways < 2:
            raise RecipeError(f"eval.few-shot.ways must be >= 2 (a 1-way episode is always right), got {self.ways!r}")
        if not self.shots or any(value < 1 for value in self.shots):
            raise RecipeError(f"eval.few-shot.shots must list positive shot counts, got {self.shots!r}")
        unknown = [name for name in self.classifiers if name not in FEW_SHOT_CLASSIFIERS]
        if not self.classifiers or unknown:
            raise RecipeError(f"eval.few-shot.classifiers must be a list from {', '.join(FEW_SHOT_CLASSIFIERS)}, "
                              f"got {list(self.classifiers)!r}")
        if self.c <= 0:
            raise RecipeError(f"eval.few-shot.c must be > 0, got {self.c!r}")


def few_shot_score(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                   settings: FewShotSettings, num_classes: int) -> Rows:
    """Episodes from the test split (the classes a model is evaluated on); the training split is unused."""
    return few_shot_evaluate(test_f, test_y, settings.ways, tuple(settings.shots), settings.queries, settings.episodes,
                             tuple(settings.classifiers), settings.c, settings.seed)


FEW_SHOT = register_protocol(feature_protocol(
    "few-shot", few_shot_score, FewShotSettings,
    "N-way K-shot episodes from the test split: nearest-centroid and logistic regression, mean accuracy +- 95 % CI",
    ProtocolCard("Few-shot", "**Few-shot**: N-way K-shot episodes drawn from the test split; nearest-centroid (NC) and "
                 "logistic regression (LR) on L2-normalised frozen features, mean accuracy over the episodes (95 % "
                 "interval in eval_results.json).", metrics=())))
