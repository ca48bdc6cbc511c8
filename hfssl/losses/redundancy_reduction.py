"""Redundancy-reduction losses: VICReg and Barlow Twins (no negatives, no teacher).

Both losses act on statistics over the batch (per-dimension variance, covariance and
cross-correlation matrices), so in a distributed run they are computed over the *global* batch:
the two views' embeddings are gathered from every process with gradients
(:func:`hfssl.distributed.gather_with_grad`) and every rank evaluates the same global statistics.

Gradient convention (see :mod:`hfssl.distributed`). DDP averages parameter gradients over the W
ranks, and the backward of the gather sums over ranks the gradients sent to each rank's rows, so the
DDP average is the gradient of the rank-mean of the returned losses. A term that every rank computes
from the gathered global batch is therefore returned as it is (the rank-mean of W equal values is
the value). A per-sample term computed on the local rows only (VICReg's invariance) is returned as
``W / N`` times the sum over this rank's rows (N: global batch), whose rank-mean is the global mean;
with equal local batches this is the local mean. Two processes on half batches then give the loss
and gradients of one process on the whole batch, also for unequal batches (tested on two real
processes in ``tests/test_distributed.py``).

Precision. Variances, covariances and cross-correlations of wide projections (8192 in both papers)
lose too much in half precision, so the statistics are computed in float32 with autocast disabled
(:mod:`hfssl.losses.precision`, the rule of every loss).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from hfssl.distributed import gather_sizes, gather_with_grad, is_distributed
from hfssl.losses.precision import float32_loss

__all__ = ["VICRegLoss", "VICRegLossOutput", "BarlowTwinsLoss", "BarlowTwinsLossOutput", "off_diagonal"]


def off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square ``(D, D)`` matrix as a flat ``(D * (D - 1),)`` tensor."""
    size = matrix.shape[0]
    # Drop the last element, view as (D - 1, D + 1): the diagonal is then the first column.
    return matrix.flatten()[:-1].view(size - 1, size + 1)[:, 1:].flatten()


