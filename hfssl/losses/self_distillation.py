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
