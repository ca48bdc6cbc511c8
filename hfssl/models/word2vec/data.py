"""word2vec data: vocabulary, tokenisation, subsampling, dynamic windows and negatives.

Pipeline (``MethodSpec.build_data`` = :func:`build_training_data`):

1. **Vocabulary**, one streaming pass over the text column: each text is normalised and split by
   the very ``tokenizers`` objects that are saved (``Lowercase`` when ``data.lowercase``, a
   ``Split`` on ``data.token_pattern``), words are counted, and those seen at least
   ``min_count`` times (at most ``max_vocab_size``, most frequent first, ties in order of first
   appearance as in gensim) become a ``WordLevel`` tokenizer with ``[UNK]`` at id 0. The counts
   of a map-style dataset are cached by ``datasets`` (:func:`hfssl.data.text.count_dataset_words`),
   so a later run on the same corpus and settings skips the pass. With
   ``data.tokenizer_name_or_path`` the ids of that tokenizer are counted instead, and tokens under
   ``min_count`` are left out of training.
2. **Token stream**: ``datasets.map`` encodes the texts (cached by ``datasets``), drops words
   outside the vocabulary (word2vec.c and gensim drop them before windowing), separates documents
   with ``-1`` and cuts the stream into rows of :data:`CHUNK_LENGTH` ids. The DataLoader only
   stacks rows.
3. **On the device** (:func:`make_word2vec_inputs`, seeded by the engine's generator, vectorised,
   no Python loop over words): subsampling, compaction, dynamic windows, and one set of negatives
   per block of centres drawn from ``count^0.75``. With the numba kernel (CPU) the same rules run
   compiled (:func:`hfssl.models.word2vec.kernels.build_stream`), its draws from a counter-based
   generator keyed by one seed taken from the engine's generator: ~4x cheaper, and this part of the
   step is serial while the kernel's threads wait.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfssl.data.text import (
    UNKNOWN_TOKEN,
    build_word_tokenizer,
    count_dataset_words,
    count_token_ids,
    count_words,
    iter_texts,
    load_text_split,
    resolve_text_column,
    select_vocabulary,
)
from hfssl.data.training import TrainingData
from hfssl.models.word2vec.configuration_word2vec import Word2VecConfig
from hfssl.models.word2vec.threads import single_threaded_ops
from hfssl.models.word2vec.warmup import load_kernels_in_background
from hfssl.settings import RecipeError

__all__ = [
    "CHUNK_LENGTH", "SEPARATOR", "UNKNOWN_TOKEN", "COUNTS_FILE", "keep_probabilities", "noise_distribution",
    "noise_alias", "draw_noise", "make_word2vec_inputs", "encode_chunks", "Word2VecVocabulary", "build_vocabulary",
    "check_optimizer", "build_training_data", "build_inputs", "collate_token_rows", "InputBuilder",
    # the shared text module's functions word2vec builds on
    "build_word_tokenizer", "count_words", "count_dataset_words", "iter_texts", "select_vocabulary",
]

logger = logging.getLogger(__name__)

#: Token ids per training row. word2vec.c reads sentences of at most 1000 words; a row holds
#: several documents separated by -1 and a batch of rows is one SGD step.
CHUNK_LENGTH = 1024
SEPARATOR = -1
COUNTS_FILE = "word_counts.json"


# ---- formulas -------------------------------------------------------------------------------------


def keep_probabilities(counts: torch.Tensor | np.ndarray, sample: float) -> torch.Tensor:
    """Probability of keeping each occurrence of a word (word2vec.c's subsampling, Mikolov et al. 2013 sec. 2.3).

    ``p_keep(w) = min(1, (sqrt(c_w / (t N)) + 1) * t N / c_w)`` with ``t = sample`` and ``N`` the
    number of in-vocabulary words; ``1`` for every counted word when ``sample == 0`` and ``0`` for
    words with count 0 (special tokens, words under ``min_count``), which are never trained.

    Args:
        counts: ``(V,)`` corpus counts.
        sample: the threshold ``t``.

    Returns:
        ``(V,)`` float64 probabilities.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    present = counts > 0
    if sample <= 0:
        return present.double()
    threshold = sample * counts.sum()
    safe = counts.clamp_min(1.0)
    keep = ((safe / threshold).sqrt() + 1.0) * threshold / safe
    return torch.where(present, keep.clamp_max(1.0), torch.zeros_like(keep))


def noise_distribution(counts: torch.Tensor | np.ndarray, exponent: float = 0.75) -> torch.Tensor:
    """Unigram distribution raised to ``exponent`` (Mikolov et al. 2013, sec. 2.2): ``(V,)`` float64, sums to 1."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    weights = torch.where(counts > 0, counts.clamp_min(1.0) ** exponent, torch.zeros_like(counts))
    total = weights.sum()
    if total <= 0:
        raise ValueError("the noise distribution is empty: no word has a positive count")
    return weights / total


def noise_alias(counts: torch.Tensor | np.ndarray, exponent: float = 0.75) -> tuple[torch.Tensor, torch.Tensor]:
    """Walker's alias table of the noise distribution (Vose's construction): O(1) exact draws.

    Column ``c`` of ``V`` equal columns keeps word ``c`` with probability ``probability[c]`` and
    otherwise gives ``alias[c]``, so a draw is one uniform number: its integer part picks the
    column, its fraction decides (:func:`draw_noise`). Sorting-free and 5-10x cheaper per draw than
    a binary search in the cumulative distribution.

    Returns:
        ``probability`` ``(V,)`` float64 and ``alias`` ``(V,)`` int64.
    """
    noise = noise_distribution(counts, exponent).numpy()
    size = noise.size
    scaled = noise * size
    probability = np.ones(size)
    alias = np.arange(size)
    small = [int(index) for index in np.flatnonzero(scaled < 1.0)]
    large = [int(index) for index in np.flatnonzero(scaled >= 1.0)]
    while small and large:
        low, high = small.pop(), large[-1]
        probability[low] = scaled[low]
        alias[low] = high
        scaled[high] -= 1.0 - scaled[low]
        if scaled[high] < 1.0:
            small.append(large.pop())
    # Leftovers are 1 up to rounding; columns of zero-count words were all filled by an alias above.
    return torch.from_numpy(probability), torch.from_numpy(alias.astype(np.int64))


def draw_noise(table: tuple[torch.Tensor, torch.Tensor], count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` int64 draws from an alias table (:func:`noise_alias`), one float64 uniform each."""
    probability, alias = table
    size = probability.shape[0]
    uniform = torch.rand(count, generator=generator, device=probability.device, dtype=torch.float64) * size
    column = uniform.long().clamp_max_(size - 1)
    return torch.where(uniform - column < probability[column], column, alias[column])


