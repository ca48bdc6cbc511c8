"""Self-distillation losses (student predicts a teacher; no negatives)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hfssl.losses.precision import float32_loss


class BYOLLoss(nn.Module):
    """BYOL regression loss (Grill et al. 2020, eq. 2): ``2 - 2 cos(q, sg(z'))``, mean over the batch.

    Shapes: ``prediction, target: (B, D)`` -> scalar. The target is detached here: the teacher
    never receives gradients. Computed in float32 with autocast switched off (:mod:`hfssl.losses.precision`).
    """

    @float32_loss
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

    ``stop_gradient=False`` is the paper's control (sec. 4.1, Figure 2): ``z`` is not detached, so the
    loss's gradient also reaches the encoder through the target branch, ``dD(p, z)/dz = -(p / (|p| |z|) -
    cos(p, z) z / |z|^2) / B`` per row, and the representation collapses to a constant (the paper's
    accuracy falls to 0.1 %, the per-dimension std of the normalised output to 0).

    Every term is per sample, so nothing is gathered in distributed runs: each rank returns the mean
    over its own rows, and DDP's gradient average is the global-batch gradient for the equal local
    batches the engine uses (it drops the last incomplete batch).

    Args:
        stop_gradient: detach the projections (the method); ``False`` only for the collapse control.

    Shapes: ``p1, p2, z1, z2: (B, D)`` (predictions and projections of views 1 and 2) -> scalar.
    """

    def __init__(self, stop_gradient: bool = True) -> None:
        super().__init__()
        self.stop_gradient = stop_gradient

    @float32_loss
    def forward(self, p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        shapes = {tuple(tensor.shape) for tensor in (p1, p2, z1, z2)}
        if len(shapes) != 1 or p1.ndim != 2 or p1.shape[0] == 0:
            raise ValueError(
                "SimSiamLoss expects four non-empty (batch, dim) tensors of one shape (p1, p2, z1, z2), got "
                f"{[tuple(tensor.shape) for tensor in (p1, p2, z1, z2)]}"
            )
        if self.stop_gradient:
            z1, z2 = z1.detach(), z2.detach()
        first = -F.cosine_similarity(p1, z2, dim=-1).mean()
        second = -F.cosine_similarity(p2, z1, dim=-1).mean()
        return first / 2 + second / 2

    def extra_repr(self) -> str:
        return f"stop_gradient={self.stop_gradient}"


class DINOLoss(nn.Module):
    """DINO's cross-entropy between sharpened, centred teacher outputs and student outputs over
    crop pairs (Caron et al. 2021, Algorithm 1 and sec. 3.1).

    With ``P_t = softmax((g_t - c) / tau_t)`` for each of the ``G`` global crops and
    ``log P_s = log_softmax(g_s / tau_s)`` for each of the ``V`` student crops (the global crops first,
    in the teacher's order, then the local crops), the loss is the mean over pairs ``(t, s)`` with
    ``s != t`` of ``mean_batch( -sum_k P_t[k] log P_s[k] )``. The teacher side is detached (stop
    gradient) and the centre ``c`` is a constant here; the model updates it (:func:`dino_center_update`).

    Every term is per image, so nothing is gathered: each rank returns the mean over its own rows
    and DDP's gradient average is the global-batch gradient for the equal local batches the engine
    uses. Only the centre is global (the model all-reduces its batch mean).

    Shapes: ``student_logits: (V, B, K)``, ``teacher_logits: (G, B, K)`` with ``G <= V``, ``center: (K,)``
    -> scalar.
    """

    @float32_loss
    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, center: torch.Tensor,
                student_temperature: float, teacher_temperature: float) -> torch.Tensor:
        if student_logits.ndim != 3 or teacher_logits.ndim != 3 or student_logits.shape[1:] != teacher_logits.shape[1:]:
            raise ValueError("DINOLoss expects student logits (views, batch, K) and teacher logits (global views, "
                             f"batch, K) of one batch and K, got {tuple(student_logits.shape)} and "
                             f"{tuple(teacher_logits.shape)}")
        num_global = teacher_logits.shape[0]
        if num_global > student_logits.shape[0] or student_logits.shape[0] < 2:
            raise ValueError(f"DINOLoss needs at least 2 student views and no more teacher views than student views, "
                             f"got {student_logits.shape[0]} student and {num_global} teacher views")
        for name, value in (("student_temperature", student_temperature), ("teacher_temperature", teacher_temperature)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        targets = F.softmax((teacher_logits.detach() - center.detach()) / teacher_temperature, dim=-1)  # (G, B, K)
        log_predictions = F.log_softmax(student_logits / student_temperature, dim=-1)  # (V, B, K)
        # cross[t, s] = mean_b -sum_k targets[t, b, k] log_predictions[s, b, k]: one (G, V) matrix product.
        cross = -torch.einsum("tbk,sbk->ts", targets, log_predictions) / student_logits.shape[1]
        pairs = ~torch.eye(num_global, student_logits.shape[0], dtype=torch.bool, device=cross.device)
        return cross[pairs].mean()


@torch.no_grad()
def dino_center_update(center: torch.Tensor, batch_center: torch.Tensor, momentum: float) -> torch.Tensor:
    """DINO's centre EMA (Caron et al. 2021, eq. 4): ``c <- m c + (1 - m) mean_batch(g_t)``, in place.

    Args:
        center: ``(K,)``, updated in place and returned.
        batch_center: ``(K,)``, the mean teacher output over the global batch (every crop of every process).
        momentum: ``m`` in [0, 1] (0.9 in the paper).
    """
    return center.mul_(momentum).add_(batch_center.to(center.dtype), alpha=1.0 - momentum)
