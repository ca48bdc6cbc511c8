"""The MLP probe (``mlp-probe``): what a linear probe cannot read (two rings) it reads; separable features score
100 %, noise scores chance; seeded, label fractions, settings checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfssl.evaluation.linear_probe import linear_probe
from hfssl.evaluation.mlp_probe import mlp_probe
from hfssl.evaluation.protocols import get_protocol
from hfssl.evaluation.protocols.mlp_probe import MLPProbeSettings, mlp_score
from hfssl.settings import RecipeError, build_section

SMALL = {"hidden_dim": 64, "depth": 2, "epochs": 40, "batch_size": 128, "patience": 10}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Hundreds of tiny steps: with two torch threads on a loaded machine they spend their time waiting (the
    conftest restores the thread count after the test)."""
    torch.set_num_threads(1)


def _rings(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric rings (radius 1 and 2) in the first two of 4 dimensions: no line separates them."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 2, count)
    angle = generator.uniform(0, 2 * np.pi, count)
    radius = 1.0 + labels + generator.normal(0, 0.1, count)
    features = np.column_stack([radius * np.cos(angle), radius * np.sin(angle), generator.normal(size=(count, 2))])
    return features.astype(np.float32), labels


def test_the_mlp_reads_two_rings_that_the_linear_probe_cannot():
    train_x, train_y = _rings(800, 0)
    test_x, test_y = _rings(400, 1)
    state = torch.get_rng_state()
    row = mlp_probe(train_x, train_y, test_x, test_y, 2, **SMALL, device="cpu")
    assert torch.equal(torch.get_rng_state(), state)  # its own seed: the caller's random state is left alone
    assert row["top1"] > 0.95 and 1 <= row["best_epoch"] <= SMALL["epochs"]
    linear = linear_probe(train_x, train_y, test_x, test_y, (1.0,), device="cpu")
    assert linear["top1"] < 0.7  # a line through two rings: near chance (0.5)
    assert mlp_probe(train_x, train_y, test_x, test_y, 2, **SMALL, device="cpu") == row  # seeded


def test_separable_features_score_100_and_noise_scores_chance():
    generator = np.random.default_rng(0)
    train_y, test_y = generator.integers(0, 10, 600), generator.integers(0, 10, 400)
    centres = generator.normal(0, 10, (10, 16))
    separable = [centres[labels] + generator.normal(size=(len(labels), 16)) for labels in (train_y, test_y)]
    settings = MLPProbeSettings(**SMALL, label_fractions=(0.5, 1.0))
    rows = mlp_score(separable[0], train_y, separable[1], test_y, settings, 10)
    assert [row.get("label_fraction") for row in rows] == [0.5, None]
    assert rows[0]["num_labelled"] == sum(max(1, round(0.5 * (train_y == c).sum())) for c in range(10))
    assert all(row["top1"] == 1.0 and row["hidden_dim"] == 64 and row["depth"] == 2 for row in rows)
    assert {key: rows[1][key] for key in ("dropout", "max_epochs", "lr", "weight_decay")} == {
        "dropout": 0.2, "max_epochs": 40, "lr": 1e-3, "weight_decay": 1e-4}  # the row says how it was trained
    noise = [generator.normal(size=(len(labels), 16)) for labels in (train_y, test_y)]
    (row,) = mlp_score(noise[0], train_y, noise[1], test_y, MLPProbeSettings(**SMALL), 10)
    assert row["top1"] < 0.2  # chance is 0.1; 400 test rows


@pytest.mark.parametrize(("values", "message"), [
    ({"depth": -1}, "depth >= 0"), ({"dropout": 1.0}, "dropout must be in"), ({"patience": 0}, "patience must be >= 1"),
    ({"label_fractions": [0.0]}, "eval.mlp-probe.label_fractions"), ({"width": 3}, "unknown key eval.mlp-probe.width"),
])
def test_bad_settings_name_the_setting(values, message):
    with pytest.raises(RecipeError, match=message):
        build_section(get_protocol("mlp-probe").settings, "eval.mlp-probe", values)