# ---- on-device inputs ------------------------------------------------------------------------------


def _check_rows(input_ids: torch.Tensor) -> None:
    if input_ids.ndim != 2:
        raise ValueError(f"word2vec batches are (rows, {CHUNK_LENGTH}) token ids, got shape {tuple(input_ids.shape)}")


def make_word2vec_inputs(
    input_ids: torch.Tensor,
    generator: torch.Generator,
    keep: torch.Tensor,
    noise: tuple[torch.Tensor, torch.Tensor],
    window: int,
    block_size: int,
    shared_negatives: int,
) -> dict[str, torch.Tensor]:
    """Turn rows of token ids into the forward inputs of :class:`Word2VecModel`, vectorised.

    Every row starts a new segment, and so does every ``-1`` separator: pairs never cross them.
    Subsampled words are removed before windowing (as word2vec.c does), so windows reach further.

    Args:
        input_ids: ``(B, L)`` int ids, ``-1`` for document separators and padding.
        generator: drives every random draw, in this order: keep draws ``(B L,)``, window
            reductions ``(N,)``, negatives ``(N / T, K)``.
        keep: ``(V,)`` keep probabilities (:func:`keep_probabilities`), on the device.
        noise: the noise distribution's alias table (:func:`noise_alias`), on the device.
        window: maximum window W; each kept centre draws its window uniformly from ``1..W``.
        block_size: T, centres sharing one set of negatives; ``N`` is padded to a multiple of T.
        shared_negatives: K negatives per block.

    Returns:
        ``input_ids (N,)``, ``window_sizes (N,)`` (0 on padding), ``segment_ids (N,)`` (-1 on
        padding) and ``negative_ids (N / T, K)``, all int64.
    """
    _check_rows(input_ids)
    device = input_ids.device
    flat = input_ids.reshape(-1).long()
    valid = flat >= 0
    boundary = ~valid
    boundary.view(input_ids.shape)[:, 0] = True
    segments = torch.cumsum(boundary, 0)
    draws = torch.rand(flat.shape, generator=generator, device=device, dtype=torch.float32)
    kept = valid & (draws < keep[flat.clamp_min(0)])
    ids = flat[kept]
    segments = segments[kept]
    count = ids.numel()
    padded = max(block_size, math.ceil(count / block_size) * block_size)
    windows = torch.randint(1, window + 1, (count,), generator=generator, device=device)
    if padded > count:
        extra = padded - count
        ids = torch.cat([ids, ids.new_zeros(extra)])
        segments = torch.cat([segments, segments.new_full((extra,), -1)])
        windows = torch.cat([windows, windows.new_zeros(extra)])
    negatives = draw_noise(noise, padded // block_size * shared_negatives, generator)
    return {
        "input_ids": ids,
        "window_sizes": windows,
        "segment_ids": segments,
        "negative_ids": negatives.view(-1, shared_negatives),
    }


# ---- vocabulary -------------------------------------------------------------------------------------


# ---- token stream ----------------------------------------------------------------------------------


def encode_chunks(texts: list[str | None], tokenizer: Any, trained: np.ndarray) -> list[np.ndarray]:
    """Encode texts, drop ids outside the trained vocabulary, join documents with ``-1`` and cut
    the stream into rows of :data:`CHUNK_LENGTH` (the last row padded with ``-1``)."""
    backend = tokenizer.backend_tokenizer if hasattr(tokenizer, "backend_tokenizer") else tokenizer
    encodings = backend.encode_batch([text or "" for text in texts], add_special_tokens=False)
    pieces: list[np.ndarray] = []
    separator = np.array([SEPARATOR], dtype=np.int32)
    for encoding in encodings:
        ids = np.asarray(encoding.ids, dtype=np.int32)
        ids = ids[trained[ids]]
        if ids.size:
            pieces.extend((ids, separator))
    if not pieces:
        return []
    stream = np.concatenate(pieces[:-1])
    rows = math.ceil(stream.size / CHUNK_LENGTH)
    padded = np.full(rows * CHUNK_LENGTH, SEPARATOR, dtype=np.int32)
    padded[: stream.size] = stream
    return list(padded.reshape(rows, CHUNK_LENGTH))


def _chunk_batch(batch: dict[str, list], column: str, tokenizer: Any, trained: np.ndarray) -> dict[str, list]:
    return {"input_ids": encode_chunks(batch[column], tokenizer, trained)}


# ---- the engine hook -------------------------------------------------------------------------------


class Word2VecVocabulary:
    """The vocabulary of a run: tokenizer, per-id counts and the raw word total."""

    def __init__(self, tokenizer: Any, counts: np.ndarray, raw_words: int, num_texts: int | None) -> None:
        self.tokenizer = tokenizer
        self.counts = counts
        self.raw_words = raw_words
        self.num_texts = num_texts

    @property
    def trained(self) -> np.ndarray:
        """``(V,)`` bool: ids that take part in training (count > 0)."""
        return self.counts > 0

    def save(self, directory: str | Path) -> None:
        """Save the tokenizer (``AutoTokenizer.from_pretrained(directory)`` reloads it) and the counts."""
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory)
        vocab = self.tokenizer.get_vocab()
        words = [""] * len(self.counts)
        for word, index in vocab.items():
            if index < len(words):
                words[index] = word
        payload = {"raw_words": self.raw_words, "counts": {word: int(count) for word, count in zip(words, self.counts)}}
        (directory / COUNTS_FILE).write_text(json.dumps(payload, ensure_ascii=False) + "\n", encoding="utf-8")


