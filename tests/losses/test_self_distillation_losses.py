"""BYOLLoss and SimSiamLoss against cosines computed by hand."""

from __future__ import annotations

import pytest
import torch

from hfssl.losses import BYOLLoss, SimSiamLoss


def naive_byol(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Grill et al. 2020 eq. 2, one row at a time: ||q/|q| - z/|z| ||^2, mean over the batch."""
    losses = []
    for q, z in zip(prediction, target.detach()):
        losses.append(((q / q.norm() - z / z.norm()) ** 2).sum())
    return torch.stack(losses).mean()


def test_matches_hand_computation_and_target_gets_no_gradient() -> None:
    generator = torch.Generator().manual_seed(0)
    prediction = torch.randn(6, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randn(6, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    loss = BYOLLoss()(prediction, target)
    expected = naive_byol(prediction, target)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    # The same value written as 2 - 2 cos.
    cosines = torch.stack([(q @ z) / (q.norm() * z.norm()) for q, z in zip(prediction, target)])
    torch.testing.assert_close(loss, (2 - 2 * cosines).mean(), rtol=1e-12, atol=1e-12)

    loss.backward()
    assert target.grad is None  # stop-gradient on the teacher's projection
    (expected_grad,) = torch.autograd.grad(naive_byol(prediction, target), prediction)
    torch.testing.assert_close(prediction.grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_range_and_extremes() -> None:
    generator = torch.Generator().manual_seed(1)
    prediction = torch.randn(128, 4, generator=generator)
    target = torch.randn(128, 4, generator=generator)
    criterion = BYOLLoss()
    per_row = torch.stack([criterion(q[None], z[None]) for q, z in zip(prediction, target)])
    assert per_row.min() >= 0 and per_row.max() <= 4
    assert criterion(prediction, 5 * prediction).item() == pytest.approx(0.0, abs=1e-6)  # aligned
    assert criterion(prediction, -0.5 * prediction).item() == pytest.approx(4.0, abs=1e-6)  # opposite
    orthogonal = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert criterion(orthogonal, orthogonal.flip(1)).item() == pytest.approx(2.0, abs=1e-6)
    # Scale invariance in both arguments.
    torch.testing.assert_close(criterion(3 * prediction, 0.1 * target), criterion(prediction, target))


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="BYOLLoss expects equal shapes"):
        BYOLLoss()(torch.randn(4, 8), torch.randn(4, 7))


# ---------------------------------------------------------------- SimSiam


def naive_simsiam(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Chen & He 2021 eq. 1 and 4, one row at a time: D(p, z) = -<p/|p|, z/|z|> with z constant."""
    def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        z = z.detach()
        return -sum((p[i] * z[i]).sum() / (p[i].norm() * z[i].norm()) for i in range(p.shape[0])) / p.shape[0]

    return negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_simsiam_matches_naive_loop_and_projections_get_no_gradient(batch_size: int) -> None:
    generator = torch.Generator().manual_seed(batch_size)
    p1, p2, z1, z2 = (torch.randn(batch_size, 6, generator=generator, dtype=torch.float64, requires_grad=True)
                      for _ in range(4))
    loss = SimSiamLoss()(p1, p2, z1, z2)
    expected = naive_simsiam(p1, p2, z1, z2)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(loss, (p1, p2, z1, z2), allow_unused=True, retain_graph=True)
    assert grads[2] is None and grads[3] is None  # the stop-gradient: z is a constant (eq. 3)
    expected_grads = torch.autograd.grad(expected, (p1, p2))
    for grad, expected_grad in zip(grads[:2], expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    # Each prediction is pulled towards the *other* view's projection: swapping the pairing changes the loss.
    assert SimSiamLoss()(p1, p2, z2, z1).item() != pytest.approx(loss.item(), rel=1e-6)


def test_simsiam_extremes() -> None:
    generator = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(2, 16, 5, generator=generator)
    criterion = SimSiamLoss()
    assert criterion(3 * z2, 0.5 * z1, z1, z2).item() == pytest.approx(-1.0, abs=1e-6)  # aligned: the minimum
    assert criterion(-z2, -z1, z1, z2).item() == pytest.approx(1.0, abs=1e-6)  # opposite
    orthogonal = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert criterion(orthogonal, orthogonal, orthogonal.flip(1), orthogonal.flip(1)).item() == pytest.approx(0.0)


@pytest.mark.parametrize("shapes", [[(4, 8)] * 3 + [(4, 7)], [(4, 8), (3, 8), (4, 8), (4, 8)], [(8,)] * 4,
                                    [(0, 8)] * 4])
def test_simsiam_rejects_bad_shapes(shapes) -> None:
    with pytest.raises(ValueError, match="SimSiamLoss expects"):
        SimSiamLoss()(*(torch.randn(*shape) for shape in shapes))
