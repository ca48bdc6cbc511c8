"""Masked-language-modelling data: a WordPiece tokenizer, training rows, and the on-device inputs.

Pipeline (``MethodSpec.build_data`` = :func:`build_training_data`):

1. **Text** through the shared text module (:mod:`hfssl.data.text`): any ``datasets`` source,
   ``builtin:english_corpus``, streaming. Documents whose index ``i`` has ``i % HOLDOUT_EVERY ==
   HOLDOUT_EVERY - 1`` are always held out of training (:func:`split_held_out`); the ``mlm-accuracy``
   protocol evaluates on them, or on ``data.eval_split`` when the source has that split.
2. **Tokenizer**: a WordPiece vocabulary of ``model.vocab_size`` trained with ``tokenizers`` on the
   training split (BERT's normaliser and pre-tokenizer, lower-cased when ``data.lowercase``), or the
   tokenizer of ``data.tokenizer_name_or_path`` / of the starting checkpoint.
3. **Rows** (``datasets.map``, cached): ``grouped`` packs documents, each ended by ``[SEP]``, into
   rows ``[CLS] + (max_seq_length - 1) tokens`` (:func:`hfssl.data.token_rows.pack_documents`: no token is lost or
   repeated; the last row of each map batch is padded). Attention crosses document boundaries
   inside a row, as in RoBERTa's FULL-SENTENCES packing (Liu et al. 2019, sec. 4.2: within 0.2 points
   of DOC-SENTENCES, which never mixes documents but needs variable batch sizes); the ``[SEP]``
   between documents tells the model where one ends. ``line_by_line`` keeps one row per document
   (truncated), padded per batch. With next-sentence prediction, rows are segment pairs cut at a
   sentence boundary inside one document (:func:`sentence_pairs`, BERT's ``create_pretraining_data``).
4. **On the device** (:class:`InputBuilder`, seeded by the engine's generator): the random second
   segments of next-sentence prediction, then the masks (:mod:`hfssl.data.token_masking`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfssl.data.tokenizer_cache import cached_tokenizer
from hfssl.data.text import iter_texts, split_sentences
from hfssl.data.training import TrainingData
from hfssl.models.mlm.configuration_mlm import MLMConfig
from hfssl.data.token_masking import continuation_table, mask_tokens
# The rows and the held-out rule are shared with text evaluation (hfssl.data.token_rows); re-exported as MLM's data API.
from hfssl.data.token_rows import (  # noqa: F401
    HOLDOUT_EVERY,
    TokenRowCollator,
    encode_documents,
    held_out_texts,
    pack_documents,
    plain_backend,
    split_held_out,
    training_documents,
)

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: Documents per ``datasets.map`` batch when packing.
MAP_BATCH = 1000


# ---- tokenizer ------------------------------------------------------------------------------------


def train_wordpiece(texts: Any, vocab_size: int, lowercase: bool = True, max_length: int = 512,
                    min_frequency: int = 2) -> Any:
    """Train a BERT WordPiece tokenizer on ``texts`` (an iterator of strings) with ``tokenizers``.

    Returns:
        a ``PreTrainedTokenizerFast`` with ``[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4``, BERT's
        ``[CLS] A [SEP] (B [SEP])`` template, saved and reloaded by ``AutoTokenizer``.
    """
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase or None)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if tokenizer.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise ValueError("the WordPiece vocabulary is empty: the training text holds no words; point data.source at real text")
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=max_length, clean_up_tokenization_spaces=True)


def load_tokenizer(name_or_path: str) -> Any:
    """A fast tokenizer from a folder, a Hub id or ``builtin:<weights>``, checked for BERT's special tokens."""
    from transformers import AutoTokenizer

    from hfssl.backbones import resolve_pretrained_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained_path(name_or_path))
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"the tokenizer of {name_or_path!r} is not a fast (🤗 tokenizers) tokenizer")
    missing = [name for name in ("mask_token", "cls_token", "sep_token", "pad_token") if getattr(tokenizer, name) is None]
    if missing:
        raise ValueError(f"the tokenizer of {name_or_path!r} has no {', '.join(missing)}: masked language modelling "
                         "needs BERT's [MASK], [CLS], [SEP] and [PAD]")
    return tokenizer


