"""Distributed maths in one place: autograd-aware gathers, reductions and synchronised BatchNorm.

Every helper works unchanged in a single process (it returns its input), so models call them
unconditionally. They are tested on two real gloo processes in ``tests/test_distributed.py``
(``tests/distributed_worker.py`` runs under ``torchrun --nproc_per_node 2``).

Gradient convention. Accelerate/DDP *average* parameter gradients over ranks. A loss that each
rank computes on its local anchors against candidates gathered from every rank therefore has to
receive, in the backward of the gather, the *sum* of the gradients that all ranks send to a given
rank's slice: with ``F = sum_r L_r`` the backward on rank ``r`` then yields ``dF/dtheta_r`` and the DDP
average ``(1/W) sum_r dF/dtheta_r`` is the gradient of the rank-mean loss ``F / W``. Losses that
gather (NT-Xent) scale their local value so that ``F / W`` is the loss of the global batch, so
two ranks on half batches reproduce one process on the whole batch, gradients included.

Unequal batches. The gathers accept a different first dimension on every rank (a short last
batch): sizes are exchanged first (one tiny collective, which on GPUs also waits for the tensor's
producer), the tensors are padded to the largest size for ``all_gather`` and trimmed again.

SyncBatchNorm. ``torch.nn.SyncBatchNorm`` only runs on accelerators: its statistics kernels
(``batch_norm_stats``, ``batch_norm_gather_stats_with_counts``) have no CPU implementation, its
forward raises for CPU tensors, and DDP refuses it in CPU modules. :func:`convert_sync_batchnorm`
uses it on GPUs and :class:`PortableSyncBatchNorm` (plain tensor ops over :func:`gather_with_grad`)
elsewhere, so CPU multi-process runs and the two-rank tests use global-batch statistics too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "PortableSyncBatchNorm",
    "all_reduce_max",
    "all_reduce_mean",
    "all_reduce_sum",
    "convert_sync_batchnorm",
    "gather_no_grad",
    "gather_sizes",
    "gather_with_grad",
    "is_distributed",
    "rank",
    "world_size",
]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 outside a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if is_distributed() else 0


def gather_sizes(size: int, device: torch.device | str = "cpu") -> list[int]:
    """First-dimension sizes of every rank, in rank order (``[size]`` in a single process).

    Args:
        size: this rank's size.
        device: where the collective runs (the tensors' device: CUDA for NCCL, CPU for gloo).
    """
    if not is_distributed():
        return [int(size)]
    local = torch.tensor([int(size)], dtype=torch.int64, device=device)
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    return [int(value.item()) for value in gathered]


def _check_sizes(tensor: torch.Tensor, sizes: Sequence[int]) -> list[int]:
    sizes = [int(size) for size in sizes]
    if len(sizes) != dist.get_world_size() or sizes[dist.get_rank()] != tensor.shape[0]:
        raise ValueError(
            f"sizes {sizes} do not match this rank (rank {dist.get_rank()} of {dist.get_world_size()}, "
            f"local first dimension {tensor.shape[0]}); pass gather_sizes(tensor.shape[0], tensor.device) or None"
        )
    return sizes


def _all_gather_padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """all_gather of tensors whose first dimension differs by rank: pad to the largest, trim after."""
    largest = max(sizes)
    tensor = tensor.contiguous()
    if tensor.shape[0] < largest:
        padding = tensor.new_zeros((largest - tensor.shape[0], *tensor.shape[1:]))
        tensor = torch.cat([tensor, padding], dim=0)
    gathered = [torch.empty_like(tensor) for _ in sizes]
    dist.all_gather(gathered, tensor)
    return torch.cat([part[:size] for part, size in zip(gathered, sizes)], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns this rank's slice of the all-reduced (summed) gradient.

    gloo has no reduce_scatter, so the backward all-reduces the whole ``(total, ...)`` gradient and
    keeps this rank's rows; the gathered tensors are embeddings, small next to the model's gradients.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:  # type: ignore[override]
        ctx.start = sum(sizes[: dist.get_rank()])
        ctx.size = tensor.shape[0]
        return _all_gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        # A copy: all_reduce works in place and autograd may share grad_output with other nodes.
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.start + ctx.size], None


def gather_with_grad(tensor: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0, keeping gradients.

    The backward sends each rank the sum over ranks of the gradients of its rows (see the module
    docstring for why this is what DDP's gradient averaging needs).

    Args:
        tensor: ``(B_r, ...)``; trailing dimensions equal on every rank, ``B_r`` may differ.
        sizes: every rank's ``B_r`` if already known (from :func:`gather_sizes`); saves a collective.

    Returns:
        ``(sum_r B_r, ...)`` in rank order. The input itself in a single process.
    """
    if not is_distributed():
        return tensor
    sizes = gather_sizes(tensor.shape[0], tensor.device) if sizes is None else _check_sizes(tensor, sizes)
    return _GatherWithGrad.apply(tensor, sizes)


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Concatenate ``tensor`` (``(B_r, ...)``) from all ranks along dim 0 without gradients
    (features for kNN, statistics). ``B_r`` may differ by rank. Returns ``(sum_r B_r, ...)``."""
    if not is_distributed():
        return tensor
    sizes = gather_sizes(tensor.shape[0], tensor.device) if sizes is None else _check_sizes(tensor, sizes)
    return _all_gather_padded(tensor.detach(), sizes)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a same-shape tensor, without gradient (logged values, DINO centre).

    Returns a new tensor (floating point; integer inputs are converted); the input is unchanged.
    """
    if not is_distributed():
        return tensor
    tensor = tensor.detach().clone()
    if not tensor.is_floating_point():
        tensor = tensor.double()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / dist.get_world_size()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of a same-shape floating-point tensor, without gradient (SwAV's Sinkhorn sums,
    DINO's batch centre). Returns a new tensor; the input is unchanged. The input itself in one process."""
    if not is_distributed():
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over ranks of a same-shape tensor, without gradient (a shift that keeps
    SwAV's ``exp(scores / epsilon)`` finite). Returns a new tensor; the input itself in one process."""
    if not is_distributed():
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


class PortableSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with statistics over the global batch of all processes (SyncBatchNorm; Ioffe &
    Szegedy 2015 for BatchNorm) written with plain tensor ops, so it runs on CPU process groups
    (gloo) as well as on GPUs.

    ``torch.nn.SyncBatchNorm`` cannot be used on CPU: its forward raises for CPU tensors, its
    statistics kernels have no CPU implementation, and DDP refuses any ``torch.nn.SyncBatchNorm``
    (subclasses included) in a CPU module. Here every rank sends its per-channel count, mean and sum
    of squared deviations through :func:`gather_with_grad` (one collective per layer); they are
    combined with the parallel-variance formula (Chan et al. 1979), which is numerically stable,
    giving the global mean and biased variance used for normalisation and the unbiased variance for
    ``running_var``, exactly as ``torch.nn.BatchNorm*d`` does on one process. In evaluation, or in a
    single process, it is ``torch.nn.BatchNorm*d``. Parameters, buffers and state-dict keys are
    those of ``torch.nn.BatchNorm*d``.

    Shapes: ``(N, C, *)`` -> ``(N, C, *)``; ``N`` may differ by rank.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 - torch's argument name
        if input.dim() < 2:
            raise ValueError(f"PortableSyncBatchNorm expects (batch, channels, ...) inputs, got shape {tuple(input.shape)}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        self._check_input_dim(input)
        if not self.training or not is_distributed():
            return super().forward(input)
        channels = input.shape[1]
        reduce_dims = [0, *range(2, input.ndim)]
        broadcast = (1, channels) + (1,) * (input.ndim - 2)
        count = input.numel() // channels if channels else 0
        # Per-rank mean and sum of squared deviations, (C,) each; an empty rank contributes zeros.
        local_mean = input.sum(dim=reduce_dims) / max(count, 1)
        local_m2 = ((input - local_mean.view(broadcast)) ** 2).sum(dim=reduce_dims)
        stats = torch.cat([local_mean, local_m2, input.new_full((1,), float(count))]).unsqueeze(0)
        all_stats = gather_with_grad(stats, [1] * world_size())  # (W, 2C + 1)
        means, m2s, counts = all_stats[:, :channels], all_stats[:, channels : 2 * channels], all_stats[:, -1:]
        total = counts.sum()
        if input.device.type == "cpu" and total.item() <= 1:  # a host sync, so only where it is free
            raise ValueError(
                f"BatchNorm needs more than 1 value per channel over all processes in training, got "
                f"{int(total.item())} (input of shape {tuple(input.shape)} on this rank); use a larger batch"
            )
        mean = (counts * means).sum(dim=0) / total  # (C,)
        m2 = (m2s + counts * (means - mean) ** 2).sum(dim=0)  # (C,): Chan et al.'s pairwise combination
        if self.track_running_stats and self.num_batches_tracked is not None:
            # torch.nn.BatchNorm's update rule (momentum None: cumulative moving average).
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            with torch.no_grad():
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_((m2 / (total - 1)).detach(), alpha=factor)
        output = (input - mean.view(broadcast)) * torch.rsqrt((m2 / total).view(broadcast) + self.eps)
        if self.affine:
            output = output * self.weight.view(broadcast) + self.bias.view(broadcast)
        return output


_ACCELERATOR_TYPES = ("cuda", "xpu", "hpu")


def convert_sync_batchnorm(module: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """Make every BatchNorm layer of ``module`` use global-batch statistics in distributed training.

    On CUDA/XPU/HPU devices this is ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` (fused
    kernels). Otherwise (CPU, or ``device=None``) every ``BatchNorm1d/2d/3d`` and
    ``torch.nn.SyncBatchNorm`` becomes a :class:`PortableSyncBatchNorm` that reuses the same
    parameter and buffer tensors. Either way the state-dict keys are unchanged, so a converted
    backbone still saves as and loads into its plain transformers class. Call it before wrapping the
    model for DDP/Accelerate and before creating the optimizer.

    Args:
        module: the model.
        device: the training device (``accelerator.device``).

    Returns:
        the converted module (a new object when ``module`` itself is a BatchNorm layer).
    """
    if device is not None and torch.device(device).type in _ACCELERATOR_TYPES:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    converted = module
    batch_norm_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    if isinstance(module, batch_norm_types):
        converted = PortableSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            converted.weight = module.weight
            converted.bias = module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, convert_sync_batchnorm(child, device))
    return converted
