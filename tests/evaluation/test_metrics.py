"""The shipped `evaluate` metric module: loads offline from the package, matches numpy/scikit-learn."""

from __future__ import annotations

import os

import evaluate
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, top_k_accuracy_score

from hfssl.evaluation.metrics import METRICS_DIR, available_metrics, load_metric, top_k_accuracies


def test_loads_offline_from_inside_the_package() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert "top_k_accuracy" in available_metrics()
    assert (METRICS_DIR / "top_k_accuracy" / "top_k_accuracy.py").is_file()
    metric = load_metric("top_k_accuracy")
    assert isinstance(metric, evaluate.Metric)
    assert metric.name == "top_k_accuracy"


def test_top1_is_accuracy_of_the_argmax() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 7))
    labels = rng.integers(0, 7, size=200)
    result = load_metric("top_k_accuracy").compute(predictions=scores, references=labels, top_k=1)
    assert result["top_k_accuracy"] == pytest.approx(accuracy_score(labels, scores.argmax(axis=1)))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_top_k_matches_scikit_learn(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.normal(size=(300, 10))  # continuous scores: no ties
    labels = rng.integers(0, 10, size=300)
    result = load_metric("top_k_accuracy").compute(predictions=scores, references=labels, top_k=k)
    assert result["top_k_accuracy"] == pytest.approx(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(10)))


def test_top5_semantics_and_ties() -> None:
    # Row 0: the true class 0 is ranked 5th (four classes score higher) -> a top-5 hit, not a top-4 one.
    # Row 1: the true class 0 is ranked 6th -> a miss.
    # Row 2: all scores tie; ties go to the lower index (as argmax), so class 0 is first and class 6 is 7th.
    scores = np.array([
        [0.5, 0.9, 0.8, 0.7, 0.6, 0.1, 0.0],
        [0.4, 0.9, 0.8, 0.7, 0.6, 0.5, 0.0],
        [1.0] * 7,
        [1.0] * 7,
    ])
    labels = np.array([0, 0, 0, 6])
    metric = load_metric("top_k_accuracy")
    hits_at = {k: metric.compute(predictions=scores, references=labels, top_k=k, normalize=False)["top_k_accuracy"] for k in (1, 4, 5, 6, 7)}
    assert hits_at == {1: 1.0, 4: 1.0, 5: 2.0, 6: 3.0, 7: 4.0}
    assert top_k_accuracies(scores, labels) == {"top1": 0.25, "top5": 0.5}


def test_sample_weight() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    labels = np.array([0, 0, 1])
    weights = np.array([1.0, 2.0, 3.0])
    metric = load_metric("top_k_accuracy")
    weighted = metric.compute(predictions=scores, references=labels, sample_weight=weights)["top_k_accuracy"]
    assert weighted == pytest.approx(accuracy_score(labels, scores.argmax(axis=1), sample_weight=weights))


def test_unknown_metric_and_bad_labels() -> None:
    with pytest.raises(ValueError, match="shipped metrics: top_k_accuracy"):
        load_metric("bleu")
    with pytest.raises(ValueError, match="references must be class indices in \\[0, 2\\)"):
        load_metric("top_k_accuracy").compute(predictions=[[0.1, 0.9]], references=[2])