def tokenizer_config_updates(tokenizer: Any, config: MLMConfig) -> dict[str, Any]:
    """Model config values that come from the tokenizer; raises when it does not fit the model."""
    size = len(tokenizer)
    updates: dict[str, Any] = {
        "special_token_ids": sorted(set(tokenizer.all_special_ids)),
        "mask_token_id": tokenizer.mask_token_id, "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
    }
    if config.backbone_name_or_path:
        if size > config.vocab_size:
            raise ValueError(f"the tokenizer has {size} tokens but the model {config.backbone_name_or_path!r} only "
                             f"{config.vocab_size} embeddings: the tokenizer and the model do not match; use the "
                             "checkpoint's own tokenizer (unset data.tokenizer_name_or_path)")
    else:
        updates["vocab_size"] = size
    bert = config.bert_config
    if bert.pad_token_id != tokenizer.pad_token_id:
        updates["bert_config"] = {**bert.to_dict(), "pad_token_id": tokenizer.pad_token_id}
    return updates


# ---- rows -----------------------------------------------------------------------------------------


def sentence_pairs(sentences: list[list[int]], budget: int, rng: np.random.Generator
                   ) -> list[tuple[list[int], list[int]]]:
    """BERT's segment pairs from one document: consecutive sentences fill ``budget`` tokens, and the
    chunk is cut at a random sentence boundary into segments A and B (in the middle of the tokens
    when it holds one sentence); both are trimmed to ``budget`` tokens together, the longer first."""
    pairs, chunk, size = [], [], 0
    for index, sentence in enumerate(sentences):
        chunk.append(sentence)
        size += len(sentence)
        if size >= budget or index == len(sentences) - 1:
            tokens = [token for part in chunk for token in part]
            if len(tokens) >= 2:
                if len(chunk) >= 2:
                    cut = int(rng.integers(1, len(chunk)))
                    first = [token for part in chunk[:cut] for token in part]
                    second = [token for part in chunk[cut:] for token in part]
                else:
                    first, second = tokens[: len(tokens) // 2], tokens[len(tokens) // 2:]
                while len(first) + len(second) > budget:
                    (first if len(first) > len(second) else second).pop()
                pairs.append((first, second))
            chunk, size = [], 0
    return pairs


_encode = encode_documents


def _grouped_rows(batch: dict[str, list], column: str, tokenizer: Any, length: int) -> dict[str, list]:
    rows, lengths = pack_documents(_encode(batch[column], tokenizer), tokenizer.cls_token_id, tokenizer.sep_token_id,
                                   tokenizer.pad_token_id, length)
    return {"input_ids": rows, "length": lengths}


def _line_rows(batch: dict[str, list], column: str, tokenizer: Any, length: int) -> dict[str, list]:
    rows = [[tokenizer.cls_token_id, *ids[: length - 2], tokenizer.sep_token_id]
            for ids in _encode(batch[column], tokenizer) if ids]
    return {"input_ids": rows, "length": [len(row) for row in rows]}


def _pair_rows(batch: dict[str, list], indices: list[int], column: str, tokenizer: Any, length: int,
               seed: int) -> dict[str, list]:
    first, second = [], []
    for index, text in zip(indices, batch[column]):
        sentences = [ids for ids in _encode(split_sentences(text or ""), tokenizer) if ids]
        rng = np.random.default_rng([seed, index])
        for a, b in sentence_pairs(sentences, length - 3, rng):
            first.append(a)
            second.append(b)
    return {"first_ids": first, "second_ids": second}


def build_rows(dataset: Any, column: str, tokenizer: Any, config: MLMConfig, seed: int, streaming: bool) -> Any:
    """The training rows of ``dataset`` for the config's packing (see the module docstring)."""
    length = config.max_seq_length
    options: dict[str, Any] = {"batched": True, "batch_size": MAP_BATCH, "remove_columns": [column]}
    if not streaming:
        options["desc"] = f"mlm: {'sentence pairs' if config.next_sentence_prediction else config.packing} rows"
    dataset = dataset.select_columns([column])
    if config.next_sentence_prediction:
        rows = dataset.map(_pair_rows, with_indices=True, fn_kwargs={"column": column, "tokenizer": tokenizer,
                                                                    "length": length, "seed": seed}, **options)
    else:
        function = _grouped_rows if config.packing == "grouped" else _line_rows
        rows = dataset.map(function, fn_kwargs={"column": column, "tokenizer": tokenizer, "length": length}, **options)
    return rows


class Collator:
    """Rows -> padded int64 tensors: ``input_ids`` + ``attention_mask``, or the two segments of a pair."""

    def __init__(self, pad_id: int, pairs: bool) -> None:
        self.pad_id = pad_id
        self.pairs = pairs

    def _pad(self, rows: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(row) for row in rows], dtype=torch.int64)
        out = torch.full((len(rows), max(1, int(lengths.max()))), self.pad_id, dtype=torch.int64)
        for index, row in enumerate(rows):
            out[index, : len(row)] = torch.from_numpy(np.array(row, dtype=np.int64))
        return out, lengths

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.pairs:
            first, first_lengths = self._pad([row["first_ids"] for row in rows])
            second, second_lengths = self._pad([row["second_ids"] for row in rows])
            return {"first_ids": first, "first_lengths": first_lengths, "second_ids": second,
                    "second_lengths": second_lengths}
        return TokenRowCollator(self.pad_id)(rows)


