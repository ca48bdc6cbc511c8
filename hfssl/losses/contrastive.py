"""Contrastive losses."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hfssl.distributed import gather_sizes, gather_with_grad, is_distributed, rank


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross entropy (SimCLR, Chen et al. 2020, eq. 1).

    For a global batch of N images with two views, each of the 2N embeddings is an anchor with one
    positive (the other view of the same image) and 2N - 2 negatives (both views of every other
    image): ``l(i, j) = -log exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau)`` with
    cosine similarity ``sim``; the loss is the mean of ``l`` over the 2N anchors.

    Distributed runs (``gather_distributed=True``): each rank's anchors are scored against the
    candidates gathered from every rank with gradients, so the negatives come from the global batch.
    Each rank returns ``W / (2N)`` times the sum over its own anchors (W ranks), so the mean over
    ranks of the returned values (what Accelerate logs) is the global-batch loss and DDP's
    averaged gradients are its gradients, also when the last batch is split unevenly; with equal
    local batches the returned value is the local mean. See :mod:`hfssl.distributed`.

    Args:
        temperature: tau in eq. 1, finite and > 0 (paper: 0.1 for ImageNet with large batches,
            sec. 5.1; 0.5 in its CIFAR-10 runs, appendix B.9).
        gather_distributed: use every process's embeddings as negatives.

    Shapes: ``z1, z2: (B, D)``, row i of both being the two views of image i (any scale; they are
    L2-normalised here) -> scalar.
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = True) -> None:
        super().__init__()
        try:
            value = float(temperature)
        except (TypeError, ValueError):
            value = float("nan")
        if isinstance(temperature, bool) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"NTXentLoss temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = value
        self.gather_distributed = gather_distributed

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] == 0:
            raise ValueError(
                "NTXentLoss expects two non-empty (batch, dim) tensors of one shape (the two views of each "
                f"image, row by row), got {tuple(z1.shape)} and {tuple(z2.shape)}"
            )
        batch_size, dim = z1.shape
        z1 = F.normalize(z1, dim=1)
        z2 = F.normalize(z2, dim=1)
        pairs = torch.cat([z1, z2], dim=1)  # (B, 2D): one gather for both views
        if self.gather_distributed and is_distributed():
            sizes = gather_sizes(batch_size, z1.device)
            offset = sum(sizes[: rank()])
            pairs = gather_with_grad(pairs, sizes)  # (N, 2D), rank order
        else:
            sizes, offset = [batch_size], 0
        total = pairs.shape[0]
        candidates = torch.cat([pairs[:, :dim], pairs[:, dim:]], dim=0)  # (2N, D): all first views, then all second
        anchors = torch.cat([z1, z2], dim=0)  # (2B, D): this rank's anchors
        logits = anchors @ candidates.T / self.temperature  # (2B, 2N)
        local = torch.arange(batch_size, device=z1.device) + offset
        self_index = torch.cat([local, local + total])  # each anchor's own column: k != i in eq. 1
        positive_index = torch.cat([local + total, local])  # the other view of the same image
        self_mask = F.one_hot(self_index, num_classes=2 * total).bool()
        logits = logits.masked_fill(self_mask, float("-inf"))
        loss_sum = F.cross_entropy(logits, positive_index, reduction="sum")
        return loss_sum * (len(sizes) / (2 * total))
