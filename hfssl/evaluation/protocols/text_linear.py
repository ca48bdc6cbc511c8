"""``text-linear``: a linear probe on frozen text features (mean and [CLS] pooling) next to TF-IDF."""

from __future__ import annotations

from dataclasses import dataclass

from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.protocols import TEXT, Protocol, ProtocolCard, Rows, register_protocol
from hfssl.evaluation.protocols.linear import LinearSettings
from hfssl.evaluation.text import CLASSIFICATION_SETS, text_classification_rows
from hfssl.registry import TEXT_FEATURES
from hfssl.settings import RecipeError


@dataclass
class TextLinearSettings:
    """``eval.text-linear``: labelled text sets, poolings, truncation, an optional stratified cap, the
    split and the probe's C grid. The defaults are DATA.md's protocol: every document (BBC News 2,225;
    Wikipedia 9,033), a stratified 70/30 split (seed 0), where TF-IDF + logistic regression scores
    98.4 % / 89.7 %."""

    datasets: tuple[str, ...] = ("builtin:bbc_news", "builtin:wikipedia_topics")
    pooling: tuple[str, ...] = ("mean", "cls")
    max_length: int = 128
    max_documents: int | None = None
    test_fraction: float = 0.3
    c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    validation_fraction: float = 0.1
    batch_size: int = 32

    def __post_init__(self) -> None:
        unknown = [name for name in self.datasets if name not in CLASSIFICATION_SETS]
        if not self.datasets or unknown:
            raise RecipeError(f"eval.text-linear.datasets must name some of {', '.join(CLASSIFICATION_SETS)}, got "
                              f"{list(self.datasets)!r}")
        if not self.pooling or any(value not in ("mean", "cls") for value in self.pooling):
            raise RecipeError(f"eval.text-linear.pooling must list mean and/or cls, got {list(self.pooling)!r}")
        if self.max_length < 8:
            raise RecipeError(f"eval.text-linear.max_length must be >= 8, got {self.max_length!r}")
        if self.max_documents is not None and self.max_documents < 20:
            raise RecipeError(f"eval.text-linear.max_documents must be >= 20 (or null for all), got {self.max_documents!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise RecipeError(f"eval.text-linear.test_fraction must be in (0, 1), got {self.test_fraction!r}")
        LinearSettings(self.c_grid, self.validation_fraction)  # the same checks as eval.linear


def run_text_linear(context: EvaluationContext, settings: TextLinearSettings) -> Rows:
    return text_classification_rows(context.text_model(), tuple(settings.datasets), tuple(settings.pooling),
                                    settings.max_length, settings.max_documents, settings.test_fraction,
                                    tuple(settings.c_grid), settings.validation_fraction, settings.batch_size,
                                    context.eval_config.baselines)


TEXT_LINEAR = register_protocol(Protocol(
    "text-linear", (TEXT_FEATURES,), run_text_linear, TextLinearSettings,
    "linear probe on frozen text features (mean and CLS pooling): BBC News and Wikipedia topics, with TF-IDF", data=TEXT,
    card=ProtocolCard("Linear probe", "**Linear probe on text features**: logistic regression on standardised frozen "
                      "features (mean over the tokens, or the [CLS] token) of a stratified 70 % of the documents, C chosen "
                      "on a held-out part of them, accuracy on the other 30 %; the TF-IDF column is TF-IDF + logistic "
                      "regression on the same split.", "text-classification", "text-classification", chosen=("C",))))
