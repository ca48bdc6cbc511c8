"""Next-token cross-entropy fused with the output layer, a chunk of tokens at a time.

A language model's loss is ``cross_entropy(hidden @ W.T + b, targets)`` over every token, where the
logits ``(N, V)`` are the largest tensor of the step (4,096 tokens x 8,192 words = 134 MB in float32).
Formed whole, they are written, read by ``log_softmax``, written again, and read twice more in the
backward pass: on a CPU that traffic costs about as much as the output layer's matrix products.
:class:`LinearCrossEntropy` forms ``chunk_size`` rows of logits at a time, takes their loss, and turns
them at once into their gradient ``softmax - onehot`` (in place), which gives the gradients of the
hidden states, the weight and the bias in the forward pass; the backward pass only scales them. The
logits never exist whole, and each chunk is reused while it is still in the cache (the idea of Liger
Kernel's fused linear cross-entropy, Hsu et al. 2024, and of Wijmans et al. 2025, "Cut Your Losses").

The result is the same sum of token losses and the same gradients as the plain formula (tested against
``F.cross_entropy`` on fixed tensors), whatever the chunk size. On the quiet 2-core AVX2 CPU of BENCHMARKS.md
the fused form made the whole GPT-2-mini training step 12-19 % faster than forming the logits whole (a first
timing on a machine loaded by other work had said the opposite), so the causal LM uses it by default
(``model.loss_chunk_size``); ``chunk_size=None`` keeps the plain formula.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of token cross-entropies of ``hidden @ weight.T + bias``; gradients computed in the forward pass."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_bias = bias is not None and ctx.needs_input_grad[2]
        dtype = torch.promote_types(hidden.dtype, torch.float32)  # float32 at least (bf16 logits are summed in float32)
        loss = torch.zeros((), dtype=dtype, device=hidden.device)
        correct = torch.zeros((), dtype=torch.int64, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=dtype) if need_weight else None
        grad_bias = torch.zeros_like(bias, dtype=dtype) if need_bias else None
        for start in range(0, hidden.shape[0], chunk_size):
            rows = hidden[start:start + chunk_size]  # (n, H)
            chunk_targets = targets[start:start + chunk_size]  # (n,)
            logits = (rows @ weight.T).to(dtype)  # (n, V)
            if bias is not None:
                logits += bias.to(dtype)
            log_normaliser = torch.logsumexp(logits, dim=-1)  # (n,)
            target_logits = logits.gather(1, chunk_targets[:, None]).squeeze(1)
            loss += (log_normaliser - target_logits).sum()
            correct += (logits.argmax(dim=-1) == chunk_targets).sum()
            if need_hidden or need_weight or need_bias:
                # d loss / d logits = softmax - onehot, made in place in the logits' memory.
                gradient = logits.sub_(log_normaliser[:, None]).exp_()
                gradient[torch.arange(len(chunk_targets), device=gradient.device), chunk_targets] -= 1.0
                gradient = gradient.to(hidden.dtype)
                if need_hidden:
                    grad_hidden[start:start + chunk_size] = gradient @ weight
                if need_weight:
                    grad_weight.addmm_(gradient.T.to(dtype), rows.to(dtype))
                if need_bias:
                    grad_bias += gradient.to(dtype).sum(0)
        ctx.mark_non_differentiable(correct)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return loss, correct

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _grad_correct: torch.Tensor) -> tuple[Any, ...]:
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        weight_dtype, bias_dtype = ctx.dtypes
        return (None if grad_hidden is None else grad_hidden * grad_loss.to(grad_hidden.dtype),
                None if grad_weight is None else (grad_weight * grad_loss).to(weight_dtype),
                None if grad_bias is None else (grad_bias * grad_loss).to(bias_dtype),
                None, None)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                         chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of cross-entropies, number of argmax hits)`` of ``hidden (N, H) @ weight (V, H).T + bias`` against
    ``targets (N,)``. ``chunk_size=None`` forms the logits whole and lets autograd differentiate ``F.cross_entropy``;
    a chunk size runs the fused chunked form of the module docstring (faster on the CPU measured, BENCHMARKS.md),
    whose memory does not grow with ``N x V``. Without gradients the chunks are only scored."""
    if hidden.ndim != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(f"expected hidden (N, H) and targets (N,), got {tuple(hidden.shape)} and {tuple(targets.shape)}")
    if chunk_size is None:
        logits = torch.nn.functional.linear(hidden, weight, bias)
        logits = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
        loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == targets).sum()
        return loss, correct
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _LinearCrossEntropy.apply(hidden, weight, bias, targets, chunk_size)
    with torch.no_grad():
        return _LinearCrossEntropy.forward(_NoGrad(), hidden, weight, bias, targets, chunk_size)


class _NoGrad:
    """The ``ctx`` of a forward pass that needs no gradients."""

    needs_input_grad = (False, False, False, False, False)

    def mark_non_differentiable(self, *_: Any) -> None:
        pass

    def save_for_backward(self, *_: Any) -> None:
        pass


class LinearCrossEntropy(nn.Module):
    """Module form of :func:`linear_cross_entropy` (the output layer's weight and bias are passed in, so a
    model's tied embedding matrix is used as it is)."""

    def __init__(self, chunk_size: int | None = None) -> None:
        super().__init__()
        self.chunk_size = chunk_size

    def forward(self, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return linear_cross_entropy(hidden, weight, bias, targets, self.chunk_size)
