"""Distillation losses from a frozen teacher: soft-target cross-entropy (Hinton et al. 2015; SimCLRv2's phase 3,
Chen et al. 2020b, eq. 2) and feature regression (cosine or smooth-l1, the student's projected features
against the teacher's; Beyer et al. 2022 "Knowledge distillation: a good teacher is patient and consistent"
show the teacher and student on the same view)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from hfssl.losses.precision import float32_loss

FEATURE_LOSSES = ("cosine", "smooth_l1")


class SoftTargetCrossEntropy(nn.Module):
    """``-mean_i sum_y softmax(t_i / T)_y log softmax(s_i / T)_y`` (SimCLRv2 eq. 2, no ``T^2`` factor).

    Args:
        temperature: ``T > 0`` softening both distributions (SimCLRv2 uses 1 in its distillation).
    Shapes: student and teacher logits ``(B, classes)`` -> scalar. The teacher side carries no gradient.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    @float32_loss
    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                             f"{tuple(teacher_logits.shape)} differ: the teacher must predict the same classes")
        targets = functional.softmax(teacher_logits.detach() / self.temperature, dim=-1)
        log_probabilities = functional.log_softmax(student_logits / self.temperature, dim=-1)
        return -(targets * log_probabilities).sum(dim=-1).mean()


class FeatureDistillationLoss(nn.Module):
    """The student's projected features regress the teacher's.

    ``cosine``: ``mean_i (1 - cos(p_i, t_i))``; ``smooth_l1``: ``mean_{i,d} smooth_l1(p_id - t_id; beta)``
    (``0.5 x^2 / beta`` for ``|x| < beta``, else ``|x| - 0.5 beta``).

    Shapes: predictions and targets ``(B, D)`` -> scalar. The teacher side carries no gradient.
    """

    def __init__(self, kind: str = "cosine", beta: float = 1.0) -> None:
        super().__init__()
        if kind not in FEATURE_LOSSES:
            raise ValueError(f"the feature loss must be one of {', '.join(FEATURE_LOSSES)}, got {kind!r}")
        if not beta > 0:
            raise ValueError(f"smooth_l1_beta must be > 0, got {beta!r}")
        self.kind = kind
        self.beta = float(beta)

    @float32_loss
    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if predictions.shape != targets.shape:
            raise ValueError(f"projected student features {tuple(predictions.shape)} and teacher features "
                             f"{tuple(targets.shape)} differ")
        targets = targets.detach()
        if self.kind == "cosine":
            return (1.0 - functional.cosine_similarity(predictions, targets, dim=-1)).mean()
        return functional.smooth_l1_loss(predictions, targets, beta=self.beta)
