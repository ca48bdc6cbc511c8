"""``knn``: weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018; DINO's k=20, T=0.07)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hfssl.evaluation.knn import knn_evaluate
from hfssl.evaluation.protocols import ProtocolCard, Rows, feature_protocol, register_protocol
from hfssl.settings import RecipeError


@dataclass
class KNNSettings:
    """``eval.knn``: neighbour counts and the vote temperature (Wu et al. 2018; DINO uses k=20, T=0.07)."""

    k: tuple[int, ...] = (20, 200)
    temperature: float = 0.07

    def __post_init__(self) -> None:
        if not self.k or any(value < 1 for value in self.k):
            raise RecipeError(f"eval.knn.k must be a list of positive neighbour counts, got {self.k!r}")
        if self.temperature <= 0:
            raise RecipeError(f"eval.knn.temperature must be > 0, got {self.temperature!r}")


def knn_score(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
              settings: KNNSettings, num_classes: int) -> Rows:
    return knn_evaluate(train_f, train_y, test_f, test_y, settings.k, settings.temperature, num_classes)


KNN = register_protocol(feature_protocol(
    "knn", knn_score, KNNSettings, "weighted kNN on L2-normalised features (Wu et al. 2018), top-1/top-5 per k",
    ProtocolCard("kNN", "**kNN**: cosine similarity between L2-normalised frozen features; the k nearest training "
                 "examples vote with weights exp(similarity / T) (Wu et al. 2018, as in DINO and solo-learn).",
                 setting_labels={"temperature": "T"})))
