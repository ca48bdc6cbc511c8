"""BYOLLoss against 2 - 2 cos computed by hand."""

from __future__ import annotations

import pytest
import torch

from hfssl.losses import BYOLLoss


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
