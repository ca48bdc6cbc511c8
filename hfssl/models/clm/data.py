"""Causal-language-modelling data: a byte-level BPE tokenizer, packed rows, and the on-device inputs.

Pipeline (``MethodSpec.build_data`` = :func:`build_training_data`):

1. **Text** through the shared text module (:mod:`hfssl.data.text`): any ``datasets`` source,
   ``builtin:english_corpus``, streaming; a row that is not a string is named by its index. One document
   in :data:`hfssl.data.token_rows.HOLDOUT_EVERY` is held out of training (the ``next-token`` protocol
   measures on it, or on ``data.eval_split`` when the source has that split).
2. **Tokenizer**: GPT-2's byte-level BPE (every byte is in the vocabulary: no unknown token) of
   ``model.vocab_size`` trained with ``tokenizers`` on the training split and cached
   (:func:`hfssl.data.tokenizer_cache.cached_tokenizer`), with ``<|endoftext|>`` as end-of-text, start
   and padding token as in GPT-2; or the tokenizer of ``data.tokenizer_name_or_path`` / of the starting
   checkpoint.
3. **Rows** (``datasets.map``, cached): documents, each ended by the end-of-text token, are cut into
   rows of ``max_seq_length`` tokens (:func:`hfssl.data.token_rows.pack_documents` with ``overlap=1``:
   consecutive rows share one token, so every token after the first is a target exactly once; each
   ``map`` batch's stream starts with an end-of-text token, as every later document follows one; the
   last row of a batch is padded). Attention crosses document boundaries inside a row, as in GPT-2's
   and ``run_clm``'s grouped texts; the end-of-text token tells the model where one ends.
4. **On the device** (:class:`InputBuilder`): the rows as they are, and a dropout seed drawn from the
   engine's generator per micro-batch (exact resume).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from hfssl.data.token_rows import TokenRowCollator, encode_documents, pack_documents, training_documents
from hfssl.data.tokenizer_cache import cached_tokenizer
from hfssl.data.training import TrainingData
from hfssl.models.clm.configuration_clm import CLMConfig

logger = logging.getLogger(__name__)

END_OF_TEXT = "<|endoftext|>"
#: Documents per ``datasets.map`` batch when packing.
MAP_BATCH = 1000


# ---- tokenizer ------------------------------------------------------------------------------------


def train_byte_level_bpe(texts: Any, vocab_size: int, lowercase: bool = False, max_length: int = 1024,
                         min_frequency: int = 2) -> Any:
    """Train GPT-2's byte-level BPE on ``texts`` (an iterator of strings) with ``tokenizers``.

    Returns:
        a ``PreTrainedTokenizerFast`` whose id 0 is ``<|endoftext|>`` (end of text, start of text and padding,
        as in GPT-2), with no post-processor (a prompt is encoded as it is, for ``text-generation``).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if tokenizer.get_vocab_size() <= 1 + len(pre_tokenizers.ByteLevel.alphabet()):
        raise ValueError("the BPE vocabulary is empty: the training text holds nothing; point data.source at real text")
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                                   unk_token=END_OF_TEXT, pad_token=END_OF_TEXT, model_max_length=max_length,
                                   clean_up_tokenization_spaces=False)


def load_tokenizer(name_or_path: str) -> Any:
    """A fast tokenizer from a folder or Hub id, with an end-of-text token (its padding defaults to it)."""
    from transformers import AutoTokenizer

    from hfssl.backbones import resolve_pretrained_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained_path(name_or_path))
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"the tokenizer of {name_or_path!r} is not a fast (🤗 tokenizers) tokenizer")
    if tokenizer.eos_token is None:
        raise ValueError(f"the tokenizer of {name_or_path!r} has no eos_token: causal language modelling ends every "
                         "document with it; use a tokenizer that has one")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def run_tokenizer(recipe: Any, config: CLMConfig, dataset: Any, column: str) -> Any:
    """The tokenizer of a run: ``data.tokenizer_name_or_path``, the checkpoint's, or byte-level BPE trained here."""
    data = recipe.data
    if data.tokenizer_name_or_path or config.backbone_name_or_path:
        return load_tokenizer(data.tokenizer_name_or_path or config.backbone_name_or_path)
    return cached_tokenizer(dataset, column, data.source, "bpe", [config.vocab_size, data.lowercase, config.max_seq_length],
                            lambda texts: train_byte_level_bpe(texts, config.vocab_size, data.lowercase,
                                                               max(1024, config.max_seq_length)))


