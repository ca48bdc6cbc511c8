"""SimSiam's constant predictor learning rate (Chen & He 2021, sec. 4.5; the official ``--fix-pred-lr``):
a declared parameter group that keeps its rate while the rest follows the cosine, exact on resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfssl.recipe import OptimConfig, RecipeError
from hfssl.training.optim import build_optimizer
from hfssl.training.schedules import lr_multiplier
from hfssl.training.trainer import StepPlan, TrainerCallback, _set_step_hyperparameters, train

from tests.tiny import tiny_model
from tests.training.test_acceleration import tiny_recipe

LR = 0.05
SGD = {"name": "sgd", "lr": LR, "momentum": 0.9, "weight_decay": 1e-4, "warmup_steps": 0, "schedule": "cosine"}


def _rates_by_step(model: torch.nn.Module, optim: OptimConfig, total: int) -> list[dict[str, set[float]]]:
    """The learning rates the engine gives each group, step by step (its own StepPlan and setter)."""
    optimizer = build_optimizer(model, optim)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    plan = StepPlan(total, {}, base_lrs, [], optim)
    rates = []
    for step in range(1, total + 1):
        values = plan.values(step)
        _set_step_hyperparameters(optimizer, base_lrs, values.lr_factor, values.scheduled, values.constant_lr_factor)
        by_group: dict[str, set[float]] = {}
        for group in optimizer.param_groups:
            by_group.setdefault(group["group"], set()).add(group["lr"])
        rates.append(by_group)
    return rates


def test_the_predictor_keeps_its_rate_while_the_rest_follows_the_cosine():
    model = tiny_model("simsiam")
    optim = OptimConfig(**SGD)
    optimizer = build_optimizer(model, optim)
    predictor = {id(p) for p in model.predictor.parameters()}
    for group in optimizer.param_groups:  # the predictor's parameters, and only those, in its groups
        assert all((id(p) in predictor) == (group["group"] == "predictor") for p in group["params"])
    assert optimizer.param_groups[0]["group"] == "default"  # the first group keeps the recipe's rule ("lr")
    rates = _rates_by_step(model, optim, total=10)
    for step, by_group in enumerate(rates, start=1):
        assert by_group["predictor"] == {LR}
        assert by_group["default"] == {LR * lr_multiplier(step - 1, 10, optim)}
    assert rates[-1]["default"].pop() < 0.03 * LR  # the cosine really decays


def test_a_recipe_can_decay_the_predictor_with_the_rest_and_misspelt_groups_are_refused():
    optim = OptimConfig(**SGD, parameter_groups={"predictor": {"constant_lr": False}})
    rates = _rates_by_step(tiny_model("simsiam"), optim, total=10)
    assert all(by_group["predictor"] == by_group["default"] for by_group in rates)
    with pytest.raises(RecipeError, match="no parameter group 'predicter'. Did you mean 'predictor'"):
        build_optimizer(tiny_model("simsiam"), OptimConfig(**SGD, parameter_groups={"predicter": {"lr_scale": 2}}))
    with pytest.raises(RecipeError, match="unknown key optim.parameter_groups.predictor.constant"):
        OptimConfig(**SGD, parameter_groups={"predictor": {"constant": True}})


class _StopAfter(TrainerCallback):
    """A callback that kills the run after ``step`` (its checkpoint is written before the next step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, step, model, data, accelerator):  # noqa: ANN001, ANN201
        if step > self.step:
            raise KeyboardInterrupt
        return {}


def _optimizer_groups(checkpoint: Path) -> list[dict]:
    return torch.load(checkpoint / "optimizer.bin", weights_only=False)["param_groups"]


def test_the_engine_applies_the_group_rates_and_resumes_exactly(tmp_path):
    recipe = tiny_recipe("simsiam", optim=SGD, max_steps=4, checkpoint_every=2)
    whole = train(recipe, tmp_path / "whole")
    groups = _optimizer_groups(tmp_path / "whole" / "checkpoints" / "step-00000004")
    assert {g["lr"] for g in groups if g["group"] == "predictor"} == {LR}
    # The rate of step 4 is set from the step before it (0-based 3 of 4).
    assert {g["lr"] for g in groups if g["group"] == "default"} == {LR * lr_multiplier(3, 4, recipe.optim)}

    with pytest.raises(KeyboardInterrupt):
        train(recipe, tmp_path / "cut", callbacks=[_StopAfter(2)])
    resumed = train(recipe, tmp_path / "cut", resume=True)
    assert resumed.resumed_step == 2 and resumed.steps == 4
    expected, actual = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert whole.final_loss == resumed.final_loss


def test_a_resume_that_changes_the_parameter_groups_is_refused(tmp_path):
    from hfssl.errors import ResumeError

    train(tiny_recipe("simsiam", optim=SGD, max_steps=2, checkpoint_every=2), tmp_path)
    changed = tiny_recipe("simsiam", optim={**SGD, "parameter_groups": {"predictor": {"constant_lr": False}}},
                          max_steps=4, checkpoint_every=2)
    with pytest.raises(ResumeError, match="optim.parameter_groups.predictor.constant_lr"):
        train(changed, tmp_path, resume=True)
