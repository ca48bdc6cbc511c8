"""Few-shot episodes and their confidence intervals, against the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from hfssl.evaluation.few_shot import (
    Z_95,
    few_shot_evaluate,
    logistic_accuracies,
    mean_confidence_interval,
    nearest_centroid_accuracies,
    sample_episodes,
)
from hfssl.evaluation.protocols.few_shot import FewShotSettings
from hfssl.settings import RecipeError


def _labels() -> np.ndarray:
    # 8 classes of 30 rows, a class of 5 rows (too few for 5 shots + 15 queries), shuffled.
    labels = np.concatenate([np.repeat(np.arange(8), 30), np.full(5, 8)])
    return np.random.default_rng(3).permutation(labels)


def test_episodes_draw_distinct_classes_and_disjoint_rows_of_those_classes():
    labels = _labels()
    episodes = sample_episodes(labels, ways=5, shots=5, queries=15, episodes=200, seed=0)
    assert episodes.classes.shape == (200, 5)
    assert episodes.support.shape == (200, 5, 5) and episodes.query.shape == (200, 5, 15)
    for classes, support, query in zip(episodes.classes, episodes.support, episodes.query):
        assert len(set(classes.tolist())) == 5
        assert 8 not in classes  # the class with 5 rows cannot give 20
        for slot, value in enumerate(classes):
            assert (labels[support[slot]] == value).all() and (labels[query[slot]] == value).all()
        rows = np.concatenate([support.reshape(-1), query.reshape(-1)])
        assert len(set(rows.tolist())) == rows.size  # no row twice in an episode
    # Every eligible class is drawn about equally often (200 * 5 / 8 = 125 each).
    counts = np.bincount(episodes.classes.reshape(-1), minlength=9)
    assert counts[8] == 0 and counts[:8].min() > 80


def test_episodes_are_seeded():
    labels = _labels()
    first = sample_episodes(labels, 5, 1, 15, 20, seed=7)
    again = sample_episodes(labels, 5, 1, 15, 20, seed=7)
    other = sample_episodes(labels, 5, 1, 15, 20, seed=8)
    assert np.array_equal(first.support, again.support) and np.array_equal(first.query, again.query)
    assert not np.array_equal(first.support, other.support)


def test_too_few_classes_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="lower ways, shots or queries"):
        sample_episodes(_labels(), ways=9, shots=5, queries=15, episodes=1)


def test_confidence_interval_is_1_96_standard_errors():
    values = np.random.default_rng(0).uniform(0.3, 0.9, size=600)
    mean, half_width = mean_confidence_interval(values)
    assert mean == pytest.approx(values.sum() / 600)
    sample_std = math.sqrt(((values - values.mean()) ** 2).sum() / 599)
    assert half_width == pytest.approx(1.96 * sample_std / math.sqrt(600), rel=1e-4)
    assert Z_95 == pytest.approx(1.959964, abs=1e-6)
    # The interval covers the true mean about 95 % of the time (a coverage check over repeats).
    generator = np.random.default_rng(1)
    covered = 0
    for _ in range(400):
        sample = generator.binomial(1, 0.6, size=600).astype(float)
        mean, half_width = mean_confidence_interval(sample)
        covered += abs(mean - 0.6) <= half_width
    assert 0.91 <= covered / 400 <= 0.98


def test_nearest_centroid_by_hand():
    # One 2-way 2-shot episode in 2-D: centroids (1, 0) and (0, 1).
    support = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    query = torch.tensor([[[[0.9, 0.1], [0.2, 0.8]], [[0.1, 0.9], [0.3, 0.7]]]])  # 3 of 4 right
    assert nearest_centroid_accuracies(support, query).tolist() == [0.75]


def test_batched_logistic_regression_matches_scikit_learn_per_episode():
    generator = np.random.default_rng(0)
    centres = generator.normal(size=(10, 16))
    labels = np.repeat(np.arange(10), 40)
    features = centres[labels] + 1.2 * generator.normal(size=(400, 16))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    episodes = sample_episodes(labels, 5, 5, 15, 12, seed=0)
    support = torch.as_tensor(features[episodes.support], dtype=torch.float32)
    query = torch.as_tensor(features[episodes.query], dtype=torch.float32)
    ours = logistic_accuracies(support, query, c=1.0)
    for index in range(12):
        x = features[episodes.support[index]].reshape(25, 16)
        y = np.repeat(np.arange(5), 5)
        reference = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(x, y)
        predicted = reference.predict(features[episodes.query[index]].reshape(75, 16))
        assert ours[index] == pytest.approx((predicted == np.repeat(np.arange(5), 15)).mean(), abs=1 / 75 + 1e-9)


def test_rows_carry_settings_and_beat_chance_on_separable_features():
    generator = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 50)
    features = np.eye(6)[labels] * 3 + generator.normal(size=(300, 6))
    rows = few_shot_evaluate(features, labels, ways=5, shots=(1, 5), queries=10, episodes=100)
    assert [(row["classifier"], row["shots"]) for row in rows] == [
        ("nearest-centroid", 1), ("logistic", 1), ("nearest-centroid", 5), ("logistic", 5)]
    for row in rows:
        assert row["ways"] == 5 and row["episodes"] == 100 and row["queries"] == 10
        assert 0.6 < row["accuracy"] <= 1.0 and 0 < row["ci95"] < 0.05
    assert rows[2]["accuracy"] > rows[0]["accuracy"]  # 5 shots beat 1


@pytest.mark.parametrize("values, message", [({"ways": 1}, "ways"), ({"shots": [0]}, "shots"),
                                             ({"classifiers": ["svm"]}, "classifiers"), ({"c": 0}, "c")])
def test_bad_settings_name_the_setting(values, message):
    from hfssl.settings import build_section

    with pytest.raises(RecipeError, match=f"eval.few-shot.{message}"):
        build_section(FewShotSettings, "eval.few-shot", values)
