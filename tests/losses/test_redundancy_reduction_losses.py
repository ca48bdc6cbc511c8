"""VICRegLoss and BarlowTwinsLoss against element-by-element loops over the papers' equations, and
against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from hfssl.losses import BarlowTwinsLoss, VICRegLoss
from hfssl.losses.redundancy_reduction import off_diagonal


def _column(z: torch.Tensor, j: int) -> list[torch.Tensor]:
    return [z[i, j] for i in range(z.shape[0])]


def naive_vicreg(z1: torch.Tensor, z2: torch.Tensor, lam: float, mu: float, nu: float, gamma: float,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bardes et al. 2022 eq. 1-6 one scalar at a time (variance averaged and covariance summed over
    the two branches, as in the authors' code)."""
    n, d = z1.shape
    invariance = sum((z1[i, j] - z2[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def variance(z: torch.Tensor) -> torch.Tensor:
        total = z.new_zeros(())
        for j in range(d):
            column = _column(z, j)
            mean = sum(column) / n
            std = torch.sqrt(sum((value - mean) ** 2 for value in column) / (n - 1) + eps)
            total = total + torch.clamp(gamma - std, min=0)
        return total / d

    def covariance(z: torch.Tensor) -> torch.Tensor:
        means = [sum(_column(z, j)) / n for j in range(d)]
        total = z.new_zeros(())
        for a in range(d):
            for b in range(d):
                if a != b:
                    entry = sum((z[i, a] - means[a]) * (z[i, b] - means[b]) for i in range(n)) / (n - 1)
                    total = total + entry ** 2
        return total / d

    var = (variance(z1) + variance(z2)) / 2
    cov = covariance(z1) + covariance(z2)
    return lam * invariance + mu * var + nu * cov, invariance, var, cov


def naive_barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lam: float, eps: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zbontar et al. 2021 eq. 1-2 one scalar at a time, after BatchNorm (biased variance + eps)."""
    n, d = z1.shape

    def standardise(z: torch.Tensor) -> list[list[torch.Tensor]]:
        columns = []
        for j in range(d):
            column = _column(z, j)
            mean = sum(column) / n
            variance = sum((value - mean) ** 2 for value in column) / n
            columns.append([(value - mean) / torch.sqrt(variance + eps) for value in column])
        return columns  # columns[j][i]

    a_hat, b_hat = standardise(z1), standardise(z2)
    on, off = z1.new_zeros(()), z1.new_zeros(())
    for i in range(d):
        for j in range(d):
            c = sum(a_hat[i][b] * b_hat[j][b] for b in range(n)) / n
            if i == j:
                on = on + (1 - c) ** 2
            else:
                off = off + c ** 2
    return on + lam * off, on, off


def _pair(n: int, d: int, seed: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z1 = scale * torch.randn(n, d, generator=generator, dtype=torch.float64)
    z2 = z1 + 0.5 * scale * torch.randn(n, d, generator=generator, dtype=torch.float64)  # correlated views
    return z1.requires_grad_(True), z2.requires_grad_(True)


def _assert_same_values_and_gradients(got: tuple, expected: tuple, inputs: tuple[torch.Tensor, ...]) -> None:
    for value, reference in zip(got, expected):
        torch.testing.assert_close(value, reference, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(got[0], inputs, retain_graph=True)
    expected_grads = torch.autograd.grad(expected[0], inputs)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


def test_off_diagonal_lists_every_entry_but_the_diagonal() -> None:
    matrix = torch.arange(16.0).view(4, 4)
    expected = torch.tensor([matrix[i, j] for i in range(4) for j in range(4) if i != j])
    torch.testing.assert_close(off_diagonal(matrix), expected, rtol=0, atol=0)
    assert off_diagonal(torch.ones(1, 1)).numel() == 0


# ---------------------------------------------------------------- VICReg


@pytest.mark.parametrize(("n", "d", "scale"), [(2, 3, 1.0), (6, 5, 0.3), (7, 4, 2.0)])
@pytest.mark.parametrize(("lam", "mu", "nu", "gamma", "eps"), [(25.0, 25.0, 1.0, 1.0, 1e-4), (1.0, 3.0, 0.5, 0.8, 1e-2)])
def test_vicreg_matches_naive_loop_values_and_gradients(n, d, scale, lam, mu, nu, gamma, eps) -> None:
    # scale 0.3: every std is below gamma (the hinge is active everywhere); 2.0: mostly above (inactive).
    z1, z2 = _pair(n, d, seed=n * d, scale=scale)
    criterion = VICRegLoss(lam, mu, nu, variance_target=gamma, epsilon=eps)
    _assert_same_values_and_gradients(tuple(criterion(z1, z2)), naive_vicreg(z1, z2, lam, mu, nu, gamma, eps),
                                      (z1, z2))


def test_vicreg_identical_views_have_zero_invariance() -> None:
    z = torch.randn(8, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    output = VICRegLoss()(z, z.clone())
    assert output.invariance.item() == 0.0
    assert output.variance.item() > 0 and output.covariance.item() > 0


@pytest.mark.parametrize(("gamma", "eps"), [(1.0, 1e-4), (2.5, 1e-2)])
def test_vicreg_collapsed_embeddings_give_variance_gamma_and_no_covariance(gamma, eps) -> None:
    # Every row the same point: every std is sqrt(eps), so each hinge is gamma - sqrt(eps) exactly.
    point = torch.randn(1, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z1, z2 = point.expand(10, 7), (point + 1).expand(10, 7)
    output = VICRegLoss(variance_target=gamma, epsilon=eps)(z1, z2)
    assert output.variance.item() == pytest.approx(gamma - math.sqrt(eps), rel=1e-12)
    # The batch mean of 10 equal values can differ from them in the last bit: covariance ~1e-60, not 0.
    assert output.covariance.item() == pytest.approx(0.0, abs=1e-28)
    assert output.invariance.item() == pytest.approx(1.0, rel=1e-12)
    assert output.loss.item() == pytest.approx(25 * 1.0 + 25 * (gamma - math.sqrt(eps)), rel=1e-12)


def test_vicreg_decorrelated_wide_embeddings_give_zero_variance_and_covariance() -> None:
    # Columns 1-3 of a 4x4 Hadamard matrix: zero mean, orthogonal, unbiased variance 4/3 > gamma = 1.
    hadamard = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float64)
    z = hadamard[:, 1:]
    output = VICRegLoss()(z, z)
    assert output.variance.item() == 0.0
    assert output.covariance.item() == pytest.approx(0.0, abs=1e-30)
    assert output.loss.item() == pytest.approx(0.0, abs=1e-28)


def test_vicreg_covariance_of_duplicated_dimension() -> None:
    # Two equal columns x: C = [[v, v], [v, v]], c(Z) = 2 v^2 / d with d = 2, for each of the two views.
    x = torch.randn(9, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z = torch.cat([x, x], dim=1)
    variance = x.var(correction=1).item()
    output = VICRegLoss()(z, z)
    assert output.covariance.item() == pytest.approx(2 * variance ** 2, rel=1e-12)


def test_vicreg_float32_close_to_float64_and_half_precision_is_computed_in_float32() -> None:
    z1, z2 = _pair(32, 16, seed=3)
    reference = VICRegLoss()(z1.detach(), z2.detach()).loss
    single = VICRegLoss()(z1.detach().float(), z2.detach().float()).loss
    torch.testing.assert_close(single.double(), reference, rtol=1e-5, atol=1e-5)
    half = VICRegLoss()(z1.detach().bfloat16(), z2.detach().bfloat16())
    assert half.loss.dtype == torch.float32
    torch.testing.assert_close(half.loss.double(), reference, rtol=0.03, atol=0.03)


def test_vicreg_gather_flag_is_a_no_op_in_one_process() -> None:
    z1, z2 = _pair(6, 4, seed=5)
    torch.testing.assert_close(VICRegLoss(gather_distributed=True)(z1, z2).loss,
                               VICRegLoss(gather_distributed=False)(z1, z2).loss, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs", [{"invariance_coefficient": -1.0}, {"variance_coefficient": float("nan")},
                                    {"covariance_coefficient": -0.1}, {"variance_target": -1.0},
                                    {"epsilon": 0.0}, {"epsilon": -1e-4}])
def test_vicreg_rejects_bad_settings(kwargs) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        VICRegLoss(**kwargs)


# ---------------------------------------------------------------- Barlow Twins


@pytest.mark.parametrize(("n", "d"), [(2, 3), (6, 5), (9, 4)])
@pytest.mark.parametrize(("lam", "eps"), [(5e-3, 1e-5), (0.7, 1e-2)])
def test_barlow_twins_matches_naive_loop_values_and_gradients(n, d, lam, eps) -> None:
    z1, z2 = _pair(n, d, seed=10 * n + d, scale=1.5)
    criterion = BarlowTwinsLoss(lam, eps=eps)
    _assert_same_values_and_gradients(tuple(criterion(z1, z2)), naive_barlow_twins(z1, z2, lam, eps), (z1, z2))


def test_barlow_twins_decorrelated_identical_views_are_the_identity() -> None:
    # Hadamard columns: mean 0, biased variance 1, orthogonal: C = I / (1 + eps) exactly.
    hadamard = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float64)
    z, eps = hadamard[:, 1:], 1e-5
    output = BarlowTwinsLoss(eps=eps)(z, z)
    assert output.on_diagonal.item() == pytest.approx(3 * (eps / (1 + eps)) ** 2, rel=1e-9)
    assert output.off_diagonal.item() == pytest.approx(0.0, abs=1e-30)
    # A positive scale and a shift of one view only change the eps terms: C_ii = 3 / sqrt((9 + eps)(1 + eps)).
    scaled = BarlowTwinsLoss(eps=eps)(z, 3 * z + 2)
    assert scaled.on_diagonal.item() == pytest.approx(3 * (1 - 3 / math.sqrt((9 + eps) * (1 + eps))) ** 2, rel=1e-9)
    assert scaled.off_diagonal.item() == pytest.approx(0.0, abs=1e-30)
    # Opposite views: C = -I / (1 + eps), every diagonal term (1 + 1 / (1 + eps))^2.
    opposite = BarlowTwinsLoss(eps=eps)(z, -z)
    assert opposite.on_diagonal.item() == pytest.approx(3 * (1 + 1 / (1 + eps)) ** 2, rel=1e-12)


def test_barlow_twins_redundant_dimensions_fill_the_off_diagonal() -> None:
    # d equal columns in both views: every entry of C is var / (var + eps).
    x = torch.randn(12, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    d, eps, lam = 5, 1e-5, 5e-3
    z = x.expand(12, d)
    variance = x.var(correction=0).item()
    entry = variance / (variance + eps)
    output = BarlowTwinsLoss(lam, eps=eps)(z, z)
    assert output.off_diagonal.item() == pytest.approx(d * (d - 1) * entry ** 2, rel=1e-12)
    assert output.loss.item() == pytest.approx(d * (1 - entry) ** 2 + lam * d * (d - 1) * entry ** 2, rel=1e-12)


def test_barlow_twins_is_invariant_to_per_dimension_affine_maps() -> None:
    z1, z2 = _pair(16, 6, seed=7)
    generator = torch.Generator().manual_seed(8)
    scales = torch.rand(6, generator=generator, dtype=torch.float64) + 0.5
    shifts = torch.randn(6, generator=generator, dtype=torch.float64)
    criterion = BarlowTwinsLoss(eps=1e-12)
    torch.testing.assert_close(criterion(z1 * scales + shifts, z2).loss, criterion(z1, z2).loss, rtol=1e-8, atol=0)
    # Pairing matters: shifting the second views by one image breaks the correlation.
    assert criterion(z1, z2.roll(1, dims=0)).loss.item() > 1.5 * criterion(z1, z2).loss.item()


def test_barlow_twins_half_precision_is_computed_in_float32() -> None:
    z1, z2 = _pair(32, 16, seed=4)
    reference = BarlowTwinsLoss()(z1.detach(), z2.detach()).loss
    half = BarlowTwinsLoss()(z1.detach().bfloat16(), z2.detach().bfloat16())
    assert half.loss.dtype == torch.float32
    torch.testing.assert_close(half.loss.double(), reference, rtol=0.03, atol=0.03)


@pytest.mark.parametrize("kwargs", [{"off_diagonal_weight": -1e-3}, {"off_diagonal_weight": float("nan")},
                                    {"eps": 0.0}])
def test_barlow_twins_rejects_bad_settings(kwargs) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        BarlowTwinsLoss(**kwargs)


# ---------------------------------------------------------------- both


@pytest.mark.parametrize("criterion", [VICRegLoss(), BarlowTwinsLoss()], ids=["vicreg", "barlow_twins"])
@pytest.mark.parametrize("shapes", [((4, 8), (4, 9)), ((4, 8), (3, 8)), ((8,), (8,)), ((0, 8), (0, 8)),
                                    ((4, 0), (4, 0))])
def test_rejects_bad_shapes(criterion, shapes) -> None:
    first, second = shapes
    with pytest.raises(ValueError, match="expects two non-empty"):
        criterion(torch.randn(*first), torch.randn(*second))


@pytest.mark.parametrize("criterion", [VICRegLoss(), BarlowTwinsLoss()], ids=["vicreg", "barlow_twins"])
def test_rejects_a_batch_of_one(criterion) -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        criterion(torch.randn(1, 4), torch.randn(1, 4))
