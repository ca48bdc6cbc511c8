"""Class-balanced, seeded label-fraction subsets (SimCLRv2's 1 % / 10 % semi-supervised protocol).

Chen et al. 2020b ("Big Self-Supervised Models are Strong Semi-Supervised Learners", sec. 4) fine-tune
and probe on 1 % and 10 % of the ImageNet labels, class-balanced (about 13 and 128 images per
class). :func:`balanced_subset` draws such a subset of any labelled split: from every class the same
fraction of its rows (rounded, at least one), chosen by a seeded permutation, so the same seed gives
the same rows and a subset of 1 % is the same whatever else runs.
"""

from __future__ import annotations

import numpy as np


def check_fraction(fraction: float, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``0 < fraction <= 1``."""
    if not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"{where}: a label fraction must be in (0, 1] (0.01 for 1 %), got {fraction!r}")


def balanced_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced subset holding ``fraction`` of every class's rows.

    Args:
        labels: ``(N,)`` integer class indices (negative values, unlabelled rows, are never chosen).
        fraction: in ``(0, 1]``; each class keeps ``max(1, round(fraction * n_class))`` rows.
        seed: seeds the per-class choice.

    Returns:
        sorted ``(M,)`` int64 row indices (all labelled rows when ``fraction`` is 1).
    """
    check_fraction(fraction, "balanced_subset")
    labels = np.asarray(labels).reshape(-1)
    generator = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(labels[labels >= 0]):
        rows = np.flatnonzero(labels == value)
        count = len(rows) if fraction >= 1.0 else max(1, int(round(fraction * len(rows))))
        # One permutation per class, drawn in class order: the choice is a function of (labels, seed).
        chosen.append(rows[generator.permutation(len(rows))[:count]])
    if not chosen:
        raise ValueError("balanced_subset: no labelled rows (every label is negative)")
    return np.sort(np.concatenate(chosen)).astype(np.int64)
