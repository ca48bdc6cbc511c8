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


def _cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """``hfssl ARGS`` through :func:`hfssl.cli.main` in this process: the same parsing, run and printed summary
    as :func:`_cli` without a fresh interpreter's imports (20-30 s of the suite's time per call on a loaded
    2-core machine). One torch thread, as ``_cli``'s OMP_NUM_THREADS=1: a run trained here has the weights
    of the same run trained by ``_cli``, bit for bit. Each file keeps its feature's main run on ``_cli``
    (the program itself); the runs a test only compares with it (an option off, a resume, a second seed)
    come from here."""
    import contextlib
    import io

    import torch

    from hfssl.cli import main

    threads, stdout, stderr = torch.get_num_threads(), io.StringIO(), io.StringIO()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(list(args))
    finally:
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["hfssl", *args], code, stdout.getvalue(), stderr.getvalue())


def write_tiny_recipe(folder: Path, base: str = "recipes/clip/emoji.yaml", **model: object) -> Path:
    """``folder/tiny_<base's name>``: the recipe ``base`` with the tiny towers of tests/models/clip/tiny_clip.py
    (and ``model``'s keys) on 16 px images."""
    recipe = yaml.safe_load((REPO / base).read_text())
    recipe["model"] = {**TINY["clip"][0], **model}
    recipe["data"]["image_size"] = 16
    path = folder / f"tiny_{Path(base).name}"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def tiny_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """recipes/clip/emoji.yaml with the tiny towers of tests/models/clip/tiny_clip.py on 16 px images, the
    text tower mean-pooled (as all-MiniLM-L6-v2 is by default): training, resume, the export into
    RUN/encoder with its code file and the card's snippet (trust_remote_code=True) all take that path."""
    return write_tiny_recipe(tmp_path_factory.mktemp("recipe"), text_pooling="mean")
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
    result = _cli_in_process("train", str(tiny_recipe), "--output-dir", str(run), "--resume", *ARGS,
                             "eval.protocols=[]")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resumed from" in result.stdout
    expected, actual = load_file(str(finished_run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name in expected:
        assert (expected[name] == actual[name]).all(), f"{name} differs after resume"


PIPELINE_SCRIPT = r"""
import json, sys
from transformers import pipeline
model_dir, files, names, template, out = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
classifier = pipeline("zero-shot-image-classification", model=model_dir, trust_remote_code=True)
results = classifier(files, candidate_labels=names, hypothesis_template=template, batch_size=64)
scores = [[{r["label"]: r["score"] for r in result}[name] for name in names] for result in results]
assert not any(name.startswith("hfssl") for name in sys.modules)
json.dump(scores, open(out, "w"))
"""


def test_the_exported_model_through_the_pipeline_on_the_raw_png_files_scores_as_hfssl(finished_run: Path,
                                                                                       tmp_path: Path) -> None:
    """No train/serve skew (issue 26, item 0): ``pipeline("zero-shot-image-classification")`` in a fresh
    process without hfssl, on the emoji RGBA PNG files themselves, gives hfssl's zero-shot protocol's
    probabilities and accuracy; images composited on white (what training did before) do not."""
    import numpy as np
    import PIL.Image
    import torch

    from hfssl.data.builtin import load_emoji
    from hfssl.data.config import ImageTextDataConfig
    from hfssl.data.decode import arrays_to_pixels
    from hfssl.data.image_text import load_image_text_splits
    from hfssl.evaluation.image_text import class_text_embeddings, load_dual_encoder, pairs_arrays, zero_shot_scores

    recipe = yaml.safe_load((finished_run / "recipe.yaml").read_text())
    data = ImageTextDataConfig(**{**recipe["data"], "max_train_samples": 8})
    pairs = load_image_text_splits(data)
    prepared, prepared_labels, _ = pairs_arrays(pairs.test)
    raw = load_emoji("google")["test"]
    # hfssl's decode of the source's array column (what the data module ran to prepare the split), in the
    # source's row order, so that row i is raw["file"][i]; the same images as the prepared (shuffled) split.
    pixels = arrays_to_pixels(np.stack(raw.with_format("numpy")["image"]), 3, data.image_size)
    labels = np.asarray(list(raw["label"]))
    assert sorted(map(bytes, pixels.reshape(len(pixels), -1))) == sorted(map(bytes, prepared.reshape(len(prepared), -1)))
    assert sorted(labels.tolist()) == sorted(prepared_labels.tolist())
    names, template = [name.lower() for name in pairs.label_names], "an emoji of {}"
    encoder = load_dual_encoder(str(finished_run / "encoder"))
    classes = class_text_embeddings(encoder, names, [template])
    scale = float(encoder.model.logit_scale.detach().exp())

    def centred_logits(images: np.ndarray) -> np.ndarray:
        logits = scale * encoder.embed_images(images) @ classes.T
        return logits - logits.mean(axis=1, keepdims=True)

    ours = centred_logits(pixels)
    out = tmp_path / "scores.json"
    env = {key: value for key, value in _env().items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", PIPELINE_SCRIPT, str(finished_run / "encoder"),
                             json.dumps(list(raw["file"])), json.dumps(names), template, str(out)],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.log(np.asarray(json.loads(out.read_text())))  # the pipeline's softmax -> logits up to a constant
    served -= served.mean(axis=1, keepdims=True)
    hfssl_top1 = zero_shot_scores(encoder.embed_images(pixels), labels, classes)["top1"]
    served_top1 = float((served.argmax(axis=1) == labels).mean())
    assert abs(served_top1 - hfssl_top1) <= 2 / len(labels), (served_top1, hfssl_top1)
    spread = ours.std()  # how far apart the classes' logits are (a 4-step model: close)
    difference = np.abs(served - ours).max() / spread
    assert difference < 0.05, difference
    # The check can fail: the same files composited on white (the old training decode) score differently.
    white = []
    for path in list(raw["file"]):
        rgba = PIL.Image.open(path).convert("RGBA")
        composite = PIL.Image.alpha_composite(PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        white.append(np.asarray(composite.convert("RGB").resize((16, 16), PIL.Image.BILINEAR)).transpose(2, 0, 1))
    white_difference = np.abs(centred_logits(np.stack(white)) - served).max() / spread
    print(difference, white_difference)
    assert white_difference > max(10 * difference, 0.25), (white_difference, difference)