def tokenizer_config_updates(tokenizer: Any, config: CLMConfig) -> dict[str, Any]:
    """Model config values that come from the tokenizer; raises when it does not fit the model."""
    size = len(tokenizer)
    updates: dict[str, Any] = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if config.backbone_name_or_path:
        if size > config.vocab_size:
            raise ValueError(f"the tokenizer has {size} tokens but the model {config.backbone_name_or_path!r} only "
                             f"{config.vocab_size} embeddings: the tokenizer and the model do not match; use the "
                             "checkpoint's own tokenizer (unset data.tokenizer_name_or_path)")
    else:
        updates["vocab_size"] = size
    return updates


# ---- rows -----------------------------------------------------------------------------------------


def pack_causal_rows(documents: list[list[int]], eos_id: int, pad_id: int, length: int) -> tuple[list[list[int]], list[int]]:
    """Rows of ``length`` tokens for next-token prediction (see the module docstring, step 3)."""
    return pack_documents(documents, None, eos_id, pad_id, length, overlap=1, lead_id=eos_id)


def _causal_rows(batch: dict[str, list], column: str, tokenizer: Any, length: int) -> dict[str, list]:
    rows, lengths = pack_causal_rows(encode_documents(batch[column], tokenizer), tokenizer.eos_token_id,
                                     tokenizer.pad_token_id, length)
    return {"input_ids": rows, "length": lengths}


def build_rows(dataset: Any, column: str, tokenizer: Any, length: int, streaming: bool) -> Any:
    """The packed training rows of ``dataset`` (``input_ids`` and the number of real tokens, ``length``)."""
    options: dict[str, Any] = {"batched": True, "batch_size": MAP_BATCH, "remove_columns": [column]}
    if not streaming:
        options["desc"] = "clm: packed rows"
    return dataset.select_columns([column]).map(_causal_rows, fn_kwargs={"column": column, "tokenizer": tokenizer,
                                                                         "length": length}, **options)


class InputBuilder:
    """``make_inputs(batch, generator)`` of causal language modelling: the rows and a dropout seed."""

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        # The decoder's dropout draws from torch's global generator, whose state on resume depends on what
        # ran before (DataLoader iterators draw from it); a seed per micro-batch makes the masks exact.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "dropout_seed": seed}


# ---- the engine hooks -----------------------------------------------------------------------------


def build_training_data(recipe: Any, accelerator: Any) -> TrainingData:
    """``MethodSpec.build_data`` of causal language modelling: tokenizer, packed rows and the tokenizer's
    config values. Raises ``ValueError`` naming the input for empty text, a missing text column, a row
    length above the decoder's positions and a tokenizer that does not fit the model."""
    config = CLMConfig(**recipe.model)
    data = recipe.data
    train_documents, column = training_documents(recipe, "next-token")
    tokenizer = run_tokenizer(recipe, config, train_documents, column)
    updates = tokenizer_config_updates(tokenizer, config)
    config = CLMConfig(**{**recipe.model, **updates})
    rows = build_rows(train_documents, column, tokenizer, config.max_seq_length, data.streaming)
    if not data.streaming:
        if len(rows) == 0:
            raise ValueError(f"dataset {data.source!r} gave no training rows")
        rows = rows.with_format("numpy")

    def save(directory: Path) -> None:
        tokenizer.save_pretrained(directory)

    return TrainingData(train_dataset=rows, collate_fn=TokenRowCollator(tokenizer.pad_token_id),
                        make_inputs=InputBuilder(), config_updates=updates, save_artifacts=save)


def build_inputs(recipe: Any, data: TrainingData) -> InputBuilder:
    """``MethodSpec.build_inputs``: the rows need no device work besides the dropout seed."""
    return InputBuilder()