def _check_views(name: str, z1: torch.Tensor, z2: torch.Tensor) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] == 0 or z1.shape[1] == 0:
        raise ValueError(
            f"{name} expects two non-empty (batch, dim) tensors of one shape (the two views of each image, row "
            f"by row), got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )


def _gather_views(
    name: str, z1: torch.Tensor, z2: torch.Tensor, gather_distributed: bool
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Both views of the global batch (gathered with gradients), at least float32, and every rank's size.

    Returns ``Z1, Z2: (N, D)`` in rank order and ``sizes`` (``[B]`` without gathering).
    """
    batch_size, dim = z1.shape
    pairs = torch.cat([z1, z2], dim=1)  # (B, 2D), float32 or float64 (float32_loss): one collective for both views
    if gather_distributed and is_distributed():
        sizes = gather_sizes(batch_size, z1.device)
        pairs = gather_with_grad(pairs, sizes)  # (N, 2D)
    else:
        sizes = [batch_size]
    if sum(sizes) < 2:
        raise ValueError(
            f"{name} needs at least 2 samples in the (global) batch to estimate per-dimension statistics, got "
            f"{sum(sizes)}; use a larger batch"
        )
    return pairs[:, :dim], pairs[:, dim:], sizes


class VICRegLossOutput(NamedTuple):
    """The weighted total and the three unweighted terms of :class:`VICRegLoss` (scalars)."""

    loss: torch.Tensor
    invariance: torch.Tensor
    variance: torch.Tensor
    covariance: torch.Tensor


class VICRegLoss(nn.Module):
    """Variance-Invariance-Covariance Regularization (Bardes, Ponce, LeCun 2022, sec. 3.1-3.2, eq. 1-6).

    With ``Z, Z'`` the two views' embeddings (n samples, d dimensions):

    * invariance ``s(Z, Z') = (1/n) sum_i ||z_i - z'_i||^2 / d`` (eq. 5; the mean squared error);
    * variance ``v(Z) = (1/d) sum_j max(0, gamma - sqrt(Var(z^j) + eps))`` (eq. 1-2), unbiased
      variance over the batch;
    * covariance ``c(Z) = (1/d) sum_{i != j} C(Z)_ij^2`` with ``C(Z)`` the (n - 1)-normalised
      covariance matrix (eq. 3-4).

    ``loss = lambda s + mu (v(Z) + v(Z')) / 2 + nu (c(Z) + c(Z'))``. The variance of the two branches
    is averaged and the covariance summed as in the authors' implementation (facebookresearch/vicreg,
    ``main_vicreg.py``), for which the default coefficients 25 / 25 / 1 (sec. 4.1) were tuned; eq. 6
    writes a sum for both, which only rescales mu. The returned ``variance`` is that average, so a
    fully collapsed batch gives exactly ``gamma - sqrt(eps)``.

    Distributed runs (``gather_distributed=True``): variance and covariance are computed over the
    global batch gathered from every rank with gradients, as in the authors' implementation; the
    invariance term only needs each rank's own rows and is scaled by ``W * (local rows) / N`` (see the
    module docstring), so the rank-mean of every returned value is its global-batch value and DDP's
    averaged gradients are the global-batch gradients.

    Args:
        invariance_coefficient: lambda (paper: 25).
        variance_coefficient: mu (paper: 25).
        covariance_coefficient: nu (paper: 1).
        variance_target: gamma, the target standard deviation (paper: 1).
        epsilon: added to the variance before the square root, for stability (paper: 1e-4).
        gather_distributed: compute variance and covariance over every process's embeddings.

    Shapes: ``z1, z2: (B, D)``, row i of both being the two views of image i -> :class:`VICRegLossOutput`
    of scalars.
    """

    def __init__(
        self,
        invariance_coefficient: float = 25.0,
        variance_coefficient: float = 25.0,
        covariance_coefficient: float = 1.0,
        variance_target: float = 1.0,
        epsilon: float = 1e-4,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("invariance_coefficient", invariance_coefficient),
                            ("variance_coefficient", variance_coefficient),
                            ("covariance_coefficient", covariance_coefficient), ("variance_target", variance_target)):
            if not value >= 0:
                raise ValueError(f"VICRegLoss {name} must be >= 0, got {value!r}")
        if not epsilon > 0:
            raise ValueError(f"VICRegLoss epsilon must be > 0 (the square root's gradient is infinite at 0), "
                             f"got {epsilon!r}")
        self.invariance_coefficient = float(invariance_coefficient)
        self.variance_coefficient = float(variance_coefficient)
        self.covariance_coefficient = float(covariance_coefficient)
        self.variance_target = float(variance_target)
        self.epsilon = float(epsilon)
        self.gather_distributed = gather_distributed

    def extra_repr(self) -> str:
        return (f"invariance_coefficient={self.invariance_coefficient}, variance_coefficient="
                f"{self.variance_coefficient}, covariance_coefficient={self.covariance_coefficient}, "
                f"variance_target={self.variance_target}, epsilon={self.epsilon}, "
                f"gather_distributed={self.gather_distributed}")

    def _variance(self, centred: torch.Tensor) -> torch.Tensor:
        """v(Z) of eq. 1 for a centred ``(N, D)`` batch."""
        std = torch.sqrt(centred.pow(2).sum(dim=0) / (centred.shape[0] - 1) + self.epsilon)  # (D,)
        return F.relu(self.variance_target - std).mean()

    @staticmethod
    def _covariance(centred: torch.Tensor) -> torch.Tensor:
        """c(Z) of eq. 4 for a centred ``(N, D)`` batch."""
        covariance = centred.T @ centred / (centred.shape[0] - 1)  # (D, D)
        return off_diagonal(covariance).pow(2).sum() / centred.shape[1]

    @float32_loss
    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> VICRegLossOutput:
        _check_views("VICRegLoss", z1, z2)
        all_z1, all_z2, sizes = _gather_views("VICRegLoss", z1, z2, self.gather_distributed)
        total, dim = all_z1.shape
        # Invariance on this rank's rows only, scaled so that the rank-mean is the global MSE.
        invariance = (z1 - z2).pow(2).sum() * (len(sizes) / (total * dim))
        centred1 = all_z1 - all_z1.mean(dim=0)  # (N, D)
        centred2 = all_z2 - all_z2.mean(dim=0)
        variance = (self._variance(centred1) + self._variance(centred2)) / 2
        covariance = self._covariance(centred1) + self._covariance(centred2)
        loss = (self.invariance_coefficient * invariance + self.variance_coefficient * variance
                + self.covariance_coefficient * covariance)
        return VICRegLossOutput(loss, invariance, variance, covariance)


class BarlowTwinsLossOutput(NamedTuple):
    """The weighted total and the two unweighted terms of :class:`BarlowTwinsLoss` (scalars)."""

    loss: torch.Tensor
    on_diagonal: torch.Tensor
    off_diagonal: torch.Tensor


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins (Zbontar, Jing, Misra, LeCun, Deny 2021, sec. 2, eq. 1-2).

    Each embedding dimension is standardised over the batch (BatchNorm without affine parameters:
    mean 0 and biased variance 1, plus ``eps`` as in ``torch.nn.BatchNorm1d``), and the
    cross-correlation matrix ``C_ij = (1/n) sum_b zhat1_bi zhat2_bj`` (eq. 2) is pushed to the
    identity: ``loss = sum_i (1 - C_ii)^2 + lambda sum_i sum_{j != i} C_ij^2`` (eq. 1). The two terms
    are returned unweighted as ``on_diagonal`` and ``off_diagonal``.

    The normalisation lives here rather than in a BatchNorm layer of the model (the authors'
    ``self.bn``) so that it always uses the statistics of the global batch, in training and in
    evaluation, without SyncBatchNorm.

    Distributed runs (``gather_distributed=True``): both views are gathered from every rank with
    gradients, and every rank computes the normalisation and ``C`` over the global batch, then
    returns the same global loss (see the module docstring for why that gives DDP the global
    gradient). The authors all-reduce ``C`` instead, without gradient through the collective, which
    makes each rank's gradient 1/W of the global one (absorbed by LARS); gathering here keeps the
    one-process gradient at any W, and costs ``N x 2D`` values instead of ``D x D``.

    Args:
        off_diagonal_weight: lambda, the weight of the redundancy-reduction term (paper: 5e-3, sec. 4).
        eps: added to the per-dimension variance before normalising.
        gather_distributed: compute the statistics over every process's embeddings.

    Shapes: ``z1, z2: (B, D)``, row i of both being the two views of image i ->
    :class:`BarlowTwinsLossOutput` of scalars.
    """

    def __init__(self, off_diagonal_weight: float = 5e-3, eps: float = 1e-5, gather_distributed: bool = True) -> None:
        super().__init__()
        if not off_diagonal_weight >= 0:
            raise ValueError(f"BarlowTwinsLoss off_diagonal_weight must be >= 0, got {off_diagonal_weight!r}")
        if not eps > 0:
            raise ValueError(f"BarlowTwinsLoss eps must be > 0, got {eps!r}")
        self.off_diagonal_weight = float(off_diagonal_weight)
        self.eps = float(eps)
        self.gather_distributed = gather_distributed

    def extra_repr(self) -> str:
        return (f"off_diagonal_weight={self.off_diagonal_weight}, eps={self.eps}, "
                f"gather_distributed={self.gather_distributed}")

    def _standardise(self, z: torch.Tensor) -> torch.Tensor:
        """Per-dimension standardisation over the batch, ``(N, D) -> (N, D)``."""
        centred = z - z.mean(dim=0)
        return centred * torch.rsqrt(centred.pow(2).mean(dim=0) + self.eps)

    @float32_loss
    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> BarlowTwinsLossOutput:
        _check_views("BarlowTwinsLoss", z1, z2)
        all_z1, all_z2, _ = _gather_views("BarlowTwinsLoss", z1, z2, self.gather_distributed)
        correlation = self._standardise(all_z1).T @ self._standardise(all_z2) / all_z1.shape[0]  # (D, D)
        on_diagonal = (1 - torch.diagonal(correlation)).pow(2).sum()
        off_diagonal_sum = off_diagonal(correlation).pow(2).sum()
        loss = on_diagonal + self.off_diagonal_weight * off_diagonal_sum
        return BarlowTwinsLossOutput(loss, on_diagonal, off_diagonal_sum)
