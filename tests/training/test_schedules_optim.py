from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hfssl.training.optim import LARS, build_optimizer, parameter_groups
from hfssl.recipe import OptimConfig
from hfssl.schedules import Schedule, cosine, resolve_schedules, warmup_then_constant
from hfssl.settings import RecipeError
from hfssl.training.schedules import lr_multiplier


def test_cosine_schedule_closed_form():
    optim = OptimConfig(warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_multiplier(0, 110, optim) == pytest.approx(0.1)
    assert lr_multiplier(9, 110, optim) == pytest.approx(1.0)
    assert lr_multiplier(10, 110, optim) == pytest.approx(1.0)
    assert lr_multiplier(60, 110, optim) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_multiplier(110, 110, optim) == pytest.approx(0.1)


def test_linear_and_constant_schedules():
    linear = OptimConfig(warmup_steps=0, schedule="linear", min_lr_ratio=0.0)
    assert [lr_multiplier(s, 4, linear) for s in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    constant = OptimConfig(warmup_steps=2, schedule="constant")
    assert [lr_multiplier(s, 10, constant) for s in range(4)] == pytest.approx([0.5, 1.0, 1.0, 1.0])


def test_teacher_momentum_follows_byol_cosine():
    assert cosine(0.996, 1.0)(0, 100) == pytest.approx(0.996)
    assert cosine(0.996, 1.0)(100, 100) == pytest.approx(1.0)
    assert cosine(0.99, 1.0)(50, 100) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 2) + 1) / 2)


def test_schedule_shapes_against_their_formulas():
    # DINO's teacher temperature: linear warm-up 0.04 -> 0.07 over 30 % of training, then constant.
    temperature = warmup_then_constant(0.04, 0.07, warmup_fraction=0.3)
    assert [temperature(step, 100) for step in (0, 15, 30, 99)] == pytest.approx([0.04, 0.055, 0.07, 0.07])
    # DINO's weight decay: cosine 0.04 -> 0.4.
    decay = cosine(0.04, 0.4)
    assert decay(25, 100) == pytest.approx(0.4 - 0.36 * (1 + math.cos(math.pi * 0.25)) / 2)
    linear = Schedule(start=1.0, end=0.0, kind="linear", warmup_steps=10, warmup_start=0.0)
    assert [linear(step, 110) for step in (0, 5, 10, 60, 110, 200)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.0])
    assert Schedule(start=0.3)(7, 10) == 0.3


def test_schedule_overrides_from_the_recipe():
    declared = {"teacher_momentum": cosine(0.996, 1.0)}
    resolved = resolve_schedules(declared, {"teacher_momentum": {"start": "0.99"}})
    assert resolved["teacher_momentum"] == Schedule(start=0.99, end=1.0, kind="cosine")
    assert resolve_schedules(declared, {"teacher_momentum": 0.5})["teacher_momentum"](40, 100) == 0.5
    with pytest.raises(RecipeError, match="has no scheduled scalar 'teacher_momentun'. Did you mean 'teacher_momentum'"):
        resolve_schedules(declared, {"teacher_momentun": {"start": 0.9}})
    with pytest.raises(RecipeError, match="unknown key .*strat"):
        resolve_schedules(declared, {"teacher_momentum": {"strat": 0.9}})
    with pytest.raises(RecipeError, match="kind must be one of constant, linear, cosine"):
        resolve_schedules(declared, {"teacher_momentum": {"kind": "exponential"}})
    with pytest.raises(RecipeError, match="needs an end value"):
        Schedule(start=1.0, kind="cosine")


def test_no_weight_decay_on_biases_and_norms_and_no_teacher_parameters():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2, bias=False))
    frozen = nn.Linear(2, 2)
    frozen.requires_grad_(False)
    model.append(frozen)
    groups = parameter_groups(model, OptimConfig(weight_decay=0.1))
    decayed = {id(p) for p in groups[0]["params"]}
    undecayed = {id(p) for p in groups[1]["params"]}
    assert decayed == {id(model[0].weight), id(model[2].weight)}
    assert undecayed == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    assert groups[1]["weight_decay"] == 0.0
    assert not any(id(p) in decayed | undecayed for p in frozen.parameters())


def test_lars_step_matches_hand_computation():
    weight = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # norm 5
    bias = nn.Parameter(torch.tensor([1.0]))
    optimizer = LARS([{"params": [weight], "weight_decay": 0.1, "lars_exclude": False},
                      {"params": [bias], "weight_decay": 0.0, "lars_exclude": True}],
                     lr=0.5, momentum=0.9, trust_coefficient=0.01)
    weight.grad = torch.tensor([[0.0, 1.0]])
    bias.grad = torch.tensor([2.0])
    optimizer.step()
    grad = torch.tensor([[0.0, 1.0]]) + 0.1 * torch.tensor([[3.0, 4.0]])
    trust = 0.01 * 5.0 / grad.norm()
    assert torch.allclose(weight, torch.tensor([[3.0, 4.0]]) - 0.5 * trust * grad)
    assert torch.allclose(bias, torch.tensor([1.0 - 0.5 * 2.0]))


@pytest.mark.parametrize("name, cls", [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD), ("lars", LARS)])
def test_build_optimizer(name, cls):
    optimizer = build_optimizer(nn.Linear(3, 3), OptimConfig(name=name, lr=0.1))
    assert isinstance(optimizer, cls)
