"""CLIP end to end on builtin:emoji through the real CLI: train, resume exactly, export, evaluate
zero-shot (Google and Twitter art) and by retrieval, draw, and write a card whose snippet runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from hfssl.hub.card import validate_card
from tiny import TINY

REPO = Path(__file__).resolve().parents[3]


def _hub_fixtures():  # noqa: ANN202 - the card tests' helpers, loaded by path (tests/hub is not on sys.path here)
    import importlib.util

    spec = importlib.util.spec_from_file_location("_clip_hub_fixtures", REPO / "tests" / "hub" / "hub_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BLOCK_HFSSL, python_blocks = _hub_fixtures().BLOCK_HFSSL, _hub_fixtures().python_blocks
ARGS = ["train.max_steps=4", "train.checkpoint_every=2", "train.batch_size=32", "train.progress_bar=false",
        "train.trackers=[]", "eval.max_test_samples=48", "data.max_train_samples=256"]


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hfssl.cli", *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """recipes/clip/emoji.yaml with the tiny towers of tests/models/clip/tiny_clip.py on 16 px images, the
    text tower mean-pooled (as all-MiniLM-L6-v2 is by default): training, resume, the export into
    RUN/encoder with its code file and the card's snippet (trust_remote_code=True) all take that path."""
    recipe = yaml.safe_load((REPO / "recipes/clip/emoji.yaml").read_text())
    recipe["model"] = {**TINY["clip"][0], "text_pooling": "mean"}
    recipe["data"]["image_size"] = 16
    path = tmp_path_factory.mktemp("recipe") / "tiny_clip_emoji.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def finished_run(tiny_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("clip") / "run"
    result = _cli("train", str(tiny_recipe), "--output-dir", str(run), *ARGS)
    assert result.returncode == 0, result.stderr[-4000:]
    return run


def test_a_run_writes_the_dual_encoder_the_evaluation_the_picture_and_the_card(finished_run: Path) -> None:
    for name in ("config.json", "model.safetensors", "encoder/config.json", "encoder/processor_config.json",
                 "encoder/tokenizer.json", "eval_results.json", "images/predictions.png", "README.md",
                 "encoder/modeling_pooled_dual_encoder.py", "modeling_pooled_dual_encoder.py"):
        assert (finished_run / name).is_file(), name
    results = json.loads((finished_run / "eval_results.json").read_text())
    rows = results["results"]
    zero_shot = [row for row in rows if row["protocol"] == "zero-shot"]
    assert [row.get("dataset") for row in zero_shot] == [None, "builtin:emoji_twitter"]
    assert all(row["num_classes"] == 9 and 0 <= row["top1"] <= row["top5"] <= 1 for row in zero_shot)
    retrieval = [row for row in rows if row["protocol"] == "retrieval"]
    assert [row["direction"] for row in retrieval] == ["image-to-text", "text-to-image"]
    assert all(0 <= row["recall_at_1"] <= row["recall_at_5"] <= row["recall_at_10"] <= 1 for row in retrieval)
    card_text = (finished_run / "README.md").read_text()
    validate_card(card_text)
    card = ModelCard(card_text)
    assert card.data.pipeline_tag == "zero-shot-image-classification"
    metrics = {(result.metric_config, result.metric_type) for result in card.data.eval_results}
    assert {("zero-shot", "accuracy"), ("zero-shot", "top_5_accuracy"), ("retrieval", "recall")} <= metrics
    assert "images/predictions.png" in card_text and "an emoji of smileys & emotion" in card_text.lower()


def test_the_cards_zero_shot_snippet_runs_without_hfssl(finished_run: Path, tmp_path: Path) -> None:
    snippet = python_blocks((finished_run / "README.md").read_text(), "### With plain transformers")[0]
    repo_id = next(line for line in snippet.splitlines() if line.startswith("repo_id = "))
    snippet = snippet.replace(repo_id, f"repo_id = {str(finished_run)!r}")
    assert "trust_remote_code=True" in snippet
    check = ("assert type(model).__name__ == 'PooledVisionTextDualEncoderModel'\n"
             "assert probabilities.shape == (1, 3) and abs(float(probabilities.sum()) - 1) < 1e-5\n"
             "assert len(scores) == 3 and image_embeddings.shape == (1, 16)\n"
             "assert not any(name.startswith('hfssl') for name in sys.modules)\nprint('ok')")
    script = tmp_path / "snippet.py"
    script.write_text(BLOCK_HFSSL + "\n" + snippet + "\n" + check)
    env = {key: value for key, value in _env().items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")  # where transformers copies the remote code
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_resume_from_a_checkpoint_ends_with_the_uninterrupted_weights(finished_run: Path, tiny_recipe: Path,
                                                                      tmp_path: Path) -> None:
    run = tmp_path / "resumed"
    shutil.copytree(finished_run, run)
    shutil.rmtree(run / "checkpoints" / "step-00000004")
    (run / "model.safetensors").unlink()
    result = _cli("train", str(tiny_recipe), "--output-dir", str(run), "--resume", *ARGS, "eval.protocols=[]")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resumed from" in result.stdout
    expected, actual = load_file(str(finished_run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name in expected:
        assert (expected[name] == actual[name]).all(), f"{name} differs after resume"
