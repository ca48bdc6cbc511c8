"""``train.init_from``: a run starts from every weight of an earlier run of the same method (fresh optimiser)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfssl.pipeline import run
from hfssl.recipe import load_recipe
from hfssl.settings import RecipeError
from hfssl.training.trainer import build_model

REPO = Path(__file__).resolve().parents[2]
FAST = ["train.batch_size=32", "train.progress_bar=false", "train.trackers=[]", "train.knn_every=null",
        "eval.protocols=[]", "train.max_steps=2"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("init") / "first"
    run(load_recipe(REPO / "recipes/simclr/digits.yaml", FAST), folder)
    return folder


def test_the_model_starts_from_every_weight_of_the_run_and_then_trains(first_run: Path, tmp_path: Path) -> None:
    recipe = load_recipe(REPO / "recipes/simclr/digits.yaml", [*FAST, f"train.init_from={first_run}"])
    started = build_model(recipe).state_dict()
    saved = load_file(str(first_run / "model.safetensors"))
    assert saved.keys() <= started.keys()
    for name, value in saved.items():
        assert torch.equal(started[name], value), name
    fresh = build_model(load_recipe(REPO / "recipes/simclr/digits.yaml", FAST)).state_dict()
    assert any(not torch.equal(fresh[name], saved[name]) for name in saved)  # the check can fail
    result = run(recipe, tmp_path / "second")
    assert result.steps == 2
    continued = load_file(str(tmp_path / "second" / "model.safetensors"))
    assert any(not torch.equal(continued[name], saved[name]) for name in saved)  # it trained on from there


def test_a_run_of_another_method_or_architecture_or_no_run_is_refused(first_run: Path, tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="train.init_from=.*not a finished hfssl run"):
        build_model(load_recipe(REPO / "recipes/simclr/digits.yaml", [*FAST, f"train.init_from={tmp_path}"]))
    with pytest.raises(RecipeError, match="'hfssl_simclr' run, but this recipe trains 'hfssl_byol'"):
        build_model(load_recipe(REPO / "recipes/byol/digits.yaml", [*FAST, f"train.init_from={first_run}"]))
    with pytest.raises(RecipeError, match="does not match this recipe's model: .*other shapes"):
        build_model(load_recipe(REPO / "recipes/simclr/digits.yaml",
                                [*FAST, f"train.init_from={first_run}", "model.projection_dim=32"]))
