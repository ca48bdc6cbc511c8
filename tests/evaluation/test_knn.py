"""Weighted kNN (Wu et al. 2018 / DINO) against a naive loop and closed-form cases."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from hfssl.evaluation.knn import knn_classify, knn_evaluate


def naive_knn_scores(train: np.ndarray, labels: np.ndarray, test: np.ndarray, k: int, temperature: float, num_classes: int) -> np.ndarray:
    """One test row at a time: cosine similarities, sort, top k, exp(sim / T) votes."""
    scores = np.zeros((len(test), num_classes))
    for i, query in enumerate(test):
        similarities = []
        for j, key in enumerate(train):
            cosine = float(query @ key) / (np.linalg.norm(query) * np.linalg.norm(key))
            similarities.append((cosine, j))
        similarities.sort(key=lambda pair: -pair[0])
        for cosine, j in similarities[:k]:
            scores[i, labels[j]] += math.exp(cosine / temperature)
    return scores


@pytest.fixture
def features() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(60, 8)).astype(np.float32)
    labels = rng.integers(0, 4, size=60)
    test = rng.normal(size=(13, 8)).astype(np.float32)
    test_labels = rng.integers(0, 4, size=13)
    return train, labels, test, test_labels


@pytest.mark.parametrize("k", [1, 7, 60])
def test_scores_match_naive_loop(features, k: int) -> None:
    train, labels, test, _ = features
    expected = naive_knn_scores(train, labels, test, k, 0.07, 4)
    # chunk_size 5 splits the 13 test rows into 3 blocks: chunking must not change anything.
    scores = knn_classify(train, labels, test, k=k, temperature=0.07, num_classes=4, chunk_size=5)
    assert scores.shape == (13, 4)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-4)


def test_closed_form_votes() -> None:
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    test = torch.tensor([[2.0, 0.0]])  # norm does not matter: cosine similarity
    # Similarities 1, 0, 1/sqrt(2), -1: the two nearest are rows 0 (class 0) and 2 (class 1).
    scores = knn_classify(train, labels, test, k=2, temperature=0.5, num_classes=3)
    expected = torch.tensor([[math.exp(1 / 0.5), math.exp((1 / math.sqrt(2)) / 0.5), 0.0]])
    torch.testing.assert_close(scores, expected)
    # k=4: every row votes; class 1 gets two votes.
    scores = knn_classify(train, labels, test, k=4, temperature=0.5, num_classes=3)
    expected = torch.tensor([[math.exp(2.0), math.exp(0.0) + math.exp(math.sqrt(2)), math.exp(-2.0)]])
    torch.testing.assert_close(scores, expected)


def test_evaluate_matches_classify_for_each_k(features) -> None:
    train, labels, test, test_labels = features
    rows = knn_evaluate(train, labels, test, test_labels, ks=(3, 20), temperature=0.1, num_classes=4)
    assert [row["k"] for row in rows] == [3, 20]
    for row in rows:
        scores = naive_knn_scores(train, labels, test, row["k"], 0.1, 4)
        order = np.argsort(-scores, axis=1, kind="stable")
        assert row["top1"] == pytest.approx(float((order[:, 0] == test_labels).mean()))
        # 4 classes: the true class is always among the top 5.
        assert row["top5"] == 1.0
        assert row["temperature"] == 0.1


def test_k_larger_than_train_set_is_clipped(features, caplog) -> None:
    train, labels, test, test_labels = features
    with caplog.at_level(logging.INFO, logger="hfssl.evaluation.knn"):
        rows = knn_evaluate(train, labels, test, test_labels, ks=(20, 200), num_classes=4)
    assert [row["k"] for row in rows] == [20, 60]
    assert "k=200 is larger than the 60 training rows" in caplog.text
    full = naive_knn_scores(train, labels, test, 60, 0.07, 4)
    assert rows[1]["top1"] == pytest.approx(float((full.argmax(axis=1) == test_labels).mean()))


def test_perfect_clusters_give_perfect_accuracy() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(6, 16) * 10
    train_y = np.repeat(np.arange(6), 20)
    test_y = np.repeat(np.arange(6), 5)
    train = centres[train_y] + rng.normal(scale=0.1, size=(120, 16))
    test = centres[test_y] + rng.normal(scale=0.1, size=(30, 16))
    (row,) = knn_evaluate(train, train_y, test, test_y, ks=(20,), num_classes=6)
    assert row["top1"] == 1.0 and row["top5"] == 1.0


def test_bad_inputs_name_the_problem(features) -> None:
    train, labels, test, test_labels = features
    with pytest.raises(ValueError, match="train_labels must be class indices in \\[0, 3\\)"):
        knn_classify(train, labels, test, k=5, num_classes=3)
    with pytest.raises(ValueError, match="k must be in \\[1, 60\\]"):
        knn_classify(train, labels, test, k=61)
    with pytest.raises(ValueError, match="same D"):
        knn_classify(train, labels, test[:, :4], k=5)
    unlabelled = test_labels.copy()
    unlabelled[0] = -1
    with pytest.raises(ValueError, match="unlabelled rows"):
        knn_evaluate(train, labels, test, unlabelled, ks=(5,), num_classes=4)
