"""``text-knn``: weighted kNN topic agreement on frozen text features (BBC News, Wikipedia topics), with TF-IDF."""

from __future__ import annotations

from dataclasses import dataclass

from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.protocols import TEXT, Protocol, ProtocolCard, Rows, register_protocol
from hfssl.evaluation.sentence_embeddings import text_knn_rows
from hfssl.evaluation.text import CLASSIFICATION_SETS
from hfssl.registry import TEXT_FEATURES
from hfssl.settings import RecipeError


@dataclass
class TextKNNSettings:
    """``eval.text-knn``: labelled text sets, poolings, truncation, an optional stratified cap, the split (as
    ``text-linear``'s: stratified 70/30, seed 0), neighbour counts and the vote temperature (``knn``'s)."""

    datasets: tuple[str, ...] = ("builtin:bbc_news", "builtin:wikipedia_topics")
    pooling: tuple[str, ...] = ("mean", "cls")
    max_length: int = 128
    max_documents: int | None = None
    test_fraction: float = 0.3
    k: tuple[int, ...] = (20,)
    temperature: float = 0.07
    batch_size: int = 32

    def __post_init__(self) -> None:
        unknown = [name for name in self.datasets if name not in CLASSIFICATION_SETS]
        if not self.datasets or unknown:
            raise RecipeError(f"eval.text-knn.datasets must name some of {', '.join(CLASSIFICATION_SETS)}, got "
                              f"{list(self.datasets)!r}")
        if not self.pooling or any(value not in ("mean", "cls") for value in self.pooling):
            raise RecipeError(f"eval.text-knn.pooling must list mean and/or cls, got {list(self.pooling)!r}")
        if self.max_length < 8:
            raise RecipeError(f"eval.text-knn.max_length must be >= 8, got {self.max_length!r}")
        if self.max_documents is not None and self.max_documents < 20:
            raise RecipeError(f"eval.text-knn.max_documents must be >= 20 (or null for all), got {self.max_documents!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise RecipeError(f"eval.text-knn.test_fraction must be in (0, 1), got {self.test_fraction!r}")
        if not self.k or any(value < 1 for value in self.k):
            raise RecipeError(f"eval.text-knn.k must be a list of positive neighbour counts, got {self.k!r}")
        if self.temperature <= 0:
            raise RecipeError(f"eval.text-knn.temperature must be > 0, got {self.temperature!r}")
        if self.batch_size < 1:
            raise RecipeError(f"eval.text-knn.batch_size must be >= 1, got {self.batch_size!r}")


def run_text_knn(context: EvaluationContext, settings: TextKNNSettings) -> Rows:
    return text_knn_rows(context.text_model(), tuple(settings.datasets), tuple(settings.pooling), settings.max_length,
                         settings.max_documents, settings.test_fraction, tuple(settings.k), settings.temperature,
                         settings.batch_size, context.eval_config.baselines)


TEXT_KNN = register_protocol(Protocol(
    "text-knn", (TEXT_FEATURES,), run_text_knn, TextKNNSettings,
    "weighted kNN topic agreement on frozen text features: BBC News and Wikipedia topics, with TF-IDF", data=TEXT,
    card=ProtocolCard("kNN", "**kNN on text features**: the k most cosine-similar training documents (a stratified 70 %) "
                      "vote for the topic of each test document (30 %) with weights exp(similarity / T) (Wu et al. "
                      "2018); the TF-IDF column is the same vote over TF-IDF vectors.", "text-classification",
                      "text-classification", setting_labels={"temperature": "T"})))