def build_vocabulary(dataset: Any, column: str, recipe: Any, config: Any) -> Word2VecVocabulary:
    """Count the corpus once and build (or take) the tokenizer; errors name the data and the fix."""
    data = recipe.data
    if data.tokenizer_name_or_path:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(data.tokenizer_name_or_path)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"data.tokenizer_name_or_path {data.tokenizer_name_or_path!r} has no fast tokenizer")
        counts, raw_words = count_token_ids(dataset, column, data.source, tokenizer)
        counts[counts < config.min_count] = 0
        for special in tokenizer.all_special_ids:
            counts[special] = 0
        if config.max_vocab_size is not None and (counts > 0).sum() > config.max_vocab_size:
            order = np.argsort(-counts, kind="stable")
            counts[order[config.max_vocab_size:]] = 0
        vocabulary = Word2VecVocabulary(tokenizer, counts, raw_words, None)
        distinct = None
    else:
        word_counts, rows = count_dataset_words(dataset, column, data.source, data.lowercase, data.token_pattern)
        raw_words = sum(word_counts.values())
        distinct = len(word_counts)
        if raw_words == 0:
            raise ValueError(
                f"the text column {column!r} of dataset {data.source!r} holds no words ({rows} rows, all empty or "
                f"without a match of data.token_pattern {data.token_pattern!r}); point data.source at real text"
            )
        selected = select_vocabulary(word_counts, config.min_count, config.max_vocab_size)
        tokenizer = build_word_tokenizer([word for word, _ in selected], data.lowercase, data.token_pattern)
        counts = np.zeros(len(selected) + 1, dtype=np.int64)
        counts[1:] = [count for _, count in selected]
        vocabulary = Word2VecVocabulary(tokenizer, counts, raw_words, rows)
    if vocabulary.counts.sum() == 0:
        detail = f"{vocabulary.raw_words} words" + (f", {distinct} distinct" if distinct is not None else "")
        raise ValueError(
            f"no word of column {column!r} in dataset {data.source!r} occurs min_count={config.min_count} times "
            f"({detail}); lower model.min_count or train on more text"
        )
    words = int(vocabulary.trained.sum())
    if words <= config.negative:
        # Negative sampling draws `negative` noise words per pair from the vocabulary (Mikolov et al. 2013,
        # eq. 4): with no more words than that, every pair's negatives are the same few words, its own
        # target among them. Refused here, before training, instead of training a meaningless model.
        raise ValueError(
            f"the word2vec vocabulary of {data.source!r} has {words} word(s) (min_count={config.min_count}), not more "
            f"than model.negative={config.negative} negative samples per pair: lower model.negative below {words}, "
            "lower model.min_count, or train on more text")
    logger.info(
        "word2vec vocabulary: %d words (min_count %d) covering %d of %d tokens",
        words, config.min_count, int(vocabulary.counts.sum()), vocabulary.raw_words,
    )
    return vocabulary


