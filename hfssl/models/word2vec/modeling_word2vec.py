"""word2vec: skip-gram and CBOW with negative sampling (Mikolov et al. 2013), two kernels.

Inputs (built on the device by :func:`hfssl.models.word2vec.data.make_word2vec_inputs`, or for the numba
kernel by its compiled twin :func:`hfssl.models.word2vec.kernels.build_stream`): the
subsampled corpus as one flat stream of token ids ``(N,)`` with, per position, the centre's
dynamic window ``(N,)`` and a segment id ``(N,)`` (pairs never cross segments: documents and
chunks), plus the shared negatives ``(N / T, K)`` of each block of ``T`` consecutive centres.

``config.kernel`` chooses how a training step learns from them; both are one engine step (the
DataLoader batch of token rows -> ``make_inputs`` -> ``model(**inputs)``), checkpointed, logged,
resumed, exported and evaluated the same way.

**numba** (the default, CPU): :mod:`hfssl.models.word2vec.kernels` applies word2vec.c's per-pair
SGD step to the embedding rows in place, with each centre's ``K`` negatives shared by the pairs of
its window (``T = 1``, ``K = negative``: word2vec.c's objective, one output-row load per centre
instead of per pair). The learning rate is the engine's for the step (its linear decay, word2vec's
``alpha``), which the engine hands to :meth:`Word2VecModel.on_train_step_start` as
``scheduled["lr"]``. The returned loss is the batch's summed loss at the weights each pair saw; it
carries no gradient (backward gives none, the engine's SGD has nothing to add), so the step
allocates no gradient at all. ``config.workers`` threads train parts of the batch at once,
lock-free; one worker is bit-for-bit reproducible, resume included. ``model.eval()`` or
``torch.no_grad()`` computes the loss without updating. The update happens inside ``forward``, so
``train.on_nonfinite: skip`` cannot undo a step (the engine still refuses to checkpoint or save
non-finite weights). One process only: several processes' in-place copies could not be kept in step.

**torch** (any device, several processes): the batched tiles below, whose sparse gradients the
engine's SGD optimizer applies.

Formulation of the torch kernel: word2vec.c updates one (centre, context) pair at a time with five
fresh negatives: level-1 BLAS, one cache miss per row. Here the stream is cut into tiles of ``T``
centres. A tile's context rows are its ``T`` tokens plus ``window`` tokens of halo on each side,
so every positive pair of the tile is an entry of one small matrix product
``X_in[rows] (T+2W, d) @ [X_out[tile]; X_out[negatives]]^T (d, T+K)``, and the ``K`` negatives
of the tile share that product too (Ji et al. 2016 share negatives across a window the same way).
Each input and output row is gathered once per tile instead of once per pair, scores and
gradients are ``bmm`` calls over all tiles of a cache-sized block, and the closed-form gradients
(``sigmoid(s) - label``) are computed in the forward pass and handed to autograd as sparse COO
gradients: no autograd graph over the ``(pairs, d)`` tensors, and the SGD step touches only the
rows that occurred.

Objective, summed (not averaged) over the batch so that plain SGD with word2vec's learning rate
applies word2vec's per-pair step:

* skip-gram: for each pair (centre ``i``, context ``j``), ``-log σ(x_j · v_i) - (negative / K)
  Σ_k log σ(-x_j · v_k)`` over the tile's K negatives (skipping ``k`` equal to ``i``'s word);
* CBOW: ``h_i`` = mean (or sum) of the context vectors ``x_j``, then the same loss with ``h_i``
  predicting ``v_i``. Context vectors receive word2vec.c's update: the full gradient of ``h_i``
  with ``cbow_mean`` (``count ×`` the exact gradient of the mean), ``1 / count`` of it without.

``x`` are rows of ``input_embeddings`` (word2vec.c's ``syn0``, the word vectors), ``v`` rows of
``output_embeddings`` (``syn1neg``).

Large batches (ours): summing a batch's pair updates is plain minibatch SGD on that objective, and
at word2vec's learning rate it diverges beyond ~2k words per step: frequent words collect hundreds
of updates whose sum overshoots (step x curvature > 2). ``config.max_row_curvature`` damps exactly
those rows: for every row the curvature of its loss terms along its own update direction,
``sum_j sigma'(s_j) (u . v_j)^2``, is summed per word over the batch, and a word above the limit has
its update scaled by ``limit / curvature`` (an implicit-step-like trust region). Rare words, the vast
majority, keep word2vec's exact step. Measured on the 2.17M-word corpus: 8k-word batches train as
well as gensim; without the damping they diverge within 10 steps.

Threads: the blocks run on ``torch.get_num_interop_threads()`` worker threads with one intra-op
thread each (torch ops release the GIL); OpenMP inside these small ops costs more than it gives,
10-50x more when the cores are shared with other processes (measured).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.word2vec.configuration_word2vec import Word2VecConfig
from hfssl.models.word2vec.data import keep_probabilities, noise_distribution
from hfssl.models.word2vec.threads import run_parallel, single_threaded_ops

logger = logging.getLogger(__name__)

#: Centres per block of the forward pass: a block's temporaries (a few MB) stay in the L2/L3 cache;
#: whole-batch tensors streamed through memory were 5-10x slower per element (measured; 1024 was
#: the fastest of 512-8192 on a 2-core EPYC).
TOKENS_PER_BLOCK = 1024


@dataclass
class Word2VecOutput(ModelOutput):
    """Args:
    loss: summed negative-sampling loss of the batch (what SGD steps on).
    average_loss: ``loss`` divided by the number of training examples (pairs for skip-gram,
        centres with at least one context word for CBOW); logged, not differentiated.
    num_examples: that number, as a 0-d tensor.
    """

    loss: torch.FloatTensor | None = None
    average_loss: torch.FloatTensor | None = None
    num_examples: torch.LongTensor | None = None


@dataclass
class _Tiles:
    """The flat batch cut into tiles of ``T`` centres, with ``W`` halo positions on both sides."""

    ids: torch.Tensor  # (W + N + W,) int64, halo padded with 0
    window: torch.Tensor  # (N,) int64, 0 for padding
    segment: torch.Tensor  # (W + N + W,) int64, -1 for padding
    negatives: torch.Tensor  # (N // T, K) int64
    columns: torch.Tensor  # (N // T, T + K) int64: output rows of each tile (own tokens, negatives)
    tile: int
    halo: int

    @property
    def num_tiles(self) -> int:
        return self.negatives.shape[0]


@dataclass
class _Block:
    """One cache-sized run of tiles ``first:last`` and where its results go.

    ``input_rows`` / ``input_curvature`` are views of the gradient rows of the block's stream
    positions ``first * T ... last * T + 2W`` (block-local position 0 = padded position ``first * T``).
    """

    first: int
    last: int
    input_rows: torch.Tensor | None  # (nb T + 2W, d)
    input_curvature: torch.Tensor | None  # (nb T + 2W,)


@dataclass
class _BlockResult:
    loss: torch.Tensor
    examples: torch.Tensor


def _band_mask(tiles: _Tiles, first: int, last: int, offsets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Valid (context row, centre column) pairs of tiles ``first:last``: ``(nb, T + 2W, T)``.

    Row ``r`` of tile ``t`` is stream position ``tT - W + r``, column ``c`` is centre ``tT + c``;
    the pair is valid when ``0 < |r - W - c| <= window[centre]`` and both are in one segment.
    """
    size, halo = tiles.tile, tiles.halo
    count = last - first
    start = first * size
    window = tiles.window[start : last * size].view(count, 1, size)
    segment = tiles.segment[start : last * size + 2 * halo]
    rows = segment.as_strided((count, size + 2 * halo), (size, 1))
    columns = segment[halo : halo + count * size].view(count, 1, size)
    distance = offsets.abs()  # (T + 2W, T)
    mask = (distance <= window) & (distance > 0) & (rows.unsqueeze(2) == columns)
    return mask.to(dtype)


