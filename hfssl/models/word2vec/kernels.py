"""word2vec's compiled CPU kernel (numba): per-pair SGD on the embedding rows, in place.

One call trains one engine step's subsampled token stream (the forward inputs of
:class:`~hfssl.models.word2vec.modeling_word2vec.Word2VecModel`) the way word2vec.c does, with one
change taken from Ji et al. (2016): the negatives are drawn per centre (or per block of ``T``
centres) and shared by all the pairs of that centre's window.

Skip-gram, for each centre ``i`` with dynamic window ``b_i`` and every context ``j`` (``0 < |i - j|
<= b_i``, same segment), one pair after the other::

    e = 0
    for (t, label, weight) in [(ids[i], 1, 1)] + [(n, 0, negative / K) for n in negatives(i) if n != ids[i]]:
        g = lr * weight * (label - sigmoid(x_j . v_t))
        e += g * v_t
        v_t += g * x_j            # the output row is updated at once (word2vec.c)
    x_j += e                      # the input row after all of the pair's targets

CBOW: ``h = mean`` (or sum) of the context rows, the same loop with ``h`` for ``x_j``, then ``e``
(``e / count`` in sum mode, as gensim) is added to every context row.

Why it is fast: the ``1 + K`` output rows of a centre are loaded once and stay in the L1 cache for
all ``2 b`` pairs of its window (word2vec.c loads ``1 + negative`` fresh rows per pair); the rows of
the next centre are prefetched while this one trains; sigmoid and loss come from interpolated
tables (no ``exp`` or ``log`` per score); the inner loops over the vector are SIMD (``fastmath``);
and a whole batch of ~64k words runs in one call without the GIL.

Threads: ``parts`` contiguous parts of the stream are trained on numba's threads at once, lock-free
(Hogwild, Recht et al. 2011, as word2vec.c and gensim): with one part the result is a pure function
of the inputs and the starting weights; with several, the interleaving of the threads' writes to
shared rows is not reproducible.

The step's inputs themselves (subsampling, dynamic windows, negatives) are built by :func:`build_stream`,
compiled too, from one seed per step with counter-based draws (SplitMix64): the part of the step that
runs on one thread while the kernel's threads wait costs ~1 ms instead of ~4-8 ms of torch ops.

Compiled on first use and cached on disk (numba's ``cache=True``: ``NUMBA_CACHE_DIR`` when set, else
the ``__pycache__`` next to this file, else numba's user cache folder ``~/.cache/numba``), so only the
first process after an install pays the compile time (~5 s). Where none of these folders can be
written (a read-only install and home), numba refuses ``cache=True`` when this module is imported;
the kernels are then compiled without a cache in every process, with one warning that says how to
keep them (:func:`_jit`). :mod:`hfssl.models.word2vec.warmup` loads or compiles a run's kernels on a
background thread while the run reads its data (:func:`step_signatures`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

logger = logging.getLogger(__name__)

#: False once numba has found no folder to cache a kernel in (then nothing here is cached).
CACHED = True


def _jit(**options: Any) -> Any:
    """``numba.njit(cache=True, **options)``, or without the disk cache where numba finds no writable folder
    for it (it raises ``RuntimeError: cannot cache function ...: no locator available`` when the function is
    decorated, which would make this module, and so word2vec, impossible to import)."""
    def decorate(function: Any) -> Any:
        global CACHED
        if CACHED:
            try:
                return numba.njit(cache=True, **options)(function)
            except RuntimeError as error:
                if "cannot cache" not in str(error):
                    raise
                CACHED = False
                logger.warning(
                    "word2vec's numba kernels cannot be cached on disk (no writable folder: NUMBA_CACHE_DIR is %s, "
                    "%s/__pycache__ and numba's user cache folder are read-only), so every process compiles them "
                    "again (~5 s of CPU); set NUMBA_CACHE_DIR to a writable folder to keep them",
                    numba.config.CACHE_DIR or "not set", Path(__file__).parent)
        return numba.njit(cache=False, **options)(function)

    return decorate


#: Scores beyond +-MAX_SCORE saturate: sigmoid 0 or 1 (off by < 3.4e-4), the loss follows its asymptote.
MAX_SCORE = 8.0
#: Intervals of the interpolated tables over [-MAX_SCORE, MAX_SCORE]: linear interpolation between
#: points 1/64 apart is within 4e-6 of the exact sigmoid and 8e-6 of softplus (tested).
TABLE_SIZE = 1024


def lookup_tables(dtype: np.dtype = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``sigmoid(s)`` and ``softplus(-s) = -log sigmoid(s)`` at ``TABLE_SIZE + 1`` points of
    ``[-MAX_SCORE, MAX_SCORE]`` (plus one repeated point, so interpolation never reads past the end)."""
    scores = np.linspace(-MAX_SCORE, MAX_SCORE, TABLE_SIZE + 1)
    scores = np.append(scores, MAX_SCORE)
    sigmoid = 1.0 / (1.0 + np.exp(-scores))
    softplus = np.logaddexp(0.0, -scores)
    return sigmoid.astype(dtype), softplus.astype(dtype)