def check_optimizer(recipe: Any) -> None:
    """word2vec's gradients are sparse: plain SGD only (what word2vec.c and gensim do)."""
    optim = recipe.optim
    if optim.name != "sgd" or optim.momentum != 0 or optim.weight_decay != 0:
        raise RecipeError(
            "word2vec trains with sparse gradients and plain SGD as in the original: set optim.name: sgd, "
            f"optim.momentum: 0 and optim.weight_decay: 0 (got name={optim.name!r}, momentum={optim.momentum}, "
            f"weight_decay={optim.weight_decay})"
        )


def build_training_data(recipe: Any, accelerator: Any) -> TrainingData:
    """``MethodSpec.build_data`` of word2vec: the vocabulary and the token rows.

    The text comes through the shared text module (:mod:`hfssl.data.text`); the vocabulary is
    counted on the main process first, so the ``datasets`` cache of the encoded rows is written once.

    Returns:
        :class:`~hfssl.data.training.TrainingData` with ``train_dataset`` rows ``{"input_ids": int32
        (CHUNK_LENGTH,)}``, ``config_updates = {"vocab_size", "word_counts"}`` and ``save_artifacts``
        writing the tokenizer; ``make_inputs`` comes from :func:`build_inputs`.
    """
    config = Word2VecConfig(**recipe.model)
    if accelerator is None or accelerator.device.type == "cpu":  # the kernels load (or compile) while the corpus is read
        load_kernels_in_background(config)
    dataset = load_text_split(recipe.data)
    column = resolve_text_column(dataset, recipe.data)
    vocabulary = build_vocabulary(dataset, column, recipe, config)
    trained = vocabulary.trained
    # Only the text column goes in, so that the rows can change number (documents -> chunks).
    chunked = dataset.select_columns([column]).map(
        _chunk_batch,
        batched=True,
        batch_size=1000,
        remove_columns=[column],
        fn_kwargs={"column": column, "tokenizer": vocabulary.tokenizer, "trained": trained},
        **({} if recipe.data.streaming else {"desc": "word2vec: encoding"}),
    )
    if not recipe.data.streaming:
        if len(chunked) == 0:
            raise ValueError(f"dataset {recipe.data.source!r} has no in-vocabulary words to train on")
        chunked = chunked.with_format("numpy")
    return TrainingData(
        train_dataset=chunked,
        collate_fn=collate_token_rows,
        config_updates={"vocab_size": int(len(vocabulary.counts)), "word_counts": vocabulary.counts.tolist()},
        save_artifacts=vocabulary.save,
    )


