"""Representation-collapse monitor for (N, D) embedding batches.

Two numbers that a training loop logs every few hundred steps:

* ``embedding_std``: the standard deviation over the batch of each dimension of the
  L2-normalised embeddings, averaged over dimensions (SimSiam, Chen & He 2021, sec. 4.1). It is
  0 when every input maps to the same point (complete collapse) and about ``1/sqrt(D)`` when the
  embeddings are spread isotropically on the unit sphere. ``embedding_std_ratio`` is the same
  value times ``sqrt(D)``, so that 1 means healthy whatever the width.
* ``effective_rank``: ``exp`` of the entropy of the normalised singular values of the embedding
  matrix (Roy & Vetterli 2007; used as RankMe by Garrido et al. 2023). It counts how many
  directions the batch really uses: 1 for a collapse to one point, about ``min(N, D)`` for an
  isotropic batch, in between for dimensional collapse (Jing et al. 2022).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def effective_rank(embeddings: torch.Tensor, eps: float = 1e-12) -> float:
    """Effective rank (Roy & Vetterli 2007) of an ``(N, D)`` matrix.

    ``p_i = s_i / sum(s)`` over the singular values ``s``; the result is ``exp(-sum p_i log p_i)``.
    The matrix is not centred, so a batch collapsed to one non-zero point has rank 1.
    """
    singular_values = torch.linalg.svdvals(embeddings.double())
    total = singular_values.sum()
    if total <= 0:
        return 0.0
    probabilities = singular_values / total
    entropy = -(probabilities * (probabilities + eps).log()).sum()
    return float(entropy.exp())


def collapse_metrics(embeddings: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Collapse statistics of a batch of embeddings.

    Args:
        embeddings: ``(N, D)`` features (backbone embeddings or projections), ``N >= 2``.

    Returns:
        ``{"embedding_std", "embedding_std_ratio", "effective_rank"}`` (see the module docstring).
    """
    tensor = embeddings if isinstance(embeddings, torch.Tensor) else torch.from_numpy(np.asarray(embeddings))
    tensor = tensor.detach().float()
    if tensor.ndim != 2 or tensor.shape[0] < 2:
        raise ValueError(f"collapse_metrics needs a (N, D) batch with N >= 2, got shape {tuple(tensor.shape)}")
    normalised = F.normalize(tensor, dim=1)
    # Population std (correction=0) so that N identical rows give exactly 0.
    std = float(normalised.std(dim=0, correction=0).mean())
    return {
        "embedding_std": std,
        "embedding_std_ratio": std * math.sqrt(tensor.shape[1]),
        "effective_rank": effective_rank(tensor),
    }
