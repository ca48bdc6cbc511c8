"""Linear probe: standardised features, C chosen on a stratified validation split, refit on train."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hfssl.evaluation.linear_probe import linear_probe, select_c

GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def blobs(n_per_class: int, num_classes: int, dim: int, spread: float, seed: int, noise_seed: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes around centres drawn from ``seed``; ``noise_seed`` draws the points."""
    centres = np.random.default_rng(seed).normal(scale=5.0, size=(num_classes, dim))
    labels = np.repeat(np.arange(num_classes), n_per_class)
    noise = np.random.default_rng(noise_seed).normal(scale=spread, size=(len(labels), dim))
    return centres[labels] + noise, labels


def test_separable_features_reach_100_percent() -> None:
    train_x, train_y = blobs(30, 4, 6, 0.3, seed=0)
    test_x, test_y = blobs(10, 4, 6, 0.3, seed=0, noise_seed=1)  # same classes, new points
    result = linear_probe(train_x, train_y, test_x, test_y, GRID, validation_fraction=0.25, num_classes=4)
    assert result["top1"] == 1.0 and result["top5"] == 1.0
    assert result["C"] in GRID
    assert set(result) == {"C", "top1", "top5"}  # the eval_results.json row


def test_c_is_the_best_on_the_stratified_validation_split() -> None:
    # Overlapping classes in 20 dimensions: the validation accuracy depends on C.
    x, y = blobs(40, 3, 20, 6.0, seed=2)
    best, accuracy = select_c(x, y, GRID, validation_fraction=0.3, random_state=0)
    assert set(accuracy) == set(GRID)
    fit_x, val_x, fit_y, val_y = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    assert np.bincount(val_y).tolist() == [12, 12, 12]  # stratified
    for c in GRID:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000, random_state=0)).fit(fit_x, fit_y)
        assert accuracy[c] == pytest.approx((model.predict(val_x) == val_y).mean())
    assert accuracy[best] == max(accuracy.values())
    assert best == min(c for c in GRID if accuracy[c] == accuracy[best])  # ties -> strongest regularisation
    result = linear_probe(x, y, x, y, GRID, validation_fraction=0.3)
    assert result["C"] == best


def test_refit_on_all_train_and_determinism() -> None:
    train_x, train_y = blobs(25, 3, 10, 4.0, seed=3)
    test_x, test_y = blobs(25, 3, 10, 4.0, seed=3, noise_seed=4)
    first = linear_probe(train_x, train_y, test_x, test_y, GRID)
    assert first == linear_probe(train_x, train_y, test_x, test_y, GRID)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=first["C"], max_iter=1000, random_state=0)).fit(train_x, train_y)
    assert first["top1"] == pytest.approx((model.predict(test_x) == test_y).mean())


def test_single_c_and_class_missing_from_train() -> None:
    train_x, train_y = blobs(10, 3, 4, 0.2, seed=5)
    keep = train_y != 1  # class 1 never seen in training: its probability column is 0
    result = linear_probe(train_x[keep], train_y[keep], train_x, train_y, c_grid=(1.0,), num_classes=3)
    assert result["C"] == 1.0
    assert result["top1"] == pytest.approx(2 / 3)


def test_bad_inputs() -> None:
    x, y = blobs(5, 2, 3, 0.1, seed=6)
    with pytest.raises(ValueError, match="at least two classes"):
        linear_probe(x, np.zeros_like(y), x, y)
    with pytest.raises(ValueError, match="validation_fraction must be in \\(0, 1\\)"):
        linear_probe(x, y, x, y, GRID, validation_fraction=0.0)
    with pytest.raises(ValueError, match="c_grid is empty"):
        linear_probe(x, y, x, y, ())


def test_non_convergence_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    x, y = blobs(20, 3, 10, 3.0, seed=7)
    with caplog.at_level("WARNING", logger="hfssl.evaluation.linear_probe"):
        linear_probe(x, y, x, y, c_grid=(10.0,), max_iter=2)
    assert "did not converge in 2 iterations at C=10" in caplog.text
