"""``analogy``: 3CosAdd accuracy on the Google analogy set among the most frequent words (gensim's protocol)."""

from __future__ import annotations

from dataclasses import dataclass

from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.protocols import ACCURACY, Protocol, ProtocolCard, Rows, register_protocol
from hfssl.evaluation.word_vectors import DEFAULT_RESTRICT_VOCAB, analogy_rows
from hfssl.registry import WORD_VECTORS
from hfssl.settings import RecipeError


@dataclass
class AnalogySettings:
    """``eval.analogy``: answers are searched among the ``restrict_vocab`` most frequent words (gensim's default)."""

    restrict_vocab: int = DEFAULT_RESTRICT_VOCAB

    def __post_init__(self) -> None:
        if self.restrict_vocab < 1:
            raise RecipeError(f"eval.analogy.restrict_vocab must be >= 1, got {self.restrict_vocab!r}")


def run_analogy(context: EvaluationContext, settings: AnalogySettings) -> Rows:
    return analogy_rows(context.word_vectors(), settings.restrict_vocab)


ANALOGY = register_protocol(Protocol(
    "analogy", (WORD_VECTORS,), run_analogy, AnalogySettings,
    "3CosAdd accuracy on the Google analogy set, top 30,000 words (word2vec)", data=None,
    card=ProtocolCard("Analogy", "**Analogies**: a : b :: c : ? answered by the nearest vector to b - a + c (3CosAdd).",
                      "feature-extraction", "feature-extraction", (ACCURACY,))))