def _fold_halo(rows: torch.Tensor, target: torch.Tensor, size: int, halo: int) -> None:
    """Add per-tile row values ``(nb, T + 2W, ...)`` into per-position values ``(nb T + 2W, ...)``.

    Tile ``t`` row ``r`` belongs to position ``tT + r``: the tiles' main rows are disjoint, the
    halos overlap the neighbours' main rows and are added on top.
    """
    count = rows.shape[0]
    shape = (count, size, *rows.shape[2:])
    target[halo : halo + count * size].view(shape).add_(rows[:, halo : halo + size])
    if halo:
        target[: count * size].view(shape)[:, :halo].add_(rows[:, :halo])
        target[2 * halo : 2 * halo + count * size].view(shape)[:, size - halo :].add_(rows[:, size + halo :])


def _curvature_along(update: torch.Tensor, vectors: torch.Tensor, curvature: torch.Tensor, transpose: bool) -> torch.Tensor:
    """Loss curvature of each updated row along its own update direction.

    For a row ``x`` whose loss terms are ``l(x . v_j)`` with second derivatives ``c_j``, the
    curvature along the unit update ``u`` is ``sum_j c_j (u . v_j)^2``.

    Args:
        update: ``(nb, R, d)`` update (gradient) rows.
        vectors: ``(nb, J, d)`` the vectors each row is scored against.
        curvature: ``(nb, R, J)`` (``transpose=False``) or ``(nb, J, R)`` second derivatives.

    Returns:
        ``(nb, R)`` curvatures.
    """
    unit = update / update.norm(dim=2, keepdim=True).clamp_min(1e-30)
    if transpose:
        projections = torch.bmm(vectors, unit.transpose(1, 2))  # (nb, J, R)
        return (curvature * projections.square()).sum(1)
    projections = torch.bmm(unit, vectors.transpose(1, 2))  # (nb, R, J)
    return (curvature * projections.square()).sum(2)


