"""``mlm-accuracy``: held-out masked-token accuracy and perplexity with fixed BERT masks (:mod:`hfssl.evaluation.text`)."""

from __future__ import annotations

from dataclasses import dataclass

from hfssl.data.token_rows import held_out_texts
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.protocols import ACCURACY, PERPLEXITY, TEXT, Protocol, ProtocolCard, Rows, register_protocol
from hfssl.evaluation.text import masked_token_accuracy
from hfssl.registry import MASKED_LM
from hfssl.settings import RecipeError


@dataclass
class MLMAccuracySettings:
    """``eval.mlm-accuracy``: held-out rows of ``max_seq_length`` tokens (default: the run's
    ``model.max_seq_length``, else 128), BERT's masking with fixed seeds."""

    max_seq_length: int | None = None
    max_documents: int | None = None
    batch_size: int = 32
    seed: int = 0
    mask_probability: float = 0.15
    mask_replace_probability: float = 0.8
    random_replace_probability: float = 0.1

    def __post_init__(self) -> None:
        if self.max_seq_length is not None and self.max_seq_length < 8:
            raise RecipeError(f"eval.mlm-accuracy.max_seq_length must be >= 8, got {self.max_seq_length!r}")
        if self.max_documents is not None and self.max_documents < 1:
            raise RecipeError(f"eval.mlm-accuracy.max_documents must be >= 1 (or null), got {self.max_documents!r}")
        if self.batch_size < 1:
            raise RecipeError(f"eval.mlm-accuracy.batch_size must be >= 1, got {self.batch_size!r}")
        if not 0.0 < self.mask_probability < 1.0:
            raise RecipeError(f"eval.mlm-accuracy.mask_probability must be in (0, 1), got {self.mask_probability!r}")
        if self.mask_replace_probability + self.random_replace_probability > 1.0 or min(
                self.mask_replace_probability, self.random_replace_probability) < 0:
            raise RecipeError("eval.mlm-accuracy: mask_replace_probability and random_replace_probability must be >= 0 "
                              "and sum to at most 1")


def run_mlm_accuracy(context: EvaluationContext, settings: MLMAccuracySettings) -> Rows:
    text_model = context.text_model()
    data = context.text_data()
    texts, split = held_out_texts(data, settings.max_documents)
    length = settings.max_seq_length or _trained_sequence_length(context) or 128
    result = masked_token_accuracy(text_model, texts, length, settings.batch_size, settings.seed,
                                   settings.mask_probability, settings.mask_replace_probability,
                                   settings.random_replace_probability)
    return [{"dataset": data.source, "split": split, "max_seq_length": length,
             "mlm_head": "trained" if text_model.head_trained else "untrained", **result}]


def _trained_sequence_length(context: EvaluationContext) -> int | None:
    """The row length the evaluated model was trained on: its config's or its run recipe's ``max_seq_length``
    (text methods record it), else ``None``."""
    if context.model is not None:
        return getattr(context.model.config, "max_seq_length", None)
    recipe = context.recipe
    if recipe is None and context.model_path is not None:  # the encoder/ folder of a run: the run's recipe
        from hfssl.evaluation.context import run_recipe_path
        from hfssl.recipe import load_recipe

        recipe_file = run_recipe_path(context.model_path)
        recipe = load_recipe(recipe_file) if recipe_file is not None else None
    if recipe is not None:
        return recipe.model.get("max_seq_length")
    return None


MLM_ACCURACY = register_protocol(Protocol(
    "mlm-accuracy", (MASKED_LM,), run_mlm_accuracy, MLMAccuracySettings,
    "held-out masked-token accuracy and perplexity with fixed BERT masks (masked language models)", data=TEXT,
    card=ProtocolCard("Masked-token prediction", "**Masked-token prediction**: held-out documents packed into rows and "
                      "masked as in BERT (15 % of the tokens; 80 % [MASK], 10 % random, 10 % kept) with fixed seeds; "
                      "accuracy of the top prediction and perplexity exp(mean cross-entropy) over the masked tokens.",
                      "fill-mask", "fill-mask", (ACCURACY, PERPLEXITY))))
