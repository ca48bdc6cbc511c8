"""Losses of the semi-supervised baselines: pseudo-labels with a confidence threshold, FixMatch's masked
cross-entropy, Mean Teacher's consistency and its sigmoid ramp-up.

* :func:`masked_pseudo_label_loss`: FixMatch (Sohn et al. 2020, eq. 4)
  ``l_u = 1 / (mu B) * sum_b 1[max q_b >= tau] * H(argmax q_b, p_m(y | A(u_b)))`` where ``q_b`` is the model's
  prediction on the weak view (no gradient) and ``A(u_b)`` the strong view. Only confident rows count, but the
  sum is divided by *every* unlabelled row (``mu B``), as in the paper and its official code. Pseudo-Label
  (Lee 2013, with the confidence threshold of the FixMatch paper's re-implementation) is the same loss with the
  prediction and the target computed on the same view.
* :func:`softmax_mse_consistency`: Mean Teacher (Tarvainen & Valpola 2017, sec. 2)
  ``J = E ||f(x, theta', eta') - f(x, theta, eta)||^2`` on the class probabilities, averaged over rows and
  classes (the official code's ``mse_loss(sum) / num_classes / batch``); the teacher's side has no gradient.
* :func:`sigmoid_rampup`: the consistency weight's ramp-up ``exp(-5 (1 - t)^2)`` for ``t`` in ``[0, 1]``
  (Laine & Aila 2017, sec. A; used by Mean Teacher), 1 after the ramp-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hfssl.losses.precision import float32_loss

__all__ = ["PseudoLabelLoss", "masked_pseudo_label_loss", "softmax_mse_consistency", "sigmoid_rampup"]


@dataclass
class PseudoLabelLoss:
    """A masked pseudo-label loss and its diagnostics.

    Attributes:
        loss: scalar, ``sum(mask * cross_entropy) / N`` over the ``N`` unlabelled rows.
        mask: ``(N,)`` float32, 1 where the target prediction's confidence reaches the threshold.
        pseudo_labels: ``(N,)`` int64, the arg-max of the target prediction.
    """

    loss: torch.Tensor
    mask: torch.Tensor
    pseudo_labels: torch.Tensor


@float32_loss
def masked_pseudo_label_loss(target_logits: torch.Tensor, logits: torch.Tensor, threshold: float) -> PseudoLabelLoss:
    """FixMatch's unlabelled loss (and Pseudo-Label's): see the module docstring.

    Args:
        target_logits: ``(N, K)`` logits that make the pseudo-labels (the weak view); detached here.
        logits: ``(N, K)`` logits trained towards them (the strong view, or the same view for Pseudo-Label).
        threshold: confidence ``tau`` in ``[0, 1]``; a row counts when its largest probability is ``>= tau``.

    Returns:
        :class:`PseudoLabelLoss`.
    """
    if target_logits.shape != logits.shape or logits.ndim != 2:
        raise ValueError(f"masked_pseudo_label_loss takes two (rows, classes) logits of the same shape, got "
                         f"{tuple(target_logits.shape)} and {tuple(logits.shape)}")
    probabilities = torch.softmax(target_logits.detach(), dim=-1)
    confidence, pseudo_labels = probabilities.max(dim=-1)
    mask = (confidence >= threshold).to(logits.dtype)
    per_row = F.cross_entropy(logits, pseudo_labels, reduction="none")
    # Divided by all N rows, not by the confident ones (FixMatch eq. 4, the official code's mean over the batch).
    return PseudoLabelLoss((per_row * mask).mean(), mask, pseudo_labels)


@float32_loss
def softmax_mse_consistency(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean Teacher's consistency: mean over rows and classes of ``(softmax(logits) - softmax(teacher))^2``.

    Args:
        logits: ``(N, K)`` the student's logits (gradients flow).
        teacher_logits: ``(N, K)`` the EMA teacher's logits on another view of the same images (detached).
    """
    if teacher_logits.shape != logits.shape or logits.ndim != 2:
        raise ValueError(f"softmax_mse_consistency takes two (rows, classes) logits of the same shape, got "
                         f"{tuple(logits.shape)} and {tuple(teacher_logits.shape)}")
    return (torch.softmax(logits, dim=-1) - torch.softmax(teacher_logits.detach(), dim=-1)).pow(2).mean()


def sigmoid_rampup(progress: float) -> float:
    """``exp(-5 (1 - t)^2)`` for ``t = progress`` clipped to ``[0, 1]`` (1 at and after the end of the ramp-up)."""
    t = min(1.0, max(0.0, float(progress)))
    return math.exp(-5.0 * (1.0 - t) ** 2)
