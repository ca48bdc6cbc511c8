"""SimSiam's stop-gradient switch (Chen & He 2021, sec. 4.1): with ``stop_gradient`` the loss treats the other
view's projection as a constant; without it the gradient also flows through that target branch, and equals the
analytic gradient of the symmetric negative cosine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hfssl.losses import SimSiamLoss
from hfssl.models.simsiam import SimSiamConfig
from hfssl.recipe import load_recipe
from tiny import tiny_inputs, tiny_model

REPO = Path(__file__).resolve().parents[3]


def negative_cosine_gradient(prediction: torch.Tensor, target: torch.Tensor, scale: float) -> torch.Tensor:
    """``d/dz [-scale * sum_i cos(p_i, z_i)]`` row by row, written out:
    ``-scale * (p / (|p| |z|) - cos(p, z) z / |z|^2)``."""
    p_norm = prediction.norm(dim=1, keepdim=True)
    z_norm = target.norm(dim=1, keepdim=True)
    cosine = (prediction * target).sum(dim=1, keepdim=True) / (p_norm * z_norm)
    return -scale * (prediction / (p_norm * z_norm) - cosine * target / z_norm**2)


def test_without_stop_gradient_the_targets_get_the_analytic_gradient():
    generator = torch.Generator().manual_seed(3)
    p1, p2, z1, z2 = (torch.randn(5, 7, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(4))
    loss = SimSiamLoss(stop_gradient=False)(p1, p2, z1, z2)
    torch.testing.assert_close(loss, SimSiamLoss()(p1, p2, z1, z2))  # the value does not depend on the switch
    grad_z1, grad_z2 = torch.autograd.grad(loss, (z1, z2))
    # L = -cos(p1, z2).mean() / 2 - cos(p2, z1).mean() / 2: each row of each term weighs 1 / (2B).
    torch.testing.assert_close(grad_z1, negative_cosine_gradient(p2, z1, 1 / 10), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad_z2, negative_cosine_gradient(p1, z2, 1 / 10), rtol=1e-10, atol=1e-12)
    assert grad_z1.abs().max() > 1e-3 and grad_z2.abs().max() > 1e-3


def _projector_gradients(stop_gradient: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tiny model's projections z and predictions p (both views, view-major ``(2B, D)``), the loss's gradient
    with respect to z through the target branch alone (the whole gradient minus the part through the predictor),
    and through the predictor."""
    model = tiny_model("simsiam", stop_gradient=stop_gradient).train()
    captured: dict[str, torch.Tensor] = {}
    model.projector.register_forward_hook(lambda module, args, output: captured.__setitem__("z", output))
    model.predictor.register_forward_hook(lambda module, args, output: captured.__setitem__("p", output))
    loss = model(**tiny_inputs("simsiam", batch_size=4, seed=1)).loss
    z, p = captured["z"], captured["p"]
    (grad_p,) = torch.autograd.grad(loss, p, retain_graph=True)
    (through_predictor,) = torch.autograd.grad(p, z, grad_outputs=grad_p, retain_graph=True)
    (grad_z,) = torch.autograd.grad(loss, z)
    return z.detach(), p.detach(), grad_z - through_predictor, through_predictor


def test_the_model_without_stop_gradient_backpropagates_through_the_target_branch():
    z, p, target_branch, through_predictor = _projector_gradients(stop_gradient=False)
    batch = z.shape[0] // 2
    partner = p.roll(batch, dims=0)  # z1 (rows 0..B-1) is regressed by p2, z2 by p1
    expected = negative_cosine_gradient(partner, z, 1 / (2 * batch))
    torch.testing.assert_close(target_branch, expected, rtol=1e-4, atol=1e-7)
    assert target_branch.abs().max() > 1e-3
    assert through_predictor.abs().max() > 1e-3  # the prediction branch is there too


def test_the_model_with_stop_gradient_gives_the_target_branch_no_gradient():
    z, p, target_branch, through_predictor = _projector_gradients(stop_gradient=True)
    assert torch.count_nonzero(target_branch) == 0
    assert through_predictor.abs().max() > 1e-3  # z still learns, through p = h(z)
    assert tiny_model("simsiam").criterion.stop_gradient is True  # the paper's default


def test_stop_gradient_must_be_a_boolean():
    with pytest.raises(ValueError, match="stop_gradient must be true .* got 'no'"):
        SimSiamConfig(stop_gradient="no")


def test_the_control_recipe_is_the_fashion_mnist_recipe_without_stop_gradient():
    control = load_recipe(REPO / "recipes/simsiam/fashion_mnist_no_stop_gradient.yaml")
    method = load_recipe(REPO / "recipes/simsiam/fashion_mnist.yaml")
    assert control.model.pop("stop_gradient") is False
    assert method.model.get("stop_gradient", True) is True
    assert control.to_yaml() == method.to_yaml()
