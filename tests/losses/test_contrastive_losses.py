"""NTXentLoss against a per-anchor loop over SimCLR eq. 1 and against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from hfssl.losses import NTXentLoss


def naive_ntxent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR eq. 1 written out: the 2N views in the paper's order (2k-1, 2k are the views of image k),
    one anchor at a time, denominator over every k != i, mean over the 2N anchors."""
    views = []
    for index in range(z1.shape[0]):
        views += [z1[index], z2[index]]

    def similarity(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u * v).sum() / (u.norm() * v.norm())

    total = z1.new_zeros(())
    for i in range(len(views)):
        j = i + 1 if i % 2 == 0 else i - 1
        numerator = torch.exp(similarity(views[i], views[j]) / temperature)
        denominator = sum(torch.exp(similarity(views[i], views[k]) / temperature)
                          for k in range(len(views)) if k != i)
        total = total - torch.log(numerator / denominator)
    return total / len(views)


@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_matches_naive_loop_values_and_gradients(temperature: float, batch_size: int) -> None:
    generator = torch.Generator().manual_seed(batch_size)
    z1 = torch.randn(batch_size, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(batch_size, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    loss = NTXentLoss(temperature)(z1, z2)
    expected = naive_ntxent(z1, z2, temperature)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(loss, (z1, z2))
    expected_grads = torch.autograd.grad(expected, (z1, z2))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_float32_matches_float64_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, 16, 32, generator=generator)
    loss = NTXentLoss(0.1)(z1, z2)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), naive_ntxent(z1.double(), z2.double(), 0.1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_finite_and_close(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(2, 8, 16, generator=generator)
    loss = NTXentLoss(0.1)(z1.to(dtype), z2.to(dtype))
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.float(), NTXentLoss(0.1)(z1, z2), rtol=0.03, atol=0.03)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0])
@pytest.mark.parametrize("batch_size", [2, 6])
def test_identical_embeddings_give_log_of_2n_minus_1(temperature: float, batch_size: int) -> None:
    # Every similarity is 1: the positive is one of 2N - 1 equal terms, whatever the temperature.
    z = torch.randn(1, 5, dtype=torch.float64).expand(batch_size, 5)
    loss = NTXentLoss(temperature)(z, 3 * z)
    assert loss.item() == pytest.approx(math.log(2 * batch_size - 1), rel=1e-12)


@pytest.mark.parametrize("temperature", [0.01, 0.1, 1.0])
def test_orthogonal_separated_pairs_closed_form(temperature: float) -> None:
    # Views of an image coincide, images are orthogonal: positive similarity 1, 2N - 2 negatives at 0,
    # so every anchor's loss is log(1 + (2N - 2) exp(-1 / tau)), which goes to 0 as tau -> 0.
    batch_size = 4
    z = torch.eye(batch_size, 6, dtype=torch.float64)
    loss = NTXentLoss(temperature)(z, 2 * z).item()
    assert loss == pytest.approx(math.log1p((2 * batch_size - 2) * math.exp(-1 / temperature)), rel=1e-12)
    if temperature == 0.01:
        assert loss < 1e-40


def test_invariant_to_scaling_and_joint_permutation_and_symmetric() -> None:
    generator = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(2, 6, 10, generator=generator, dtype=torch.float64)
    criterion = NTXentLoss(0.2)
    loss = criterion(z1, z2)
    row_scales = torch.rand(6, 1, generator=generator, dtype=torch.float64) * 10 + 0.1
    torch.testing.assert_close(criterion(row_scales * z1, 1e3 * z2), loss, rtol=1e-12, atol=0)
    permutation = torch.randperm(6, generator=generator)
    torch.testing.assert_close(criterion(z1[permutation], z2[permutation]), loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(criterion(z2, z1), loss, rtol=1e-12, atol=0)
    # Pairing matters: shifting the second views by one image breaks every positive.
    assert criterion(z1, z2.roll(1, dims=0)).item() != pytest.approx(loss.item(), rel=1e-3)


def test_gather_flag_is_a_no_op_in_one_process() -> None:
    z1, z2 = torch.randn(2, 5, 8)
    torch.testing.assert_close(NTXentLoss(0.3, gather_distributed=True)(z1, z2),
                               NTXentLoss(0.3, gather_distributed=False)(z1, z2))


@pytest.mark.parametrize("shapes", [((4, 8), (4, 9)), ((4, 8), (3, 8)), ((8,), (8,)), ((2, 4, 8), (2, 4, 8)),
                                    ((0, 8), (0, 8))])
def test_rejects_bad_shapes(shapes) -> None:
    first, second = shapes
    with pytest.raises(ValueError, match="NTXentLoss expects"):
        NTXentLoss()(torch.randn(*first), torch.randn(*second))


@pytest.mark.parametrize("temperature", [0, -0.1, float("nan"), float("inf"), "warm", None, True])
def test_rejects_bad_temperature(temperature) -> None:
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature)
