"""Barlow Twins' optimiser groups as in the official code (facebookresearch/barlowtwins main.py): LARS
with the weights at lr 0.2 and the biases and BatchNorm parameters (``ndim == 1``) at 0.0048, the
latter neither decayed nor scaled by the trust ratio."""

from __future__ import annotations

import pytest
import torch

from hfssl.models.barlow_twins.modeling_barlow_twins import BIAS_LR_SCALE
from hfssl.recipe import OptimConfig, load_recipe
from hfssl.training.optim import LARS, build_optimizer

from tests.tiny import tiny_inputs, tiny_model
from tests.training.test_acceleration import REPO

WEIGHT_LR, BIAS_LR, WEIGHT_DECAY, ETA = 0.2, 0.0048, 1.5e-6, 1e-3


def _lars_as_the_paper(parameters: list[torch.nn.Parameter], momentum_buffers: dict[int, torch.Tensor]) -> None:
    """One LARS step written from the paper's description, parameter by parameter (momentum 0.9)."""
    with torch.no_grad():
        for parameter in parameters:
            if parameter.grad is None:
                continue
            update = parameter.grad.clone()
            vector = parameter.ndim == 1
            if not vector:
                update = update + WEIGHT_DECAY * parameter
                weight_norm, update_norm = parameter.norm(), update.norm()
                if weight_norm > 0 and update_norm > 0:
                    update = update * (ETA * weight_norm / update_norm)
            buffer = momentum_buffers.setdefault(id(parameter), torch.zeros_like(parameter))
            buffer.mul_(0.9).add_(update)
            parameter.sub_((BIAS_LR if vector else WEIGHT_LR) * buffer)


def test_biases_and_norms_form_their_own_undecayed_group_at_the_official_rate():
    model = tiny_model("barlow_twins")
    optimizer = build_optimizer(model, OptimConfig(name="lars", lr=WEIGHT_LR, weight_decay=WEIGHT_DECAY))
    assert isinstance(optimizer, LARS)
    assert BIAS_LR_SCALE == pytest.approx(BIAS_LR / WEIGHT_LR)
    by_group = {group["group"]: group for group in optimizer.param_groups}
    assert set(by_group) == {"default", "biases_and_norms"}
    vectors = {id(p) for p in model.parameters() if p.requires_grad and p.ndim == 1}
    assert {id(p) for p in by_group["biases_and_norms"]["params"]} == vectors
    assert {id(p) for p in by_group["default"]["params"]} == {id(p) for p in model.parameters()
                                                             if p.requires_grad and p.ndim > 1}
    biases = by_group["biases_and_norms"]
    assert biases["lr"] == pytest.approx(BIAS_LR) and biases["weight_decay"] == 0.0 and biases["lars_exclude"]
    weights = by_group["default"]
    assert weights["lr"] == WEIGHT_LR and weights["weight_decay"] == WEIGHT_DECAY and not weights["lars_exclude"]


def test_two_lars_steps_equal_the_official_update_parameter_by_parameter():
    model = tiny_model("barlow_twins")
    reference = tiny_model("barlow_twins")
    reference.load_state_dict(model.state_dict())
    optimizer = build_optimizer(model, OptimConfig(name="lars", lr=WEIGHT_LR, weight_decay=WEIGHT_DECAY))
    buffers: dict[int, torch.Tensor] = {}
    for seed in range(2):
        for net in (model, reference):
            net.zero_grad(set_to_none=True)
            net(**tiny_inputs("barlow_twins", seed=seed)).loss.backward()
        optimizer.step()
        _lars_as_the_paper([p for p in reference.parameters() if p.requires_grad], buffers)
    for (name, ours), (_, theirs) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, msg=name)  # the loss amplifies rounding
    moved = [name for name, p in model.named_parameters() if p.ndim == 1 and p.requires_grad]
    assert moved  # biases and BatchNorm parameters are in the comparison


def test_the_adamw_recipes_keep_one_rate_for_all_parameters():
    for name in ("digits", "fashion_mnist"):
        recipe = load_recipe(REPO / "recipes" / "barlow_twins" / f"{name}.yaml")
        optimizer = build_optimizer(tiny_model("barlow_twins"), recipe.optim)
        assert {group["lr"] for group in optimizer.param_groups} == {recipe.optim.lr}
