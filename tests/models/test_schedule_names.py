"""Every registered method declares the names of its scheduled scalars (``schedule_names(config)``), so
a recipe's ``train.schedules`` is checked without building a model; the names equal the keys of
``schedules()`` of a built (tiny) model."""

from __future__ import annotations

import pytest

from hfssl.models.simsiam.modeling_simsiam import SimSiamForPreTraining
from hfssl.recipe import RecipeError, recipe_from_dict
from hfssl.registry import METHODS
from hfssl.schedules import constant
from hfssl.training.trainer import check_schedule_names, resolved_schedules

from tests.tiny import TINY, tiny_model


@pytest.mark.parametrize("method", sorted(METHODS))
def test_declared_schedule_names_equal_the_built_models_schedules(method):
    assert method in TINY, f"tests/tiny.py has no tiny config for {method}"
    model = tiny_model(method)
    assert sorted(type(model).schedule_names(model.config)) == sorted(model.schedules())


def test_dino_declares_three_schedules_and_simsiam_none():
    assert sorted(tiny_model("dino").schedules()) == ["teacher_momentum", "teacher_temperature", "weight_decay"]
    assert tiny_model("simsiam").schedules() == {}
    assert list(tiny_model("byol").schedules()) == ["teacher_momentum"]


def _recipe(method: str, schedules: dict) -> object:
    return recipe_from_dict({"method": method, "model": TINY[method][0], "train": {"schedules": schedules},
                             "eval": {"protocols": []}})


def test_train_schedules_are_checked_without_building_a_model(monkeypatch):
    spec = METHODS["dino"]

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a model was built to check schedule names")

    monkeypatch.setattr(spec.model_class, "__init__", refuse)
    check_schedule_names(_recipe("dino", {"teacher_temperature": 0.05, "weight_decay": {"end": 0.2}}))
    with pytest.raises(RecipeError, match="no scheduled scalar 'teacher_temprature'. Did you mean 'teacher_temperature'"):
        check_schedule_names(_recipe("dino", {"teacher_temprature": 0.05}))
    with pytest.raises(RecipeError, match="unknown key .*strat"):
        check_schedule_names(_recipe("dino", {"weight_decay": {"strat": 0.1}}))
    with pytest.raises(RecipeError, match="the simsiam model schedules nothing"):
        check_schedule_names(_recipe("simsiam", {"teacher_momentum": 0.9}))


class _Undeclared(SimSiamForPreTraining):
    """Schedules a scalar that its class does not declare."""

    def schedules(self):  # noqa: ANN201
        return {"temperature": constant(0.1)}


def test_a_model_whose_schedules_differ_from_its_declared_names_is_refused():
    model = _Undeclared(tiny_model("simsiam").config)
    with pytest.raises(ValueError, match=r"schedules\(\) returns \['temperature'\] but its schedule_names"):
        resolved_schedules(model, _recipe("simsiam", {}))
