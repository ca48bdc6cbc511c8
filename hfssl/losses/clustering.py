"""Clustering losses: online codes from optimal transport and swapped prediction (SwAV)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hfssl.distributed import all_reduce_max, all_reduce_sum
from hfssl.losses.precision import float32_loss


@torch.no_grad()
@float32_loss
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's codes: the equipartitioned soft assignment of samples to prototypes (Caron et al. 2020,
    sec. 3.1, eq. 3 and Algorithm 1 "distributed_sinkhorn").

    ``Q = exp(scores / epsilon)^T`` (``(K, N)``), divided by its total, then ``iterations`` rounds of
    normalising every prototype's row to ``1 / K`` and every sample's column to ``1 / N``; the
    result times ``N`` gives codes whose rows sum to 1. ``N`` is the number of samples over every
    process and the row and total sums are all-reduced, so two processes give exactly the codes of
    one process on the concatenated rows. The scores are shifted by their global maximum before
    ``exp`` (the common factor cancels in the first normalisation) so that small ``epsilon`` cannot overflow.

    Args:
        scores: ``(B, K)`` prototype scores of this process's samples (cosines for SwAV).
        epsilon: entropy regularisation (0.05 in the paper).
        iterations: Sinkhorn-Knopp rounds (3 in the paper).

    Returns:
        ``(B, K)`` codes in float32 or higher, rows summing to 1 after the last column normalisation.
    """
    if scores.ndim != 2:
        raise ValueError(f"sinkhorn_knopp expects scores of shape (batch, prototypes), got {tuple(scores.shape)}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations!r}")
    scores = scores.detach()  # float32 or float64 (float32_loss): exp(1 / 0.05) and the sums need full precision
    shifted = scores / epsilon
    shifted = shifted - all_reduce_max(shifted.max())
    codes = torch.exp(shifted).t()  # (K, B)
    num_prototypes = codes.shape[0]
    num_samples = all_reduce_sum(codes.new_tensor(float(codes.shape[1])))
    codes = codes / all_reduce_sum(codes.sum())
    for _ in range(iterations):
        codes = codes / all_reduce_sum(codes.sum(dim=1, keepdim=True)) / num_prototypes  # rows: 1 / K
        codes = codes / codes.sum(dim=0, keepdim=True) / num_samples  # columns (local): 1 / N
    return (codes * num_samples).t()  # (B, K)


class SwAVLoss(nn.Module):
    """SwAV's swapped prediction (Caron et al. 2020, eq. 1-2): the code of one crop is predicted from
    every other crop.

    For each assigned crop ``a`` (the global crops) with codes ``q_a`` and every other crop ``v``,
    ``l(z_v, q_a) = -sum_k q_a[k] log softmax(scores_v / tau)[k]``, averaged over the batch, then
    over the ``V - 1`` crops ``v != a`` and over the assigned crops (the official code's
    ``loss /= len(crops_for_assign)``). The codes are constants (computed without gradients).

    Per-sample terms only: as for :class:`DINOLoss`, each rank returns the mean over its rows.

    Args:
        temperature: tau (0.1 in the paper).
    Shapes: ``scores: (V, B, K)`` (assigned crops first), ``codes: (A, B, K)`` with ``A <= V`` -> scalar.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = temperature

    @float32_loss
    def forward(self, scores: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if scores.ndim != 3 or codes.ndim != 3 or scores.shape[1:] != codes.shape[1:] or codes.shape[0] > scores.shape[0]:
            raise ValueError("SwAVLoss expects scores (views, batch, K) and codes (assigned views, batch, K) with "
                             f"no more assigned views than views, got {tuple(scores.shape)} and {tuple(codes.shape)}")
        if scores.shape[0] < 2:
            raise ValueError(f"SwAVLoss needs at least 2 views, got {scores.shape[0]}")
        log_predictions = F.log_softmax(scores / self.temperature, dim=-1)  # (V, B, K)
        cross = -torch.einsum("abk,vbk->av", codes.detach().to(log_predictions.dtype), log_predictions)
        cross = cross / scores.shape[1]  # (A, V): batch means
        pairs = ~torch.eye(codes.shape[0], scores.shape[0], dtype=torch.bool, device=cross.device)
        return cross[pairs].mean()
