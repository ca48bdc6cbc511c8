"""Distributed maths in one place: autograd-aware gathers and reductions.

Every helper works unchanged in a single process (it returns its input), so models call them
unconditionally. They are tested on two real gloo processes in ``tests/test_distributed.py``.

Gradient convention. Accelerate/DDP *average* parameter gradients over ranks. A loss that each
rank computes on its local anchors against candidates gathered from every rank therefore has to
receive, in the backward of the gather, the *sum* of the gradients that all ranks send to a given
rank's slice; then the DDP average of the per-rank gradients equals the gradient of the mean loss
over the global batch (see ``tests/test_distributed.py`` for the check).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns this rank's slice of the all-reduced (summed) gradient."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.batch_size = tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad_output.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch_size
        return grad[start : start + ctx.batch_size]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (shape ``(B, ...)``, equal B on every rank) from all ranks along dim 0,
    keeping gradients: ``(world_size * B, ...)``. Identity in a single process."""
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate from all ranks along dim 0 without gradients (features for kNN, statistics)."""
    if not is_distributed():
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=0)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (no gradient): logged values, DINO centre, statistics."""
    if not is_distributed():
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / dist.get_world_size()