@intrinsic
def _prefetch(typingctx, array, row, column):  # noqa: ANN001, ANN202, ARG001
    """Ask the CPU to bring the cache line of ``array[row, column]`` in, for writing (``llvm.prefetch``)."""
    signature = types.void(array, types.intp, types.intp)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        array_type = signature.args[0]
        data = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, data, [args[1], args[2]], wraparound=False)
        byte_pointer = ir.IntType(8).as_pointer()
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
            ir.VoidType(), [byte_pointer, ir.IntType(32), ir.IntType(32), ir.IntType(32)]), "llvm.prefetch")
        flag = [ir.Constant(ir.IntType(32), value) for value in (1, 3, 1)]  # write, keep in all levels, data
        builder.call(function, [builder.bitcast(pointer, byte_pointer), *flag])
        return context.get_dummy_value()

    return signature, codegen


@_jit(nogil=True, inline="always")
def _prefetch_row(array, row):  # noqa: ANN001, ANN202
    """Prefetch every cache line of ``array[row]``: the rows of the next centre arrive while this one trains
    (the embedding tables are larger than L2; measured 1.3-1.9x on the kernels)."""
    for column in range(0, array.shape[1], max(1, 64 // array.itemsize)):
        _prefetch(array, row, column)


@_jit(nogil=True, inline="always")
def _prefetch_next(input_rows, output_rows, ids, negatives, block, position, ahead):  # noqa: ANN001, ANN202, PLR0913
    """Prefetch the output rows (centre, negatives) of the centre at ``position`` and the input row that
    enters the windows ``ahead`` positions further."""
    if position < ids.shape[0]:
        _prefetch_row(output_rows, ids[position])
        row = position // block
        for k in range(negatives.shape[1]):
            _prefetch_row(output_rows, negatives[row, k])
    if position + ahead < ids.shape[0]:
        _prefetch_row(input_rows, ids[position + ahead])


_TABLES: dict[np.dtype, np.ndarray] = {}


def tables_for(dtype: np.dtype) -> np.ndarray:
    """:func:`lookup_tables` stacked ``(2, TABLE_SIZE + 2)`` in ``dtype``, built once per dtype."""
    dtype = np.dtype(dtype)
    if dtype not in _TABLES:
        _TABLES[dtype] = np.stack(lookup_tables(dtype))
    return _TABLES[dtype]


@_jit(fastmath=True, nogil=True, inline="always")
def _sigmoid_and_loss(score, sigmoid_table, softplus_table):  # noqa: ANN001, ANN202
    """``(sigmoid(score), -log sigmoid(score))`` by linear interpolation in the tables (word2vec.c and
    gensim look up a 1000-point sigmoid table without interpolation; an exact exp and log1p cost
    ~60 % of the pair update, measured)."""
    if score >= MAX_SCORE:
        return 1.0, 0.0
    if score <= -MAX_SCORE:
        return 0.0, -score
    position = (score + MAX_SCORE) * (TABLE_SIZE / (2.0 * MAX_SCORE))
    index = int(position)
    fraction = position - index
    sigmoid = sigmoid_table[index] + fraction * (sigmoid_table[index + 1] - sigmoid_table[index])
    loss = softplus_table[index] + fraction * (softplus_table[index + 1] - softplus_table[index])
    return sigmoid, loss


@_jit(fastmath=True, nogil=True, inline="always")
def _train_target(x, work, scratch, tables, output, target, label, weight, lr, update):  # noqa: ANN001, ANN202, PLR0913
    """One (input vector, target row) term: its weighted loss, and (``update``) the SGD step on the
    target row and the accumulated input gradient ``work``."""
    dim = x.shape[0]
    row = output[target]
    score = x[0] * row[0]  # in the rows' dtype: float32 rows get float32 SIMD
    for c in range(1, dim):
        score += x[c] * row[c]
    positive, loss = _sigmoid_and_loss(score, tables[0], tables[1])
    if label:
        gradient = 1.0 - positive
    else:
        loss = loss + score  # -log sigmoid(-s) = -log sigmoid(s) + s
        gradient = -positive
    if update:
        scratch[0] = lr * weight * gradient  # cast to the rows' dtype once, not per element
        step = scratch[0]
        for c in range(dim):
            work[c] += step * row[c]
            row[c] += step * x[c]
    return weight * loss


@_jit(fastmath=True, nogil=True, inline="always")
def _train_targets(x, work, scratch, tables, output, centre, negatives, negative_weight, lr, update):  # noqa: ANN001, ANN202, PLR0913
    """The centre (label 1) and the shared negatives other than the centre (label 0) against one input
    vector ``x`` (a context row, or CBOW's hidden vector): their summed loss, the SGD steps on the target
    rows and the input gradient accumulated in ``work``."""
    loss = _train_target(x, work, scratch, tables, output, centre, True, 1.0, lr, update)
    for k in range(negatives.shape[0]):
        target = negatives[k]
        if target != centre:
            loss += _train_target(x, work, scratch, tables, output, target, False, negative_weight, lr, update)
    return loss

@_jit(fastmath=True, nogil=True, parallel=True)
def train_skipgram(input_rows, output_rows, tables, ids, windows, segments, negatives, block, negative_weight, lr,  # noqa: ANN001, ANN201, PLR0913
                   parts, update, ahead):
    """Skip-gram over a token stream; returns ``(summed loss, number of pairs)``.

    Args:
        input_rows, output_rows: ``(V, d)`` float arrays (word2vec.c's ``syn0`` and ``syn1neg``),
            updated in place when ``update``.
        tables: ``(2, TABLE_SIZE + 2)`` :func:`lookup_tables` in the rows' dtype.
        ids, windows, segments: ``(N,)`` int64 token ids, dynamic windows (0: not a centre) and
            segment ids (pairs never cross segments).
        negatives: ``(N / block, K)`` int64 negatives shared by each block of ``block`` centres.
        negative_weight: weight of every negative term (``negative / K``).
        lr: the step's learning rate.
        parts: contiguous parts of the stream trained on threads at once (1: deterministic).
        update: ``False`` computes the loss only.
        ahead: positions from a centre to the input row prefetched for later windows (``window + 1``).
    """
    count = ids.shape[0]
    dim = input_rows.shape[1]
    losses = np.zeros(parts)
    pairs = np.zeros(parts, dtype=np.int64)
    for part in numba.prange(parts):
        work = np.zeros(dim, dtype=input_rows.dtype)
        scratch = np.zeros(1, dtype=input_rows.dtype)
        loss = 0.0
        done = 0
        for i in range(count * part // parts, count * (part + 1) // parts):
            _prefetch_next(input_rows, output_rows, ids, negatives, block, i + 1, ahead)
            reach = windows[i]
            if reach <= 0:
                continue
            centre = ids[i]
            segment = segments[i]
            row = i // block
            for j in range(max(0, i - reach), min(count, i + reach + 1)):
                if j == i or segments[j] != segment:
                    continue
                word = ids[j]
                x = input_rows[word]
                work[:] = 0.0
                loss += _train_targets(x, work, scratch, tables, output_rows, centre, negatives[row], negative_weight, lr,
                                       update)
                if update:
                    for c in range(dim):
                        x[c] += work[c]
                done += 1
        losses[part] = loss
        pairs[part] = done
    return losses.sum(), pairs.sum()


@_jit(fastmath=True, nogil=True, parallel=True)
def train_cbow(input_rows, output_rows, tables, ids, windows, segments, negatives, block, negative_weight, lr,  # noqa: ANN001, ANN201, PLR0913
               parts, update, ahead, mean):
    """CBOW over a token stream; returns ``(summed loss, number of centres with a context)``.

    Arguments as :func:`train_skipgram`, plus ``mean``: the hidden vector is the mean (else the sum)
    of the context rows; in sum mode the context rows receive ``1 / count`` of the hidden gradient.
    """
    count = ids.shape[0]
    dim = input_rows.shape[1]
    losses = np.zeros(parts)
    centres = np.zeros(parts, dtype=np.int64)
    for part in numba.prange(parts):
        hidden = np.zeros(dim, dtype=input_rows.dtype)
        work = np.zeros(dim, dtype=input_rows.dtype)
        scratch = np.zeros(1, dtype=input_rows.dtype)
        loss = 0.0
        done = 0
        for i in range(count * part // parts, count * (part + 1) // parts):
            _prefetch_next(input_rows, output_rows, ids, negatives, block, i + 1, ahead)
            reach = windows[i]
            if reach <= 0:
                continue
            segment = segments[i]
            first, last = max(0, i - reach), min(count, i + reach + 1)
            hidden[:] = 0.0
            context = 0
            for j in range(first, last):
                if j != i and segments[j] == segment:
                    word = ids[j]
                    for c in range(dim):
                        hidden[c] += input_rows[word, c]
                    context += 1
            if context == 0:
                continue
            if mean:
                scale = 1.0 / context
                for c in range(dim):
                    hidden[c] *= scale
            centre = ids[i]
            row = i // block
            work[:] = 0.0
            loss += _train_targets(hidden, work, scratch, tables, output_rows, centre, negatives[row], negative_weight, lr,
                                   update)
            if update:
                if not mean:
                    scale = 1.0 / context
                    for c in range(dim):
                        work[c] *= scale
                for j in range(first, last):
                    if j != i and segments[j] == segment:
                        word = ids[j]
                        for c in range(dim):
                            input_rows[word, c] += work[c]
            done += 1
        losses[part] = loss
        centres[part] = done
    return losses.sum(), centres.sum()


# ---- the step's inputs: subsampling, dynamic windows and negatives ----------------------------------------------

#: SplitMix64's increment (2^64 / golden ratio) and its finaliser's multipliers (Steele, Lea and Flood 2014).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
#: Key offsets of the three independent draws of a step.
KEEP_STREAM, WINDOW_STREAM, NEGATIVE_STREAM = 1, 2, 3


@_jit(nogil=True, inline="always")
def _mix(value):  # noqa: ANN001, ANN202
    """SplitMix64's finaliser: a bijection of uint64 whose outputs pass BigCrush for consecutive inputs."""
    value = (value ^ (value >> np.uint64(30))) * _MIX_1
    value = (value ^ (value >> np.uint64(27))) * _MIX_2
    return value ^ (value >> np.uint64(31))


@_jit(nogil=True, inline="always")
def random_bits(key, counter):  # noqa: ANN001, ANN202
    """The ``counter``-th uint64 of SplitMix64 started at ``key``: counter-based, so any draw of a step is a
    function of (key, position) alone, whatever thread computes it and in whatever order."""
    return _mix(key + np.uint64(counter + 1) * _GOLDEN)


@_jit(nogil=True)
def stream_key(seed, stream):  # noqa: ANN001, ANN202
    """The key of one of a step's draws (:data:`KEEP_STREAM`, ...) from the step's seed."""
    return _mix(np.uint64(seed) ^ (np.uint64(stream) * _GOLDEN))


def draw_tables(keep: np.ndarray, alias_probability: np.ndarray, alias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`build_stream`'s integer tables: ``keep`` as uint64 thresholds ``floor(keep * 2^32)`` for the high
    32 random bits, and the alias table packed into one uint64 per column (``floor(probability * 2^32)`` in
    the high half, the alias in the low half): one load per draw and no integer-to-float conversions, ~5x
    faster than two float tables (measured: 1.5 against 7.1 ns a negative)."""
    scale = float(1 << 32)
    keep_threshold = np.minimum(np.floor(np.asarray(keep, dtype=np.float64) * scale), scale).astype(np.uint64)
    probability = np.asarray(alias_probability, dtype=np.float64)
    alias = np.asarray(alias, dtype=np.int64).copy()
    whole = probability >= 1.0
    alias[whole] = np.flatnonzero(whole)  # a full column always gives its own word
    threshold = np.minimum(np.floor(probability * scale), scale - 1).astype(np.uint64)
    if alias.size and (alias.max() >= 1 << 32 or alias.min() < 0):
        raise ValueError(f"vocabulary of {alias.size} words is too large for the packed noise table (2^32 at most)")
    return keep_threshold, (threshold << np.uint64(32)) | alias.astype(np.uint64)


@_jit(nogil=True)
def build_stream(rows, keep_threshold, noise_table, window, block, shared, seed):  # noqa: ANN001, ANN201, PLR0913
    """word2vec's inputs of one step from its token rows: the forward inputs of the numba kernel.

    The same construction as :func:`hfssl.models.word2vec.data.make_word2vec_inputs` (its docstring has the
    rules: segments, subsampling before windowing, padding to a multiple of ``block``), with the random
    draws taken from a counter-based generator keyed by ``seed`` instead of torch's generator. With
    ``u(S, n)`` the high 32 bits of :func:`random_bits` of stream ``S`` at counter ``n``: the occurrence at
    flat position ``p`` is kept when ``u(KEEP, p) < keep_threshold[id]``, the ``i``-th kept centre's window
    is ``1 + (u(WINDOW, i) * window) >> 32`` and negative ``(b, k)`` is column ``(u * V) >> 32`` of the alias
    table, kept when the low 32 bits of the same draw are under the column's threshold, else its alias.
    One pass over the rows in compiled code (~1 ms for 65k words and 50k x 5 negatives, against ~4 ms
    for the torch ops on an idle core).

    Args:
        rows: ``(B, L)`` int64 token ids, ``-1`` for separators and padding.
        keep_threshold, noise_table: ``(V,)`` uint64 tables of :func:`draw_tables`.
        window, block, shared: maximum window W, centres per negatives block T, negatives per block K.
        seed: the step's seed (0 <= seed < 2^63).

    Returns:
        ``ids (N,)``, ``windows (N,)``, ``segments (N,)`` and ``negatives (N / T, K)``, int64.
    """
    count_rows, length = rows.shape
    total = count_rows * length
    capacity = max(block, (total + block - 1) // block * block)
    ids = np.zeros(capacity, dtype=np.int64)
    segments = np.full(capacity, -1, dtype=np.int64)
    windows = np.zeros(capacity, dtype=np.int64)
    keep_key = stream_key(seed, KEEP_STREAM)
    window_key = stream_key(seed, WINDOW_STREAM)
    negative_key = stream_key(seed, NEGATIVE_STREAM)
    high = np.uint64(32)
    low_mask = np.uint64(0xFFFFFFFF)
    reach = np.uint64(window)
    count = 0
    segment = 0
    for r in range(count_rows):
        for c in range(length):
            token = rows[r, c]
            if c == 0 or token < 0:
                segment += 1
            if token < 0:
                continue
            if (random_bits(keep_key, r * length + c) >> high) < keep_threshold[token]:
                ids[count] = token
                segments[count] = segment
                windows[count] = 1 + np.int64(((random_bits(window_key, count) >> high) * reach) >> high)
                count += 1
    padded = max(block, (count + block - 1) // block * block)
    size = np.uint64(noise_table.shape[0])
    negatives = np.empty((padded // block, shared), dtype=np.int64)
    for b in range(padded // block):
        for k in range(shared):
            bits = random_bits(negative_key, b * shared + k)
            column = ((bits >> high) * size) >> high
            entry = noise_table[column]
            word = column if (bits & low_mask) < (entry >> high) else entry & low_mask
            negatives[b, k] = np.int64(word)
    return ids[:padded], windows[:padded], segments[:padded], negatives


def step_signatures(config: Any, dtype: np.dtype = np.float32) -> list[tuple[Any, tuple]]:
    """``(compiled function, argument types)`` of what one training step with ``config`` (a
    :class:`~hfssl.models.word2vec.configuration_word2vec.Word2VecConfig`) calls, for weights of ``dtype``:
    :func:`build_stream` as :class:`~hfssl.models.word2vec.data.InputBuilder` calls it, then the
    architecture's kernel as :func:`~hfssl.models.word2vec.modeling_word2vec.train_stream` does. The
    types are numba's of example values of the same Python and numpy types as the real calls, so
    ``function.compile(types)`` loads (or compiles) exactly the code the step then finds (tested)."""
    rows = np.zeros((1, 2), dtype=dtype)  # a weight's numpy view: 2-D, C order
    ids, negatives = np.zeros(1, dtype=np.int64), np.zeros((1, 1), dtype=np.int64)
    keep, noise = draw_tables(np.ones(1), np.ones(1), np.zeros(1, dtype=np.int64))
    stream = (np.zeros((1, 1), dtype=np.int64), keep, noise, config.window, config.negative_block_size,
              config.shared_negatives, 1)  # the seed: a Python int
    # ids, windows, segments, negatives, block, negative weight, lr, parts, update, window + 1
    common = (rows, rows, tables_for(dtype), ids, ids, ids, negatives, 1, 1.0, 1.0, 1, True, config.window + 1)
    kernel = ((train_skipgram, common) if config.architecture == "skip-gram"
              else (train_cbow, (*common, config.cbow_mean)))
    return [(function, tuple(numba.typeof(value) for value in values))
            for function, values in ((build_stream, stream), kernel)]
