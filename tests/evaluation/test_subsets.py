"""Label-fraction subsets: class-balanced and seeded."""

from __future__ import annotations

import numpy as np
import pytest

from hfssl.evaluation.protocols.linear import LinearSettings
from hfssl.evaluation.subsets import balanced_subset
from hfssl.settings import RecipeError, build_section


def _labels() -> np.ndarray:
    sizes = [600, 600, 300, 1000, 50]
    return np.random.default_rng(0).permutation(np.repeat(np.arange(5), sizes))


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
def test_every_class_keeps_its_share(fraction):
    labels = _labels()
    rows = balanced_subset(labels, fraction, seed=0)
    assert len(set(rows.tolist())) == len(rows) and np.all(np.diff(rows) > 0)
    for value in range(5):
        total = int((labels == value).sum())
        assert int((labels[rows] == value).sum()) == max(1, round(fraction * total))


def test_seeded_and_fraction_one_is_everything():
    labels = _labels()
    assert np.array_equal(balanced_subset(labels, 0.1, seed=3), balanced_subset(labels, 0.1, seed=3))
    assert not np.array_equal(balanced_subset(labels, 0.1, seed=3), balanced_subset(labels, 0.1, seed=4))
    assert np.array_equal(balanced_subset(labels, 1.0), np.arange(len(labels)))


def test_unlabelled_rows_are_never_chosen():
    labels = np.array([-1, 0, 0, 1, 1, -1, 1, 0])
    rows = balanced_subset(labels, 0.5, seed=0)
    assert (labels[rows] >= 0).all() and len(rows) == 2 + 2


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.1])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="label fraction must be in"):
        balanced_subset(_labels(), fraction)
    with pytest.raises(RecipeError, match="eval.linear.label_fractions"):
        build_section(LinearSettings, "eval.linear", {"label_fractions": [fraction]})


def test_linear_protocol_probes_each_fraction_on_a_balanced_subset():
    from hfssl.evaluation.protocols.linear import linear_score

    generator = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 250)
    features = np.eye(4)[labels] * 2 + generator.normal(size=(1000, 4))
    settings = LinearSettings(c_grid=(0.1, 1.0), label_fractions=(0.04, 1.0))
    rows = linear_score(features, labels, features[:200], labels[:200], settings, 4)
    assert rows[0]["label_fraction"] == 0.04 and rows[0]["num_labelled"] == 40
    assert "label_fraction" not in rows[1] and rows[1]["solver"] == "torch"
    assert all(row["top1"] > 0.6 for row in rows)
    assert rows[0]["predictions"].shape == (200,)
