"""Collapse monitor: embedding std (SimSiam sec. 4.1) and effective rank (Roy & Vetterli 2007)."""

from __future__ import annotations

import math

import pytest
import torch

from hfssl.training.monitor import collapse_metrics, effective_rank


def test_collapsed_embeddings() -> None:
    point = torch.randn(1, 64)
    metrics = collapse_metrics(point.repeat(256, 1) * torch.rand(256, 1).add(0.5))  # same direction, any norm
    assert metrics["embedding_std"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["embedding_std_ratio"] == pytest.approx(0.0, abs=1e-5)
    # float32 rounding leaves singular values ~1e-7 of the first one: rank 1 up to that.
    assert metrics["effective_rank"] == pytest.approx(1.0, abs=1e-4)


def test_isotropic_gaussian() -> None:
    generator = torch.Generator().manual_seed(0)
    dim = 32
    metrics = collapse_metrics(torch.randn(8192, dim, generator=generator))
    assert metrics["embedding_std"] == pytest.approx(1 / math.sqrt(dim), rel=0.02)
    assert metrics["embedding_std_ratio"] == pytest.approx(1.0, rel=0.02)
    assert dim * 0.98 < metrics["effective_rank"] <= dim


def test_effective_rank_closed_forms() -> None:
    # Singular values (2, 2, 0, ...): uniform over two directions -> exactly 2.
    rows = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).repeat(2, 1)
    assert effective_rank(rows) == pytest.approx(2.0, rel=1e-9)
    # Singular values (3, 1): p = (3/4, 1/4), rank = exp(H(p)).
    diagonal = torch.diag(torch.tensor([3.0, 1.0]))
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert effective_rank(diagonal) == pytest.approx(math.exp(entropy), rel=1e-9)
    assert effective_rank(torch.zeros(4, 3)) == 0.0


def test_dimensional_collapse_lowers_the_rank() -> None:
    generator = torch.Generator().manual_seed(1)
    low_rank = torch.randn(1024, 4, generator=generator) @ torch.randn(4, 32, generator=generator)
    assert collapse_metrics(low_rank)["effective_rank"] < 4.0 + 1e-6


def test_bad_shape() -> None:
    with pytest.raises(ValueError, match="N >= 2"):
        collapse_metrics(torch.randn(1, 8))
