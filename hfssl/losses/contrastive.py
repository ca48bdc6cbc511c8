"""Contrastive losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hfssl.distributed import gather_with_grad, rank


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross entropy (SimCLR, Chen et al. 2020, eq. 1).

    For a global batch of N images with two views, each of the 2N embeddings has one positive
    (the other view of the same image) and 2N - 2 negatives (both views of every other image).
    The loss is the mean over all 2N anchors. In distributed runs the candidates are gathered
    from every process with gradients, so the global batch is ``world_size * B``.

    Args:
        temperature: tau in eq. 1 (paper default 0.5 for its batch sizes; 0.1-0.2 for small batches).
        gather_distributed: use every process's embeddings as negatives.

    Shapes: ``z1, z2: (B, D)`` (any scale; normalised inside) -> scalar.
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.shape != z2.shape or z1.ndim != 2:
            raise ValueError(f"NTXentLoss expects two (batch, dim) tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
        batch_size = z1.shape[0]
        z1 = F.normalize(z1, dim=1)
        z2 = F.normalize(z2, dim=1)
        if self.gather_distributed:
            all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
            offset = rank() * batch_size if all1.shape[0] != batch_size else 0
        else:
            all1, all2, offset = z1, z2, 0
        total = all1.shape[0]
        candidates = torch.cat([all1, all2], dim=0)  # (2 * total, D)
        anchors = torch.cat([z1, z2], dim=0)  # (2B, D): this process's anchors
        logits = anchors @ candidates.T / self.temperature  # (2B, 2 * total)
        local = torch.arange(batch_size, device=z1.device) + offset
        self_index = torch.cat([local, local + total])  # each anchor's own column
        positive_index = torch.cat([local + total, local])  # the other view of the same image
        logits = logits.masked_fill(
            F.one_hot(self_index, num_classes=2 * total).bool(), torch.finfo(logits.dtype).min
        )
        return F.cross_entropy(logits, positive_index)
