"""CLIPLoss against a naive loop over the pairs, closed-form values, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from hfssl.losses import CLIPLoss


def naive_clip_loss(images: torch.Tensor, texts: torch.Tensor, scale: float) -> torch.Tensor:
    """Radford et al. 2021, fig. 3, written out pair by pair."""
    n = images.shape[0]
    u = [row / row.norm() for row in images]
    v = [row / row.norm() for row in texts]
    total = torch.zeros((), dtype=images.dtype)
    for i in range(n):
        image_to_text = torch.stack([scale * torch.dot(u[i], v[j]) for j in range(n)])
        text_to_image = torch.stack([scale * torch.dot(v[i], u[j]) for j in range(n)])
        total = total - torch.log_softmax(image_to_text, 0)[i] - torch.log_softmax(text_to_image, 0)[i]
    return total / (2 * n)


def test_matches_a_naive_loop_with_gradients() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(7, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    texts = torch.randn(7, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    log_scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    loss = CLIPLoss()(images, texts, log_scale.exp())
    expected = naive_clip_loss(images, texts, log_scale.exp())
    torch.testing.assert_close(loss, expected)
    grads = torch.autograd.grad(loss, (images, texts, log_scale))
    expected_grads = torch.autograd.grad(expected, (images, texts, log_scale))
    for grad, reference in zip(grads, expected_grads):
        torch.testing.assert_close(grad, reference)


def test_closed_form_values() -> None:
    # Identical directions everywhere: every logit equal, the loss is log N for any scale.
    ones = torch.ones(4, 3)
    assert CLIPLoss()(ones, 2 * ones, torch.tensor(10.0)).item() == pytest.approx(math.log(4))
    # Orthonormal pairs: logits s on the diagonal and 0 elsewhere: log(1 + (N - 1) e^{-s}).
    eye = torch.eye(4)
    scale = 5.0
    assert CLIPLoss()(eye, eye, torch.tensor(scale)).item() == pytest.approx(math.log(1 + 3 * math.exp(-scale)))


def test_the_loss_is_symmetric_in_images_and_texts() -> None:
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)
    scale = torch.tensor(20.0)
    torch.testing.assert_close(CLIPLoss()(a, b, scale), CLIPLoss()(b, a, scale))


@pytest.mark.parametrize(("images", "texts"), [((3, 4), (2, 4)), ((3, 4), (3, 5)), ((0, 4), (0, 4)), ((3,), (3,))])
def test_bad_shapes_are_named(images: tuple, texts: tuple) -> None:
    with pytest.raises(ValueError, match="row i of both being a pair"):
        CLIPLoss()(torch.zeros(images), torch.zeros(texts), torch.tensor(1.0))
