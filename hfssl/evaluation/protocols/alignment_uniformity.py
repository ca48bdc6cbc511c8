"""``alignment-uniformity``: Wang & Isola 2020's alignment and uniformity of sentence embeddings on held-out text."""

from __future__ import annotations

from dataclasses import dataclass

from hfssl.data.token_rows import held_out_texts
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.protocols import TEXT, Metric, Protocol, ProtocolCard, Rows, register_protocol
from hfssl.evaluation.sentence_embeddings import alignment_uniformity_rows
from hfssl.registry import TEXT_FEATURES
from hfssl.settings import RecipeError

ALIGNMENT = Metric("alignment", "alignment", "alignment (lower is better)", False)
UNIFORMITY = Metric("uniformity", "uniformity", "uniformity (lower is better)", False)


@dataclass
class AlignmentUniformitySettings:
    """``eval.alignment-uniformity``: pairs of consecutive held-out sentences (at most ``max_pairs``), the
    poolings, truncation, and Wang & Isola's exponents (alpha 2, t 2)."""

    pooling: tuple[str, ...] = ("mean",)
    max_length: int = 64
    max_pairs: int = 2000
    max_documents: int | None = None
    alpha: float = 2.0
    t: float = 2.0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not self.pooling or any(value not in ("mean", "cls") for value in self.pooling):
            raise RecipeError(f"eval.alignment-uniformity.pooling must list mean and/or cls, got {list(self.pooling)!r}")
        if self.max_length < 8:
            raise RecipeError(f"eval.alignment-uniformity.max_length must be >= 8, got {self.max_length!r}")
        if self.max_pairs < 2:
            raise RecipeError(f"eval.alignment-uniformity.max_pairs must be >= 2, got {self.max_pairs!r}")
        if self.max_documents is not None and self.max_documents < 1:
            raise RecipeError(f"eval.alignment-uniformity.max_documents must be >= 1 (or null), got {self.max_documents!r}")
        if self.alpha <= 0 or self.t <= 0:
            raise RecipeError(f"eval.alignment-uniformity.alpha and t must be > 0, got {self.alpha!r} and {self.t!r}")
        if self.batch_size < 1:
            raise RecipeError(f"eval.alignment-uniformity.batch_size must be >= 1, got {self.batch_size!r}")


def run_alignment_uniformity(context: EvaluationContext, settings: AlignmentUniformitySettings) -> Rows:
    data = context.text_data()
    documents, split = held_out_texts(data, settings.max_documents)
    rows = alignment_uniformity_rows(context.text_model(), documents, tuple(settings.pooling), settings.max_length,
                                     settings.max_pairs, settings.batch_size, settings.alpha, settings.t)
    return [{"dataset": data.source, "split": split, **row} for row in rows]


ALIGNMENT_UNIFORMITY = register_protocol(Protocol(
    "alignment-uniformity", (TEXT_FEATURES,), run_alignment_uniformity, AlignmentUniformitySettings,
    "alignment (consecutive held-out sentences) and uniformity of L2-normalised sentence embeddings (Wang & Isola 2020)",
    data=TEXT,
    card=ProtocolCard("Alignment / uniformity", "**Alignment and uniformity** (Wang & Isola 2020) of the L2-normalised "
                      "sentence embeddings of held-out text: alignment is the mean squared distance between consecutive "
                      "sentences of one document, uniformity the log of the mean exp(-2 x squared distance) over all "
                      "pairs of sentences; lower is better for both.", "sentence-similarity", "sentence-similarity",
                      (ALIGNMENT, UNIFORMITY), bookkeeping=("pairs", "sentences"))))