def collate_token_rows(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack rows of ``input_ids`` into ``(B, CHUNK_LENGTH)`` int64."""
    return {"input_ids": torch.from_numpy(np.stack([np.asarray(row["input_ids"]) for row in rows]).astype(np.int64))}


def build_inputs(recipe: Any, data: TrainingData) -> InputBuilder:
    """``MethodSpec.build_inputs`` of word2vec: the on-device builder bound to the vocabulary counts."""
    config = Word2VecConfig(**{**recipe.model, **data.config_updates})
    return InputBuilder(np.asarray(data.config_updates["word_counts"]), config)


class InputBuilder:
    """``make_inputs(batch, generator)`` of word2vec: tables derived from the counts, per device."""

    def __init__(self, counts: np.ndarray, config: Any) -> None:
        keep = keep_probabilities(counts, config.sample)
        self.keep = keep.float()
        self.noise = noise_alias(counts, config.ns_exponent)
        self.window = config.window
        self.block_size = config.negative_block_size
        self.shared_negatives = config.shared_negatives
        self._device_tables: dict[str, tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = {}
        self._compiled_tables: tuple[np.ndarray, np.ndarray] | None = None
        if config.kernel == "numba":
            from hfssl.models.word2vec.kernels import draw_tables  # noqa: PLC0415 - numba only with its kernel

            self._compiled_tables = draw_tables(keep.numpy(), self.noise[0].numpy(), self.noise[1].numpy())

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        input_ids = batch["input_ids"]
        if self._compiled_tables is not None and input_ids.device.type == "cpu":
            return self._compiled_inputs(input_ids, generator)
        key = str(input_ids.device)
        if key not in self._device_tables:
            self._device_tables[key] = (self.keep.to(input_ids.device),
                                        tuple(table.to(input_ids.device) for table in self.noise))
        keep, noise = self._device_tables[key]
        with single_threaded_ops():
            return make_word2vec_inputs(input_ids, generator, keep, noise, self.window, self.block_size,
                                        self.shared_negatives)

    def _compiled_inputs(self, input_ids: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The numba kernel's inputs, built by compiled code (:func:`~hfssl.models.word2vec.kernels.build_stream`)
        from one seed drawn from the step's generator: the same rules as :func:`make_word2vec_inputs`, in about a
        quarter of its time, so that the kernel's threads wait less for the serial part of the step."""
        from hfssl.models.word2vec.kernels import build_stream  # noqa: PLC0415

        _check_rows(input_ids)
        seed = int(torch.randint(0, 1 << 62, (1,), generator=generator))
        rows = input_ids.numpy().astype(np.int64, copy=False)
        ids, windows, segments, negatives = build_stream(rows, *self._compiled_tables, self.window, self.block_size,
                                                         self.shared_negatives, seed)
        return {"input_ids": torch.from_numpy(ids), "window_sizes": torch.from_numpy(windows),
                "segment_ids": torch.from_numpy(segments), "negative_ids": torch.from_numpy(negatives)}
