"""recipes/clip/emoji_locked_text_siglip.yaml (tiny towers, with the gradient cache) through the real CLI:
it trains, evaluates zero-shot, writes a card that names the loss, keeps the learned bias in the full model
only, and resumes from a checkpoint to the uninterrupted weights, bias included (the resume through the
CLI's code in this process: test_clip_run._cli_in_process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from test_clip_run import REPO, _cli, _cli_in_process, write_tiny_recipe

ARGS = ["train.max_steps=4", "train.checkpoint_every=2", "train.batch_size=16", "train.progress_bar=false",
        "train.trackers=[]", "eval.max_test_samples=48", "data.max_train_samples=128", "eval.protocols=[zero-shot]"]


@pytest.fixture(scope="module")
def siglip_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SigLIP recipe with the tiny towers of tests/models/clip/tiny_clip.py on 16 px images, embedding
    each batch of 16 through the gradient cache in chunks of 6 pairs."""
    base = "recipes/clip/emoji_locked_text_siglip.yaml"
    assert yaml.safe_load((REPO / base).read_text())["model"]["loss"] == "siglip"
    return write_tiny_recipe(tmp_path_factory.mktemp("recipe"), base, loss="siglip", gradient_cache_chunk_size=6)


@pytest.fixture(scope="module")
def finished_run(siglip_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("siglip") / "run"
    result = _cli("train", str(siglip_recipe), "--output-dir", str(run), *ARGS)
    assert result.returncode == 0, result.stderr[-4000:]
    return run


def test_a_siglip_run_keeps_its_bias_in_the_full_model_and_names_the_loss(finished_run: Path) -> None:
    config = json.loads((finished_run / "config.json").read_text())
    assert config["loss"] == "siglip" and config["gradient_cache_chunk_size"] == 6
    full = load_file(str(finished_run / "model.safetensors"))
    assert full["logit_bias"].ndim == 0 and full["logit_bias"].item() != -10.0  # learned: it moved
    exported = load_file(str(finished_run / "encoder" / "model.safetensors"))
    assert "logit_scale" in exported and not any("logit_bias" in name for name in exported)
    rows = json.loads((finished_run / "eval_results.json").read_text())["results"]
    assert [row["protocol"] for row in rows] == ["zero-shot", "zero-shot"]
    assert "SigLIP's pairwise sigmoid loss" in (finished_run / "README.md").read_text()


def test_resume_from_a_checkpoint_ends_with_the_uninterrupted_weights(finished_run: Path, siglip_recipe: Path,
                                                                      tmp_path: Path) -> None:
    run = tmp_path / "resumed"
    shutil.copytree(finished_run, run)
    shutil.rmtree(run / "checkpoints" / "step-00000004")
    (run / "model.safetensors").unlink()
    result = _cli_in_process("train", str(siglip_recipe), "--output-dir", str(run), "--resume", *ARGS,
                             "eval.protocols=[]")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resumed from" in result.stdout
    expected, actual = load_file(str(finished_run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert expected.keys() == actual.keys() and "logit_bias" in expected
    for name in expected:
        assert (expected[name] == actual[name]).all(), f"{name} differs after resume"
