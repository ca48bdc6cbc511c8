"""Calibration of a classifier's probabilities: expected calibration error, reliability bins, NLL and Brier score.

The seeds claim that self-supervised pre-training "induces better classifier calibration"; these are the measures
papers use for it (Guo et al. 2017, "On Calibration of Modern Neural Networks"):

* the **reliability bins**: the test examples grouped by their top-1 confidence ``max_k p_k`` into ``bins`` equal
  intervals of ``[0, 1]`` (the first closed, ``[0, 1/M]``, the others ``(lo, hi]``); per bin the count, the mean
  confidence and the accuracy of the top-1 predictions;
* **ECE** = ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` (the gap between confidence and accuracy, weighted by the
  share of examples in each bin; 0 for a perfectly calibrated classifier), and **MCE** = ``max_b`` of the gap over
  non-empty bins;
* **NLL** = ``-mean log p_y`` (probabilities clipped at 1e-12) and the **Brier score** = ``mean sum_k (p_k - 1[k =
  y])^2`` (the multi-class form, in ``[0, 2]``): proper scoring rules, which reward calibration and accuracy
  together.

The top-1 prediction is ``argmax`` (the first class among ties), as the accuracy metrics take it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Bins of the reliability diagram and of the ECE (Guo et al. use 15).
DEFAULT_BINS = 15


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin ``count``, mean ``confidence`` and ``accuracy`` (``nan`` in empty bins) over ``edges`` (M + 1)."""

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def softmax(logits: np.ndarray) -> np.ndarray:
    """A classifier's class probabilities ``(N, K)`` float64 from its logits ``(N, K)`` (the maximum subtracted first)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"softmax needs logits (N, K), got shape {logits.shape}")
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _check(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if probabilities.ndim != 2 or len(probabilities) != len(labels) or len(labels) == 0:
        raise ValueError(f"calibration needs probabilities (N, K) and labels (N,) with N > 0, got "
                         f"{probabilities.shape} and {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= probabilities.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {probabilities.shape[1]}), got values from "
                         f"{labels.min()} to {labels.max()}")
    if not np.isfinite(probabilities).all() or probabilities.min() < -1e-6 or \
            np.abs(probabilities.sum(axis=1) - 1.0).max() > 1e-3:
        raise ValueError("calibration needs probabilities: finite, non-negative, each row summing to 1 (apply a "
                         "softmax to logits first)")
    return probabilities, labels


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """The reliability bins of the module docstring."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    probabilities, labels = _check(probabilities, labels)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds (edges[b], edges[b + 1]]; a confidence of exactly 0 (impossible for a distribution) goes to bin 0
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
    return ReliabilityBins(edges, count, mean_confidence, accuracy)


def calibration_scores(probabilities: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> dict[str, float]:
    """``{"ece", "mce", "nll", "brier", "top1", "mean_confidence"}`` of test probabilities (see the module docstring)."""
    probabilities, labels = _check(probabilities, labels)
    table = reliability_bins(probabilities, labels, bins)
    filled = table.count > 0
    gaps = np.abs(table.accuracy[filled] - table.confidence[filled])
    weights = table.count[filled] / len(labels)
    onehot = np.zeros_like(probabilities)
    onehot[np.arange(len(labels)), labels] = 1.0
    true_class = probabilities[np.arange(len(labels)), labels]
    return {
        "ece": float((weights * gaps).sum()),
        "mce": float(gaps.max()),
        "nll": float(-np.log(np.clip(true_class, 1e-12, None)).mean()),
        "brier": float(((probabilities - onehot) ** 2).sum(axis=1).mean()),
        "top1": float((probabilities.argmax(axis=1) == labels).mean()),
        "mean_confidence": float(probabilities.max(axis=1).mean()),
    }
