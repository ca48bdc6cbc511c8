"""The torch linear probe against scikit-learn's on the same problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from hfssl.evaluation.linear_probe import fit_softmax_regression, linear_probe, select_c, standardisation
from hfssl.evaluation.protocols.linear import LinearSettings
from hfssl.settings import RecipeError, build_section


def _problem(seed: int = 0):
    generator = np.random.default_rng(seed)
    centres = generator.normal(size=(6, 20))
    labels = generator.integers(0, 6, size=1500)
    features = centres[labels] * 1.5 + generator.normal(size=(1500, 20)) * 2 + 5  # an offset the scaler removes
    return features[:1200], labels[:1200], features[1200:], labels[1200:]


@pytest.mark.parametrize("c", [0.01, 1.0])
def test_torch_fit_reaches_scikit_learns_minimum(c):
    train_x, train_y, _, _ = _problem()
    scaled = StandardScaler().fit_transform(train_x)
    reference = LogisticRegression(C=c, max_iter=10000, tol=1e-10).fit(scaled, train_y)
    weight, bias, _ = fit_softmax_regression(torch.tensor(scaled, dtype=torch.float64), torch.tensor(train_y), 6, c,
                                             tolerance=1e-9)
    # Same objective: the same weights (scikit-learn's multinomial coefficients, up to a shift of the
    # bias shared by every class, which the softmax ignores).
    np.testing.assert_allclose(weight.T.numpy(), reference.coef_, atol=2e-3)
    shift = (bias.numpy() - reference.intercept_).mean()
    np.testing.assert_allclose(bias.numpy() - shift, reference.intercept_, atol=2e-3)


def test_standardisation_is_scikit_learns():
    train_x, _, _, _ = _problem()
    train_x[:, 3] = 7.0  # a constant column keeps scale 1
    mean, scale = standardisation(torch.tensor(train_x))
    scaler = StandardScaler().fit(train_x)
    np.testing.assert_allclose(mean.numpy(), scaler.mean_, rtol=1e-10)
    np.testing.assert_allclose(scale.numpy(), scaler.scale_, rtol=1e-10)


def test_probe_matches_scikit_learn_in_choice_and_accuracy():
    train_x, train_y, test_x, test_y = _problem()
    grid = (0.001, 0.01, 0.1, 1.0)
    torch_row = linear_probe(train_x, train_y, test_x, test_y, grid, solver="torch")
    sklearn_row = linear_probe(train_x, train_y, test_x, test_y, grid, solver="sklearn")
    assert torch_row["C"] == sklearn_row["C"]
    assert abs(torch_row["top1"] - sklearn_row["top1"]) <= 1 / len(test_y) + 1e-9
    assert abs(torch_row["top5"] - sklearn_row["top5"]) <= 2 / len(test_y) + 1e-9
    torch_best, torch_accuracy = select_c(train_x, train_y, grid, solver="torch")
    sklearn_best, sklearn_accuracy = select_c(train_x, train_y, grid, solver="sklearn")
    assert torch_best == sklearn_best
    for c in grid:
        assert abs(torch_accuracy[c] - sklearn_accuracy[c]) <= 2 / 120 + 1e-9


def test_the_public_signature_still_works_positionally_and_gives_predictions():
    train_x, train_y, test_x, test_y = _problem(1)
    row = linear_probe(train_x, train_y, test_x, test_y, (0.1,), 0.1, 6, 1000, 0)
    assert set(row) == {"C", "top1", "top5"} and row["C"] == 0.1
    predictions = linear_probe(train_x, train_y, test_x, test_y, (0.1,), return_predictions=True)["predictions"]
    assert predictions.shape == test_y.shape and (predictions == test_y).mean() == pytest.approx(row["top1"])


def test_unknown_solver_is_refused():
    train_x, train_y, test_x, test_y = _problem()
    with pytest.raises(ValueError, match="solver must be one of torch, sklearn"):
        linear_probe(train_x, train_y, test_x, test_y, solver="liblinear")
    with pytest.raises(RecipeError, match="eval.linear.solver"):
        build_section(LinearSettings, "eval.linear", {"solver": "liblinear"})