def combine_pairs(batch: dict[str, torch.Tensor], generator: torch.Generator, cls_id: int, sep_id: int, pad_id: int,
                  length: int) -> dict[str, torch.Tensor]:
    """``[CLS] A [SEP] B [SEP]`` rows, B replaced for half of the rows (drawn) by the B of another row
    of the batch (random documents: rows are shuffled), trimmed to ``length``; BERT sec. 3.1 task #2.

    Returns ``input_ids``, ``attention_mask``, ``token_type_ids`` ``(B, length)`` and
    ``next_sentence_label`` ``(B,)`` (0: B follows A, 1: B is random, as in transformers).
    """
    first, first_lengths = batch["first_ids"], batch["first_lengths"]
    second, second_lengths = batch["second_ids"], batch["second_lengths"]
    rows, device = first.shape[0], first.device
    is_random = torch.rand(rows, generator=generator, device=device) < 0.5
    if rows < 2:
        is_random = torch.zeros_like(is_random)
    shift = torch.randint(1, max(rows, 2), (rows,), generator=generator, device=device)
    source = torch.where(is_random, (torch.arange(rows, device=device) + shift) % rows, torch.arange(rows, device=device))
    second, second_lengths = second[source], second_lengths[source]
    second_lengths = torch.minimum(second_lengths, length - 3 - first_lengths).clamp_min(0)
    positions = torch.arange(length, device=device).expand(rows, length)
    a_end = first_lengths[:, None] + 1          # position of the first [SEP]
    b_start = a_end + 1
    b_end = b_start + second_lengths[:, None]   # position of the second [SEP]
    a_index = (positions - 1).clamp(0, first.shape[1] - 1)
    b_index = (positions - b_start).clamp(0, max(second.shape[1] - 1, 0))
    ids = torch.full((rows, length), pad_id, dtype=torch.int64, device=device)
    ids = torch.where((positions >= 1) & (positions < a_end), first.gather(1, a_index), ids)
    ids = torch.where((positions >= b_start) & (positions < b_end), second.gather(1, b_index), ids)
    ids = torch.where((positions == a_end) | (positions == b_end), torch.full_like(ids, sep_id), ids)
    ids[:, 0] = cls_id
    attention = (positions <= b_end).long()
    token_types = ((positions >= b_start) & (positions <= b_end)).long()
    return {"input_ids": ids, "attention_mask": attention, "token_type_ids": token_types,
            "next_sentence_label": is_random.long()}


class InputBuilder:
    """``make_inputs(batch, generator)`` of MLM: NSP segments (optional), then masks, on the batch's device."""

    def __init__(self, config: MLMConfig, continuation: torch.Tensor | None) -> None:
        vocab = config.vocab_size
        special = torch.zeros(vocab, dtype=torch.bool)
        special[[index for index in config.special_token_ids if index < vocab]] = True
        special[config.bert_config.pad_token_id] = True
        self.special = special
        self.replacement_ids = torch.nonzero(~special).flatten()
        self.continuation = continuation if config.whole_word_masking else None
        self.config = config
        self._tables: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        key = str(device)
        if key not in self._tables:
            continuation = self.continuation.to(device) if self.continuation is not None else None
            self._tables[key] = (self.special.to(device), self.replacement_ids.to(device), continuation)
        return self._tables[key]

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        config = self.config
        if "first_ids" in batch:
            inputs = combine_pairs(batch, generator, config.cls_token_id, config.sep_token_id,
                                   config.bert_config.pad_token_id, config.max_seq_length)
        else:
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        special, replacement_ids, continuation = self.tables(inputs["input_ids"].device)
        inputs["input_ids"], inputs["labels"] = mask_tokens(
            inputs["input_ids"], generator, special, replacement_ids, config.mask_token_id, config.mask_probability,
            config.mask_replace_probability, config.random_replace_probability, continuation)
        # BERT's dropout draws from torch's global generator, whose state on resume depends on what ran
        # before (DataLoader iterators draw from it); a seed per micro-batch makes the masks exact.
        inputs["dropout_seed"] = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        return inputs


