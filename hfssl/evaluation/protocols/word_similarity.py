"""``word-similarity``: Spearman correlation of word-vector cosines with WordSim-353 and SimLex-999 judgements."""

from __future__ import annotations

from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.protocols import SPEARMAN, PEARSON, Protocol, ProtocolCard, Rows, register_protocol
from hfssl.evaluation.word_vectors import word_similarity_rows
from hfssl.registry import WORD_VECTORS


def run_word_similarity(context: EvaluationContext, settings: None) -> Rows:
    return word_similarity_rows(context.word_vectors())


WORD_SIMILARITY = register_protocol(Protocol(
    "word-similarity", (WORD_VECTORS,), run_word_similarity, None,
    "Spearman on WordSim-353 and SimLex-999 (word2vec models and files)", data=None,
    card=ProtocolCard("Word similarity", "**Word similarity**: Spearman correlation between cosine similarities of word "
                      "vectors and human similarity judgements.", "feature-extraction", "feature-extraction",
                      (SPEARMAN, PEARSON))))
