"""Wang & Isola 2020's alignment and uniformity of L2-normalised embeddings, shared by the protocols that report them.

``alignment-uniformity`` (sentence embeddings, positive pairs: consecutive held-out sentences;
:mod:`hfssl.evaluation.sentence_embeddings`) and ``invariance`` (image features, positive pairs: two augmented
views of one test image; :mod:`hfssl.evaluation.invariance`) compute them with these two functions, Wang & Isola's
eqs. 4 and 6 as their reference code does:

* ``align = E ||f(x) - f(y)||^alpha`` over positive pairs (alpha 2), in ``[0, 2^alpha]``;
* ``uniform = log E exp(-t ||f(x) - f(y)||^2)`` over all pairs of distinct rows (t 2), in ``[-4t, 0]``.

Lower is better for both. The rows are L2-normalised here, in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Wang & Isola's alignment: ``mean_i ||x_i - y_i||^alpha`` of the L2-normalised rows ``(N, D)``."""
    x, y = F.normalize(x.double(), dim=1), F.normalize(y.double(), dim=1)
    return (x - y).norm(dim=1).pow(alpha).mean()


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola's uniformity: ``log mean_{i<j} exp(-t ||x_i - x_j||^2)`` of the L2-normalised rows ``(N, D)``
    (``N (N - 1) / 2`` distances in memory: keep ``N`` to a few thousand)."""
    x = F.normalize(x.double(), dim=1)
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()
