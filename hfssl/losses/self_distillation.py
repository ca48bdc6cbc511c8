"""Self-distillation losses (student predicts a teacher; no negatives)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BYOLLoss(nn.Module):
    """BYOL regression loss (Grill et al. 2020, eq. 2): ``2 - 2 cos(q, sg(z'))``, mean over the batch.

    Shapes: ``prediction, target: (B, D)`` -> scalar. The target is detached here: the teacher
    never receives gradients.
    """

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if prediction.shape != target.shape:
            raise ValueError(f"BYOLLoss expects equal shapes, got {tuple(prediction.shape)} and {tuple(target.shape)}")
        return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=-1)).mean()


class SimSiamLoss(nn.Module):
    """SimSiam's symmetric negative cosine with stop-gradient (Chen & He 2021, eq. 1-4, Algorithm 1).

    ``D(p, z) = -cos(p, sg(z))`` averaged over the batch (eq. 1 with the stop-gradient of eq. 3), and
    ``L = D(p1, z2) / 2 + D(p2, z1) / 2`` (eq. 4): each view's prediction regresses the other view's
    projection, which is treated as a constant. The projections are detached here, so the encoder
    only receives gradients through the predictions (sec. 3, "Stop-gradient"). The minimum is -1.

    Every term is per sample, so nothing is gathered in distributed runs: each rank returns the mean
    over its own rows, and DDP's gradient average is the global-batch gradient for the equal local
    batches the engine uses (it drops the last incomplete batch).

    Shapes: ``p1, p2, z1, z2: (B, D)`` (predictions and projections of views 1 and 2) -> scalar.
    """

    def forward(self, p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        shapes = {tuple(tensor.shape) for tensor in (p1, p2, z1, z2)}
        if len(shapes) != 1 or p1.ndim != 2 or p1.shape[0] == 0:
            raise ValueError(
                "SimSiamLoss expects four non-empty (batch, dim) tensors of one shape (p1, p2, z1, z2), got "
                f"{[tuple(tensor.shape) for tensor in (p1, p2, z1, z2)]}"
            )
        first = -F.cosine_similarity(p1, z2.detach(), dim=-1).mean()
        second = -F.cosine_similarity(p2, z1.detach(), dim=-1).mean()
        return first / 2 + second / 2
