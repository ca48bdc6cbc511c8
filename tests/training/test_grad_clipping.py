"""Gradient clipping: ``optim.grad_clip_mode: per_parameter`` (DINO's ``utils.clip_gradients``: each
parameter's gradient norm clipped to ``max_grad_norm`` on its own) against a naive loop over the
parameters, and ``global`` against torch's ``clip_grad_norm_``."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from hfssl.recipe import OptimConfig, RecipeError, load_recipe
from hfssl.training.optim import clip_gradients_per_parameter
from hfssl.training.trainer import _clip_gradients, train

from tests.training.test_acceleration import REPO, tiny_recipe


def _parameters_with_gradients(seed: int = 0) -> list[torch.nn.Parameter]:
    """Gradients of very different norms (some above 3, some below), and one parameter without any."""
    generator = torch.Generator().manual_seed(seed)
    parameters = []
    for shape, scale in (((4, 5), 10.0), ((7,), 0.01), ((3, 3, 2), 2.0), ((6,), 50.0), ((2, 2), 1.0)):
        parameter = torch.nn.Parameter(torch.randn(shape, generator=generator))
        parameter.grad = torch.randn(shape, generator=generator) * scale
        parameters.append(parameter)
    parameters.append(torch.nn.Parameter(torch.ones(3)))  # no gradient: skipped
    return parameters


def _clip_naively(parameters: list[torch.nn.Parameter], clip: float) -> None:
    """DINO's rule, one parameter at a time: scale by clip / (norm + 1e-6) when that is below 1."""
    for parameter in parameters:
        if parameter.grad is None:
            continue
        norm = float(torch.sqrt((parameter.grad.double() ** 2).sum()))
        coefficient = clip / (norm + 1e-6)
        if coefficient < 1:
            parameter.grad.mul_(coefficient)


@pytest.mark.parametrize("clip", [3.0, 0.5, 1000.0])
def test_per_parameter_clipping_equals_a_loop_over_the_parameters(clip):
    ours, reference = _parameters_with_gradients(), _parameters_with_gradients()
    clip_gradients_per_parameter(ours, clip)
    _clip_naively(reference, clip)
    for mine, theirs in zip(ours, reference):
        if theirs.grad is None:
            assert mine.grad is None
            continue
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-6, atol=1e-7)
        assert float(mine.grad.norm()) <= clip + 1e-4
    if clip == 3.0:  # some gradients were clipped and some were not: each on its own norm
        norms = [float(p.grad.norm()) for p in ours if p.grad is not None]
        assert any(n == pytest.approx(3.0, rel=1e-5) for n in norms) and any(n < 2.9 for n in norms)


def test_the_engine_clips_per_parameter_or_globally_as_the_recipe_says():
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Module()
    per_parameter, expected = _parameters_with_gradients(), _parameters_with_gradients()
    model.weights = torch.nn.ParameterList(per_parameter)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    _clip_gradients(accelerator, model, optimizer, OptimConfig(max_grad_norm=3.0, grad_clip_mode="per_parameter"))
    _clip_naively(expected, 3.0)
    for mine, theirs in zip(per_parameter, expected):
        if theirs.grad is not None:
            torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-6, atol=1e-7)

    globally, reference = _parameters_with_gradients(), _parameters_with_gradients()
    model.weights = torch.nn.ParameterList(globally)
    _clip_gradients(accelerator, model, optimizer, OptimConfig(max_grad_norm=3.0))
    torch.nn.utils.clip_grad_norm_(reference, 3.0)
    for mine, theirs in zip(globally, reference):
        if theirs.grad is not None:
            torch.testing.assert_close(mine.grad, theirs.grad)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in globally if p.grad is not None]))
    assert float(total) == pytest.approx(3.0, rel=1e-5)


def test_dino_recipes_clip_each_parameter_at_3_and_a_bad_mode_is_refused(tmp_path):
    for name in ("digits", "fashion_mnist"):
        optim = load_recipe(REPO / "recipes" / "dino" / f"{name}.yaml").optim
        assert (optim.max_grad_norm, optim.grad_clip_mode) == (3.0, "per_parameter")
    with pytest.raises(RecipeError, match="optim.grad_clip_mode must be one of global, per_parameter"):
        OptimConfig(grad_clip_mode="per_layer")
    result = train(tiny_recipe("simclr", optim={"max_grad_norm": 0.5, "grad_clip_mode": "per_parameter"},
                               max_steps=2), tmp_path)
    assert result.steps == 2 and result.final_loss is not None
