"""``next-token``: held-out perplexity and next-token accuracy of a causal language model on fixed rows
(:mod:`hfssl.evaluation.causal_lm`)."""

from __future__ import annotations

from dataclasses import dataclass

from hfssl.data.token_rows import held_out_texts
from hfssl.evaluation.causal_lm import next_token_scores
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.protocols import ACCURACY, PERPLEXITY, TEXT, Protocol, ProtocolCard, Rows, register_protocol
from hfssl.evaluation.protocols.mlm_accuracy import _trained_sequence_length
from hfssl.evaluation.text import load_causal_lm
from hfssl.registry import CAUSAL_LM
from hfssl.settings import RecipeError


@dataclass
class NextTokenSettings:
    """``eval.next-token``: held-out rows of ``max_seq_length`` tokens (default: the run's ``model.max_seq_length``,
    else 128), at most ``max_documents`` held-out documents (all by default)."""

    max_seq_length: int | None = None
    max_documents: int | None = None
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.max_seq_length is not None and self.max_seq_length < 4:
            raise RecipeError(f"eval.next-token.max_seq_length must be >= 4, got {self.max_seq_length!r}")
        if self.max_documents is not None and self.max_documents < 1:
            raise RecipeError(f"eval.next-token.max_documents must be >= 1 (or null), got {self.max_documents!r}")
        if self.batch_size < 1:
            raise RecipeError(f"eval.next-token.batch_size must be >= 1, got {self.batch_size!r}")


def run_next_token(context: EvaluationContext, settings: NextTokenSettings) -> Rows:
    causal_lm = load_causal_lm(context.model, None if context.model is not None else str(context.model_path),
                               context.run_dir)
    data = context.text_data()
    texts, split = held_out_texts(data, settings.max_documents)
    length = settings.max_seq_length or _trained_sequence_length(context) or 128
    result = next_token_scores(causal_lm, texts, length, settings.batch_size)
    return [{"dataset": data.source, "split": split, "max_seq_length": length, **result}]


NEXT_TOKEN = register_protocol(Protocol(
    "next-token", (CAUSAL_LM,), run_next_token, NextTokenSettings,
    "held-out perplexity and next-token accuracy on fixed packed rows (causal language models)", data=TEXT,
    card=ProtocolCard("Next-token prediction", "**Next-token prediction**: held-out documents, each ended by the "
                      "end-of-text token, packed into fixed rows as in training; perplexity exp(mean cross-entropy) and "
                      "the accuracy of the top prediction over every predicted token (perplexities compare only models "
                      "that share a tokenizer).", "text-generation", "text-generation", (PERPLEXITY, ACCURACY))))
