"""Patch dropout and partial unlocking through the real CLI on builtin:emoji: a ViT image tower trained with
``model.patch_dropout=0.5`` and a locked text tower whose last layer is unlocked (at half the rate, through
the ``unlocked_layers`` parameter group): the frozen layers stay bit-identical, the unlocked ones move, and a
resumed run ends with the uninterrupted weights (the same patches dropped at every step; the resume through
the CLI's code in this process: test_clip_run._cli_in_process)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from test_clip_run import REPO, _cli, _cli_in_process, write_tiny_recipe

ARGS = ["train.max_steps=4", "train.checkpoint_every=2", "train.batch_size=16", "train.progress_bar=false",
        "train.trackers=[]", "data.max_train_samples=64", "eval.protocols=[]",
        "optim.parameter_groups.unlocked_layers.lr_scale=0.5"]


@pytest.fixture(scope="module")
def towers_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_recipe(tmp_path_factory.mktemp("recipe"), patch_dropout=0.5, lock_text_tower=True,
                             unlock_last_layers_text=1)


@pytest.fixture(scope="module")
def towers_run(towers_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("clip_towers") / "run"
    result = _cli("train", str(towers_recipe), "--output-dir", str(run), *ARGS)
    assert result.returncode == 0, result.stderr[-4000:]
    return run


def test_only_the_unlocked_text_layer_and_the_trained_parts_move(towers_run: Path) -> None:
    middle = load_file(str(towers_run / "checkpoints" / "step-00000002" / "model.safetensors"))
    final = load_file(str(towers_run / "checkpoints" / "step-00000004" / "model.safetensors"))  # the same names
    assert middle.keys() == final.keys()
    text = "backbone.text_model."
    unlocked = (text + "encoder.layer.1.", text + "pooler.")
    for name in final:
        if not name.endswith(("weight", "bias")):
            continue
        moved = not (middle[name] == final[name]).all()
        if name.startswith(text):
            assert moved == name.startswith(unlocked), name
        else:
            assert moved, name  # the image tower, the projections


def test_resume_ends_with_the_uninterrupted_weights(towers_run: Path, towers_recipe: Path, tmp_path: Path) -> None:
    run = tmp_path / "resumed"
    shutil.copytree(towers_run, run)
    shutil.rmtree(run / "checkpoints" / "step-00000004")
    (run / "model.safetensors").unlink()
    result = _cli_in_process("train", str(towers_recipe), "--output-dir", str(run), "--resume", *ARGS)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resumed from" in result.stdout
    expected, actual = load_file(str(towers_run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name in expected:
        assert (expected[name] == actual[name]).all(), f"{name} differs after resume"


def test_the_recipes_input_builder_draws_patch_noise(towers_recipe: Path) -> None:
    from hfssl.models.clip import build_inputs
    from hfssl.recipe import load_recipe

    builder = build_inputs(load_recipe(towers_recipe), None)
    assert builder.vision_config is not None and builder.vision_config.patch_size == 4