# ---- the engine hooks -----------------------------------------------------------------------------


def run_tokenizer(recipe: Any, config: MLMConfig, dataset: Any, column: str) -> Any:
    """The tokenizer of a run: ``data.tokenizer_name_or_path``, the checkpoint's, or WordPiece trained here."""
    data = recipe.data
    if data.tokenizer_name_or_path or config.backbone_name_or_path:
        return load_tokenizer(data.tokenizer_name_or_path or config.backbone_name_or_path)
    return cached_wordpiece(dataset, column, data, config)


def cached_wordpiece(dataset: Any, column: str, data: Any, config: MLMConfig) -> Any:
    """:func:`train_wordpiece` on the training texts, cached under a hash of the texts and the settings
    (:func:`hfssl.data.tokenizer_cache.cached_tokenizer`: every process and a resumed run get the same vocabulary)."""
    return cached_tokenizer(dataset, column, data.source, "wordpiece",
                            [config.vocab_size, data.lowercase, config.max_seq_length],
                            lambda texts: train_wordpiece(texts, config.vocab_size, data.lowercase, config.max_seq_length))


#: Documents read to find out whether a corpus has any of two sentences (next-sentence prediction).
SENTENCE_SAMPLE = 1000


def _check_sentence_pairs(data: Any, documents: Any, column: str) -> None:
    """Next-sentence prediction pairs sentences of one document (BERT sec. 3.1): a corpus whose documents
    are single sentences would only ever give half-sentence pairs, so it is refused before training."""
    sample = documents.select(range(min(len(documents), SENTENCE_SAMPLE)))
    if not any(len(split_sentences(text)) >= 2 for text in iter_texts(sample, column, data.source)):
        raise ValueError(
            f"model.next_sentence_prediction=true needs documents of two or more sentences, but none of the first "
            f"{len(sample)} documents of {data.source!r} (column {column!r}) has two (sentences end at a line break "
            "or at . ! ? before a space). Set model.next_sentence_prediction=false, or train on documents of "
            "several sentences")


def build_training_data(recipe: Any, accelerator: Any) -> TrainingData:
    """``MethodSpec.build_data`` of MLM: tokenizer, training rows and the tokenizer's config values.

    Raises ``ValueError`` naming the input for empty text, a missing text column, a sequence length
    above the model's positions and a tokenizer that does not fit the model.
    """
    config = MLMConfig(**recipe.model)
    data = recipe.data
    train_documents, column = training_documents(recipe, "mlm-accuracy")
    if not data.streaming and config.next_sentence_prediction:
        _check_sentence_pairs(data, train_documents, column)
    tokenizer = run_tokenizer(recipe, config, train_documents, column)
    updates = tokenizer_config_updates(tokenizer, config)
    config = MLMConfig(**{**recipe.model, **updates})
    rows = build_rows(train_documents, column, tokenizer, config, recipe.train.seed, data.streaming)
    if not data.streaming:
        if len(rows) == 0:
            raise ValueError(f"dataset {data.source!r} gave no training rows (no document has two tokens)")
        rows = rows.with_format("numpy")
    continuation = continuation_table(tokenizer, config.vocab_size)

    def save(directory: Path) -> None:
        tokenizer.save_pretrained(directory)

    training = TrainingData(train_dataset=rows, collate_fn=Collator(tokenizer.pad_token_id,
                                                                    config.next_sentence_prediction),
                            config_updates=updates, save_artifacts=save)
    training.make_inputs = InputBuilder(config, continuation)
    return training


def build_inputs(recipe: Any, data: TrainingData) -> InputBuilder:
    """``MethodSpec.build_inputs``: MLM's input builder needs the tokenizer (whole-word masking), so
    :func:`build_training_data` makes it with the data; training data without it were not built by MLM."""
    if not isinstance(data.make_inputs, InputBuilder):
        raise ValueError("MLM's inputs are built with its tokenizer by hfssl.models.mlm.data.build_training_data; "
                         "load MLM's data through MethodSpec.load_training_data")
    return data.make_inputs