class _NegativeSamplingFunction(torch.autograd.Function):
    """Loss of a word2vec batch with closed-form sparse gradients (see the module docstring)."""

    @staticmethod
    def forward(  # noqa: PLR0913 - autograd.Function signature
        ctx: Any,
        input_weight: torch.Tensor,
        output_weight: torch.Tensor,
        tiles: _Tiles,
        config: Word2VecConfig,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with single_threaded_ops():
            return _NegativeSamplingFunction._forward(ctx, input_weight, output_weight, tiles, config)

    @staticmethod
    def _forward(ctx: Any, input_weight: torch.Tensor, output_weight: torch.Tensor, tiles: _Tiles,
                 config: Word2VecConfig) -> tuple[torch.Tensor, torch.Tensor]:
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        damping = need_grad and config.max_row_curvature is not None
        size, halo, num_tiles = tiles.tile, tiles.halo, tiles.num_tiles
        dim, dtype = input_weight.shape[1], input_weight.dtype
        workers = max(1, min(torch.get_num_interop_threads(), math.ceil(num_tiles * size / TOKENS_PER_BLOCK)))
        # Contiguous runs of tiles, one per worker thread; each run owns its gradient rows (its
        # 2W-position overlap with the next run included), so threads never write the same memory.
        bounds = [round(num_tiles * index / workers) for index in range(workers + 1)]
        runs = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        row_starts = [0]
        for a, b in runs:
            row_starts.append(row_starts[-1] + (b - a) * size + 2 * halo)
        input_index = torch.cat([tiles.ids[a * size : b * size + 2 * halo] for a, b in runs])
        input_grad = torch.zeros(row_starts[-1], dim, dtype=dtype) if need_grad else None
        input_curvature = torch.zeros(row_starts[-1], dtype=dtype) if damping else None
        output_grad = torch.empty(num_tiles, tiles.columns.shape[1], dim, dtype=dtype) if need_grad else None
        output_curvature = torch.zeros(num_tiles, tiles.columns.shape[1], dtype=dtype) if damping else None
        offsets = torch.arange(size + 2 * halo).unsqueeze(1) - halo - torch.arange(size).unsqueeze(0)
        block_function = _skipgram_block if config.architecture == "skip-gram" else _cbow_block
        tiles_per_block = max(1, TOKENS_PER_BLOCK // size)

        @torch.no_grad()  # grad mode is thread-local: worker threads start with it enabled
        def run(index: int) -> list[_BlockResult]:
            (a, b), row_start = runs[index], row_starts[index]
            results = []
            for first in range(a, b, tiles_per_block):
                last = min(b, first + tiles_per_block)
                local = row_start + (first - a) * size
                block = _Block(
                    first, last,
                    input_grad[local:] if input_grad is not None else None,
                    input_curvature[local:] if input_curvature is not None else None,
                )
                results.append(block_function(input_weight, output_weight, tiles, config, block, offsets,
                                              output_grad, output_curvature))
            return results

        results = run_parallel(run, len(runs))
        loss = torch.stack([r.loss for r in results]).sum()
        examples = torch.stack([r.examples for r in results]).sum()
        columns = tiles.columns.reshape(-1)
        if damping:
            _damp_rows(input_grad, input_index, input_curvature, input_weight.shape[0], config.max_row_curvature)
            _damp_rows(output_grad.view(-1, dim), columns, output_curvature.view(-1), output_weight.shape[0],
                       config.max_row_curvature)
        ctx.mark_non_differentiable(examples)
        ctx.shapes = (input_weight.shape, output_weight.shape)
        ctx.gradients = (input_index, input_grad, columns, output_grad)
        return loss.to(dtype), examples.to(dtype)

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, grad_examples: torch.Tensor):  # noqa: ANN205
        with single_threaded_ops():
            return _NegativeSamplingFunction._backward(ctx, grad_loss)

    @staticmethod
    def _backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input_index, input_grad, columns, output_grad = ctx.gradients
        ctx.gradients = None  # drop our references so autograd can keep the tensors without a copy
        scale = float(grad_loss)
        grads = []
        for needed, index, values, shape in (
            (ctx.needs_input_grad[0], input_index, input_grad, ctx.shapes[0]),
            (ctx.needs_input_grad[1], columns, output_grad, ctx.shapes[1]),
        ):
            if not needed or values is None:
                grads.append(None)
                continue
            values = values.view(-1, shape[1])
            if scale != 1.0:
                values = values * scale
            grads.append(torch.sparse_coo_tensor(index.unsqueeze(0), values, shape, check_invariants=False,
                                                 is_coalesced=False))
        return grads[0], grads[1], None, None


def _damp_rows(values: torch.Tensor, index: torch.Tensor, curvature: torch.Tensor, vocab_size: int,
               limit: float) -> None:
    """Scale the update rows of every word whose summed curvature exceeds ``limit`` by ``limit / curvature``."""
    per_word = torch.zeros(vocab_size, dtype=curvature.dtype).index_add_(0, index, curvature)
    if float(per_word.max()) <= limit:
        return
    scale = (limit / per_word.clamp_min(limit)).to(values.dtype)
    values.mul_(scale[index].unsqueeze(1))


def _skipgram_block(  # noqa: PLR0913
    input_weight: torch.Tensor,
    output_weight: torch.Tensor,
    tiles: _Tiles,
    config: Word2VecConfig,
    block: _Block,
    offsets: torch.Tensor,
    output_grad: torch.Tensor | None,
    output_curvature: torch.Tensor | None,
) -> _BlockResult:
    size, halo = tiles.tile, tiles.halo
    first, last = block.first, block.last
    count, start = last - first, first * size
    dim = input_weight.shape[1]
    positions = F.embedding(tiles.ids[start : last * size + 2 * halo], input_weight)  # (nb T + 2W, d)
    rows = positions.as_strided((count, size + 2 * halo, dim), (size * dim, dim, 1))  # (nb, T + 2W, d)
    columns = F.embedding(tiles.columns[first:last], output_weight)  # (nb, T + K, d)
    scores = torch.bmm(rows, columns.transpose(1, 2))  # (nb, T + 2W, T + K)
    mask = _band_mask(tiles, first, last, offsets, scores.dtype)  # (nb, T + 2W, T)
    negatives = tiles.negatives[first:last]  # (nb, K)
    # Pairs per context row, minus those whose centre word is the negative (word2vec.c skips them).
    centre_ids = tiles.ids[halo + start : halo + last * size].view(count, size, 1)
    same_word = (centre_ids == negatives.unsqueeze(1)).to(scores.dtype)  # (nb, T, K)
    negative_weight = mask.sum(2, keepdim=True) - torch.bmm(mask, same_word)  # (nb, T + 2W, K)
    negative_weight.mul_(config.negative / negatives.shape[1])
    weight = torch.cat([mask, negative_weight], dim=2)  # (nb, T + 2W, T + K)
    # Loss: softplus(-s) for positives, softplus(s) for negatives, as one weighted softplus.
    signed = scores.clone()
    signed[..., :size].neg_()
    loss = (weight * F.softplus(signed)).sum()
    if output_grad is not None:
        probabilities = torch.sigmoid(scores)
        grad = probabilities.clone()
        grad[..., :size].sub_(1.0)
        grad.mul_(weight)  # d loss / d score, (nb, T + 2W, T + K)
        row_grad = torch.bmm(grad, columns)  # (nb, T + 2W, d)
        _fold_halo(row_grad, block.input_rows, size, halo)
        column_grad = output_grad[first:last]
        torch.bmm(grad.transpose(1, 2), rows, out=column_grad)  # (nb, T + K, d)
        if output_curvature is not None:
            curvature = weight.mul_(probabilities * (1.0 - probabilities))  # second derivatives
            _fold_halo(_curvature_along(row_grad, columns, curvature, transpose=False), block.input_curvature,
                       size, halo)
            output_curvature[first:last] = _curvature_along(column_grad, rows, curvature, transpose=True)
    return _BlockResult(loss.double(), mask.sum().double())


def _cbow_block(  # noqa: PLR0913
    input_weight: torch.Tensor,
    output_weight: torch.Tensor,
    tiles: _Tiles,
    config: Word2VecConfig,
    block: _Block,
    offsets: torch.Tensor,
    output_grad: torch.Tensor | None,
    output_curvature: torch.Tensor | None,
) -> _BlockResult:
    size, halo = tiles.tile, tiles.halo
    first, last = block.first, block.last
    count, start = last - first, first * size
    dim = input_weight.shape[1]
    positions = F.embedding(tiles.ids[start : last * size + 2 * halo], input_weight)
    rows = positions.as_strided((count, size + 2 * halo, dim), (size * dim, dim, 1))  # (nb, T + 2W, d)
    context = _band_mask(tiles, first, last, offsets, rows.dtype).transpose(1, 2)  # (nb, T, T + 2W)
    num_context = context.sum(2, keepdim=True)  # (nb, T, 1)
    inverse = 1.0 / num_context.clamp_min(1.0)
    # Mean mode: h = mean(x), each x gets the full dh. Sum mode: h = sum(x), each x gets dh / count.
    hidden = torch.bmm(context * inverse if config.cbow_mean else context, rows)  # (nb, T, d)
    targets = F.embedding(tiles.columns[first:last], output_weight)  # (nb, T + K, d)
    own, negative_vectors = targets[:, :size], targets[:, size:]
    negatives = tiles.negatives[first:last]
    positive_scores = torch.linalg.vecdot(hidden, own)  # (nb, T)
    negative_scores = torch.bmm(hidden, negative_vectors.transpose(1, 2))  # (nb, T, K)
    has_context = (num_context.squeeze(2) > 0).to(rows.dtype)  # (nb, T)
    centre_ids = tiles.ids[halo + start : halo + last * size].view(count, size, 1)
    negative_weight = (centre_ids != negatives.unsqueeze(1)).to(rows.dtype) * has_context.unsqueeze(2)
    negative_weight.mul_(config.negative / negatives.shape[1])
    loss = (has_context * F.softplus(-positive_scores)).sum() + (negative_weight * F.softplus(negative_scores)).sum()
    if output_grad is not None:
        positive_probability = torch.sigmoid(positive_scores)
        negative_probability = torch.sigmoid(negative_scores)
        positive_grad = (positive_probability - 1.0).mul_(has_context)  # (nb, T)
        negative_grad = negative_probability * negative_weight  # (nb, T, K)
        hidden_grad = torch.baddbmm(positive_grad.unsqueeze(2) * own, negative_grad, negative_vectors)  # (nb, T, d)
        update = context if config.cbow_mean else context * inverse
        _fold_halo(torch.bmm(update.transpose(1, 2), hidden_grad), block.input_rows, size, halo)
        own_grad = output_grad[first:last, :size]
        torch.mul(positive_grad.unsqueeze(2), hidden, out=own_grad)
        negative_grad_rows = torch.bmm(negative_grad.transpose(1, 2), hidden)  # (nb, K, d)
        output_grad[first:last, size:] = negative_grad_rows
        if output_curvature is not None:
            positive_curvature = has_context * positive_probability * (1.0 - positive_probability)  # (nb, T)
            negative_curvature = negative_weight * negative_probability * (1.0 - negative_probability)  # (nb, T, K)
            # Curvature of each centre's loss along its hidden update, shared by its context rows.
            unit = hidden_grad / hidden_grad.norm(dim=2, keepdim=True).clamp_min(1e-30)
            hidden_curvature = positive_curvature * torch.linalg.vecdot(unit, own).square() + (
                negative_curvature * torch.bmm(unit, negative_vectors.transpose(1, 2)).square()).sum(2)
            row_curvature = torch.bmm(update.transpose(1, 2), hidden_curvature.unsqueeze(2)).squeeze(2)
            _fold_halo(row_curvature, block.input_curvature, size, halo)
            output_curvature[first:last, :size] = positive_curvature * hidden.square().sum(2)
            output_curvature[first:last, size:] = _curvature_along(negative_grad_rows, hidden, negative_curvature,
                                                                   transpose=True)
    return _BlockResult(loss.double(), has_context.sum().double())


def _check_stream(input_ids: torch.Tensor, window_sizes: torch.Tensor, segment_ids: torch.Tensor,
                  negative_ids: torch.Tensor) -> None:
    if input_ids.ndim != 1 or window_sizes.shape != input_ids.shape or segment_ids.shape != input_ids.shape:
        raise ValueError(
            "word2vec expects flat input_ids, window_sizes and segment_ids of one shape (N,); got "
            f"{tuple(input_ids.shape)}, {tuple(window_sizes.shape)}, {tuple(segment_ids.shape)}"
        )
    if negative_ids.ndim != 2 or negative_ids.shape[0] == 0 or input_ids.shape[0] % negative_ids.shape[0]:
        raise ValueError(
            f"negative_ids must be (N / T, K) with N = {input_ids.shape[0]} divisible by its first dimension; "
            f"got {tuple(negative_ids.shape)}"
        )


class _UpdatedInPlace(torch.autograd.Function):
    """The numba kernel's loss as a graph node: the weights were already updated, so no gradient."""

    @staticmethod
    def forward(ctx: Any, loss: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return loss.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, ...]:  # noqa: ARG004
        return None, None, None


def train_stream(config: Word2VecConfig, input_rows: Any, output_rows: Any, input_ids: torch.Tensor,  # noqa: PLR0913
                 window_sizes: torch.Tensor, segment_ids: torch.Tensor, negative_ids: torch.Tensor, lr: float,
                 update: bool) -> tuple[float, int]:
    """Run the numba kernel of ``config.architecture`` on numpy views of the weights (updated in place
    when ``update``); returns the summed loss and the number of examples (pairs or centres)."""
    import numba  # noqa: PLC0415 - imported with the kernel, on the first training step

    from hfssl.models.word2vec import kernels  # noqa: PLC0415

    if numba.config.THREADING_LAYER == "default":
        # numba would pick its GNU OpenMP pool, which kills any process forked after it started (a DataLoader
        # worker with data.num_workers > 0: "fork() called from a process already using GNU OpenMP"); its own
        # workqueue pool is fork-safe and as fast for a few large parts. NUMBA_THREADING_LAYER still wins.
        numba.config.THREADING_LAYER = "workqueue"
    threads = min(config.workers or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(threads)
    count = input_ids.shape[0]
    # Parts of >= 2k words, several per thread, handed out one at a time (chunk size 1): a thread that
    # the OS deschedules on a shared machine does not hold the others up. One thread runs them in order.
    parts = max(1, min(8 * threads, count // 2048)) if threads > 1 else 1
    arrays = [tensor.detach().cpu().numpy().astype(np.int64, copy=False)
              for tensor in (input_ids, window_sizes, segment_ids, negative_ids)]
    block = count // negative_ids.shape[0]
    tables = kernels.tables_for(input_rows.dtype)
    weight = config.negative / negative_ids.shape[1]
    with numba.parallel_chunksize(1):
        if config.architecture == "skip-gram":
            loss, examples = kernels.train_skipgram(input_rows, output_rows, tables, *arrays, block, weight, lr,
                                                    parts, update, config.window + 1)
        else:
            loss, examples = kernels.train_cbow(input_rows, output_rows, tables, *arrays, block, weight, lr, parts,
                                                update, config.window + 1, config.cbow_mean)
    return float(loss), int(examples)


class Word2VecModel(HfsslPreTrainedModel):
    """word2vec with negative sampling, skip-gram or CBOW (Mikolov et al. 2013).

    The word vectors are the rows of ``input_embeddings`` (``(vocab_size, vector_size)``); the
    vocabulary is the tokenizer saved next to the model. ``word_counts`` (a buffer saved with the
    weights) gives the noise distribution, the subsampling probabilities and the frequency order.
    """

    config_class = Word2VecConfig
    main_input_name = "input_ids"
    base_model_prefix = "word2vec"

    def __init__(self, config: Word2VecConfig) -> None:
        super().__init__(config)
        # sparse=True tells the engine's optimizer builder that gradients are sparse (no foreach).
        self.input_embeddings = nn.Embedding(config.vocab_size, config.vector_size, sparse=True)
        self.output_embeddings = nn.Embedding(config.vocab_size, config.vector_size, sparse=True)
        counts = torch.zeros(config.vocab_size, dtype=torch.int64)
        if config.word_counts is not None:
            counts = torch.tensor(config.word_counts, dtype=torch.int64)
        self.register_buffer("word_counts", counts, persistent=True)
        self._vocabulary: list[str] | None = None
        self._word_to_id: dict[str, int] | None = None
        self._learning_rate: float | None = None  # the numba kernel's step size, set by the engine
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # word2vec.c: syn0 uniform in [-0.5/d, 0.5/d), syn1neg zero.
        if module is getattr(self, "input_embeddings", None):
            bound = 0.5 / self.config.vector_size
            init.uniform_(module.weight, -bound, bound)
        elif module is getattr(self, "output_embeddings", None):
            init.zeros_(module.weight)

    def get_backbone(self) -> nn.Module:
        """The transferable part of word2vec is its input embedding table (the word vectors)."""
        return self.input_embeddings

    def get_input_embeddings(self) -> nn.Embedding:
        return self.input_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.input_embeddings = value

    # ---- training -----------------------------------------------------------------------------

    def on_train_step_start(self, step: int, scheduled: dict[str, float]) -> None:
        """Keep the engine's learning rate of this step: the numba kernel applies it in place."""
        self._learning_rate = scheduled.get("lr")

    def forward(
        self,
        input_ids: torch.Tensor,
        window_sizes: torch.Tensor,
        segment_ids: torch.Tensor,
        negative_ids: torch.Tensor,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> Word2VecOutput:
        """Negative-sampling loss of a subsampled token stream.

        Args:
            input_ids: ``(N,)`` token ids of the subsampled stream, ``N`` a multiple of
                ``T = N // negative_ids.shape[0]`` (pad with any id and window 0).
            window_sizes: ``(N,)`` dynamic window of each centre, in ``0..config.window`` (0: not a centre).
            segment_ids: ``(N,)`` pairs only form inside one segment (-1 for padding).
            negative_ids: ``(N / T, K)`` negatives shared by the pairs of each tile of ``T`` centres.
        """
        if self.config.kernel == "numba":
            return self._numba_forward(input_ids, window_sizes, segment_ids, negative_ids)
        with single_threaded_ops():
            tiles = self._tiles(input_ids, window_sizes, segment_ids, negative_ids)
        loss, examples = _NegativeSamplingFunction.apply(
            self.input_embeddings.weight, self.output_embeddings.weight, tiles, self.config
        )
        average = loss.detach() / examples.clamp_min(1.0)
        return Word2VecOutput(loss=loss, average_loss=average, num_examples=examples.round().long())

    def _numba_forward(self, input_ids: torch.Tensor, window_sizes: torch.Tensor, segment_ids: torch.Tensor,
                       negative_ids: torch.Tensor) -> Word2VecOutput:
        """Train (or, in eval mode / without grad, score) the stream with the compiled kernel."""
        _check_stream(input_ids, window_sizes, segment_ids, negative_ids)
        input_weight, output_weight = self.input_embeddings.weight, self.output_embeddings.weight
        if input_weight.device.type != "cpu":
            raise ValueError(f"word2vec's numba kernel runs on the CPU, but the model is on {input_weight.device}; "
                             "set model.kernel: torch to train on a GPU")
        update = self.training and torch.is_grad_enabled() and input_weight.requires_grad
        if update:
            if self._learning_rate is None:
                raise RuntimeError(
                    "word2vec's numba kernel updates the weights in place during the forward pass and needs the "
                    "step's learning rate: the engine passes it through on_train_step_start(step, {'lr': ...}). "
                    "Call model.on_train_step_start(step, {'lr': lr}) first, use model.eval() or torch.no_grad() "
                    "for the loss alone, or set kernel: torch for autograd gradients"
                )
            if torch.distributed.is_available() and torch.distributed.is_initialized() \
                    and torch.distributed.get_world_size() > 1:
                raise ValueError("word2vec's numba kernel updates the weights in place and cannot keep several "
                                 "processes' copies in step; set model.kernel: torch for multi-process training "
                                 "(the kernel's workers use every core of one process already)")
        loss, examples = train_stream(
            self.config, input_weight.detach().numpy(), output_weight.detach().numpy(), input_ids, window_sizes,
            segment_ids, negative_ids, self._learning_rate if update else 0.0, update,
        )
        loss = torch.tensor(loss, dtype=input_weight.dtype)
        if update:  # the engine calls backward on the loss: a node without gradients for the weights
            loss = _UpdatedInPlace.apply(loss, input_weight, output_weight)
        examples = torch.tensor(examples)
        return Word2VecOutput(loss=loss, average_loss=loss.detach() / examples.clamp_min(1), num_examples=examples)

    def _tiles(self, input_ids: torch.Tensor, window_sizes: torch.Tensor, segment_ids: torch.Tensor,
               negative_ids: torch.Tensor) -> _Tiles:
        _check_stream(input_ids, window_sizes, segment_ids, negative_ids)
        size = input_ids.shape[0] // negative_ids.shape[0]
        halo = self.config.window
        if size < halo:
            raise ValueError(f"tiles of {size} centres are shorter than the window {halo}; raise negative_block_size")
        ids = input_ids.long()
        pad = ids.new_zeros(halo)
        minus = ids.new_full((halo,), -1)
        columns = torch.cat([ids.view(-1, size), negative_ids.long()], dim=1)
        return _Tiles(
            ids=torch.cat([pad, ids, pad]),
            window=window_sizes.long(),
            segment=torch.cat([minus, segment_ids.long(), minus]),
            negatives=negative_ids.long(),
            columns=columns,
            tile=size,
            halo=halo,
        )

    # ---- word vectors -------------------------------------------------------------------------

    def get_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word vectors of token ids: ``(...,)`` -> ``(..., vector_size)``."""
        return self.input_embeddings(input_ids)

    def get_word_vectors(self) -> tuple[list[str], torch.Tensor]:
        """The ``word-vectors`` capability: trained words (count > 0), most frequent first, and their input vectors."""
        counts = self.word_counts.detach().cpu()
        order = torch.argsort(counts, descending=True, stable=True)
        order = order[counts[order] > 0]
        words = self.vocabulary
        return [words[i] for i in order.tolist()], self.input_embeddings.weight.detach().cpu()[order]

    def set_vocabulary(self, vocabulary: Sequence[str] | Any) -> None:
        """Attach the words of the ids: a list of ``vocab_size`` words or a tokenizer."""
        if not isinstance(vocabulary, (list, tuple)):
            vocab = vocabulary.get_vocab()
            words = [""] * len(vocab)
            for word, index in vocab.items():
                if index < len(words):
                    words[index] = word
            vocabulary = words
        if len(vocabulary) != self.config.vocab_size:
            raise ValueError(f"the vocabulary has {len(vocabulary)} words but the model has {self.config.vocab_size} rows")
        self._vocabulary = list(vocabulary)
        self._word_to_id = {word: index for index, word in enumerate(self._vocabulary)}

    @property
    def vocabulary(self) -> list[str]:
        """Words of the rows, loaded from the tokenizer saved beside the model on first use."""
        if self._vocabulary is None:
            path = getattr(self.config, "_name_or_path", "") or getattr(self, "name_or_path", "")
            try:
                from transformers import AutoTokenizer

                self.set_vocabulary(AutoTokenizer.from_pretrained(path))
            except (OSError, ValueError, TypeError) as error:
                raise ValueError(
                    f"no vocabulary attached to this word2vec model (looked for a tokenizer in {path!r}: {error}); "
                    "call model.set_vocabulary(tokenizer)"
                ) from error
        return self._vocabulary

    def word_id(self, word: str) -> int:
        """Row of ``word``; ``KeyError`` naming the word when it is not in the vocabulary."""
        self.vocabulary  # noqa: B018 - loads the vocabulary
        if word not in self._word_to_id:
            raise KeyError(f"{word!r} is not in the word2vec vocabulary ({self.config.vocab_size} words)")
        return self._word_to_id[word]

    @torch.no_grad()
    def normalized_embeddings(self) -> torch.Tensor:
        """Unit-length word vectors ``(vocab_size, vector_size)`` (zero rows stay zero)."""
        weight = self.input_embeddings.weight.detach().float()
        return weight / weight.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def similarity(self, word_a: str, word_b: str) -> float:
        """Cosine similarity of two words' vectors."""
        vectors = self.normalized_embeddings()
        return float(vectors[self.word_id(word_a)] @ vectors[self.word_id(word_b)])

    @torch.no_grad()
    def most_similar(self, word: str | torch.Tensor, topn: int = 10) -> list[tuple[str, float]]:
        """The ``topn`` nearest words by cosine similarity to a word (excluded) or a vector ``(d,)``."""
        vectors = self.normalized_embeddings()
        exclude: set[int] = set()
        if isinstance(word, str):
            index = self.word_id(word)
            query = vectors[index]
            exclude.add(index)
        else:
            query = word.detach().float().flatten()
            query = query / query.norm().clamp_min(1e-12)
        scores = vectors @ query
        scores[self.word_counts == 0] = -float("inf")  # special tokens and unseen rows
        for index in exclude:
            scores[index] = -float("inf")
        top = torch.topk(scores, min(topn, scores.numel() - len(exclude)))
        words = self.vocabulary
        return [(words[i], float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist()) if s > -float("inf")]

    def noise_distribution(self) -> torch.Tensor:
        """``P_n(w) ∝ count(w)^ns_exponent`` over the vocabulary, ``(vocab_size,)`` float64."""
        return noise_distribution(self.word_counts, self.config.ns_exponent)

    def keep_probabilities(self) -> torch.Tensor:
        """Subsampling keep probability of each word, ``(vocab_size,)`` float64."""
        return keep_probabilities(self.word_counts, self.config.sample)
