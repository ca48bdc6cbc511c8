"""The ``invariance`` protocol (hfssl/evaluation/invariance.py): the similarity scores and Wang & Isola's alignment and
uniformity against hand / numpy computations, each view operation alone on a toy encoder whose invariance is known
(the spatial mean of the pixels: exactly invariant to flips and quarter turns, not to colour changes), settings
refused with the valid values, and the protocol through the real ``hfssl train`` / ``hfssl eval`` / ``hfssl card``
on a tiny run."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hfssl import SimCLRConfig, SimCLRForPreTraining
from hfssl.cli import main as hfssl_main
from hfssl.errors import NonFiniteError
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.runner import evaluate
from hfssl.evaluation.alignment_uniformity import alignment, uniformity
from hfssl.evaluation.invariance import OPERATIONS, invariance_rows, similarity_scores
from hfssl.evaluation.protocols.invariance import InvarianceSettings
from hfssl.recipe import EvalConfig, recipe_from_dict
from hfssl.settings import RecipeError, build_section
from hfssl.views import ViewsConfig
from tiny import TINY_RESNET

ALL = tuple(OPERATIONS)


def spatial_mean(pixels: torch.Tensor) -> torch.Tensor:
    """The toy encoder: each channel's mean grey level, centred (``(B, C)``); a permutation of pixels leaves it as is."""
    return pixels.double().mean(dim=(2, 3)) / 255.0 - 0.5


def raw(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.reshape(len(pixels), -1).double() / 255.0


def colour_images(count: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, 12, 12), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def numpy_cosines(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    return z @ a.T


def test_similarity_scores_by_hand():
    clean = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    copies = torch.tensor([[1.0, 1.0], [0.0, 5.0], [-1.0, 0.0]])
    # cos(z_i, a_j): row 0 -> (1/sqrt2, 0, -1), row 1 -> (1/sqrt2, 1, 0), row 2 -> (1, 1/sqrt2, -1/sqrt2)
    r = 1 / math.sqrt(2)
    positive = (r + 1 - r) / 3
    negative = (0 - 1 + r + 0 + 1 + r) / 6
    scores = similarity_scores(clean, copies)
    assert scores["positive_cosine"] == pytest.approx(positive, abs=1e-12)
    assert scores["negative_cosine"] == pytest.approx(negative, abs=1e-12)
    assert scores["invariance"] == pytest.approx((positive - negative) / (1 - negative), abs=1e-12)
    # nearest copy: row 0 -> its own (1/sqrt2), row 1 -> its own (1), row 2 -> copy 0 (1): two of three
    assert scores["copy_retrieval_top1"] == pytest.approx(2 / 3)
    # Collapsed features: every cosine 1, the score is 0 (no better than any other image), not a division by zero.
    assert similarity_scores(torch.ones(4, 3), torch.ones(4, 3))["invariance"] == 0.0
    with pytest.raises(ValueError, match="N >= 2"):
        similarity_scores(torch.ones(1, 3), torch.ones(1, 3))


def test_alignment_and_uniformity_equal_numpy_loops():
    x = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0], [3.0, 0.0, 4.0], [1.0, 1.0, 1.0]])
    y = np.array([[2.0, 2.0, 1.0], [0.5, -1.0, 0.0], [3.0, 1.0, 4.0], [-1.0, 1.0, 1.0]])
    unit_x = x / np.linalg.norm(x, axis=1, keepdims=True)
    unit_y = y / np.linalg.norm(y, axis=1, keepdims=True)
    for alpha in (2.0, 1.0):
        expected = np.mean([np.linalg.norm(unit_x[i] - unit_y[i]) ** alpha for i in range(4)])
        assert float(alignment(torch.tensor(x), torch.tensor(y), alpha)) == pytest.approx(expected, rel=1e-12)
    for t in (2.0, 0.5):
        pairs = [np.exp(-t * np.sum((unit_x[i] - unit_x[j]) ** 2)) for i in range(4) for j in range(i + 1, 4)]
        assert float(uniformity(torch.tensor(x), t)) == pytest.approx(np.log(np.mean(pairs)), rel=1e-12)


def test_the_spatial_mean_is_exactly_invariant_to_flips_and_quarter_turns_not_to_colour():
    pixels = colour_images()
    rows = invariance_rows({"model": spatial_mean, "raw_pixels": raw}, pixels, ViewsConfig(), ALL, seed=0, batch_size=10)
    model = {row["operation"]: row for row in rows["model"]}
    assert list(model) == [*ALL, "all"]
    features = spatial_mean(pixels).numpy()
    cosines = numpy_cosines(features, features)
    others = cosines[~np.eye(len(features), dtype=bool)].mean()
    for name in ("flip", "rotation"):  # a permutation of the pixels: the copy's features are the image's own
        assert model[name]["positive_cosine"] == pytest.approx(1.0, abs=1e-12)
        assert model[name]["negative_cosine"] == pytest.approx(others, abs=1e-12)
        assert model[name]["invariance"] == pytest.approx(1.0, abs=1e-12)
        assert model[name]["copy_retrieval_top1"] == 1.0
    for name in ("color_jitter", "grayscale", "solarize"):  # colour changes move the mean colour
        assert model[name]["positive_cosine"] < 0.99 and model[name]["invariance"] < 0.99
    # Solarize is deterministic: levels >= 128 (x / 255 >= 0.5) become 255 - x.
    solarized = np.where(pixels.numpy() >= 128, 255 - pixels.numpy().astype(np.int64), pixels.numpy())
    expected = numpy_cosines(features, solarized.mean(axis=(2, 3)) / 255.0 - 0.5)
    assert model["solarize"]["positive_cosine"] == pytest.approx(np.diag(expected).mean(), abs=1e-12)
    assert model["solarize"]["negative_cosine"] == pytest.approx(expected[~np.eye(len(features), dtype=bool)].mean(),
                                                                 abs=1e-12)
    # Raw pixels move under a flip: the baseline is not invariant, on the same copies.
    pixel_rows = {row["operation"]: row for row in rows["raw_pixels"]}
    assert pixel_rows["flip"]["invariance"] < 0.5
    summary = model["all"]
    assert summary["operations"] == list(ALL) and summary["samples"] == len(pixels)
    assert summary["invariance"] == pytest.approx(np.mean([model[name]["invariance"] for name in ALL]))
    assert summary["uniformity"] == pytest.approx(float(uniformity(torch.tensor(features))), rel=1e-12)


def test_alignment_over_training_views_is_zero_for_views_the_encoder_ignores():
    pixels = colour_images()
    # Whole-image crops, flips and quarter turns only: every view is a permutation of the image's pixels.
    still = ViewsConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.5, color_jitter_prob=0.0,
                        grayscale_prob=0.0, rotation_prob=1.0)
    (summary,) = [row for row in invariance_rows({"model": spatial_mean}, pixels, still, ("flip",), 0, 8)["model"]
                  if row["operation"] == "all"]
    assert summary["alignment"] == pytest.approx(0.0, abs=1e-12)
    moving = dataclasses.replace(still, color_jitter_prob=1.0)
    (summary,) = [row for row in invariance_rows({"model": spatial_mean}, pixels, moving, ("flip",), 0, 8)["model"]
                  if row["operation"] == "all"]
    assert summary["alignment"] > 0.01


def test_seeded_and_grey_images_leave_out_what_changes_nothing(caplog):
    caplog.set_level(logging.INFO, logger="hfssl.evaluation.invariance")
    pixels = colour_images()
    first = invariance_rows({"model": spatial_mean}, pixels, ViewsConfig(), ("crop", "blur"), 3, 7)
    assert first == invariance_rows({"model": spatial_mean}, pixels, ViewsConfig(), ("crop", "blur"), 3, 7)
    other = invariance_rows({"model": spatial_mean}, pixels, ViewsConfig(), ("crop", "blur"), 4, 7)
    assert other["model"][0]["positive_cosine"] != first["model"][0]["positive_cosine"]
    grey = pixels[:, :1]
    rows = invariance_rows({"model": raw}, grey, ViewsConfig(), ("grayscale", "flip"), 0, 8)["model"]
    assert [row["operation"] for row in rows] == ["flip", "all"] and "grayscale leaves" in caplog.text
    with pytest.raises(ValueError, match="none of the operations \\['grayscale'\\] changes 1-channel images.*crop, flip"):
        invariance_rows({"model": raw}, grey, ViewsConfig(), ("grayscale",), 0, 8)
    with pytest.raises(ValueError, match="square"):
        invariance_rows({"model": raw}, pixels[:, :, :, :10], ViewsConfig(), ("flip",), 0, 8)


@pytest.mark.parametrize(("values", "message"), [
    ({"operations": ["flip", "mixup"]}, "unknown operation\\(s\\) \\['mixup'\\]; the view operations are crop, flip, "
                                        "color_jitter, grayscale, blur, solarize, rotation"),
    ({"operations": []}, "must list view operations"),
    ({"operations": ["flip", "flip"]}, "lists an operation twice"),
    ({"max_samples": 1}, "max_samples must be an integer from 2 to 5000"),
    ({"max_samples": 6000}, "max_samples must be an integer from 2 to 5000"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"t": 0}, "alpha and t must be > 0"),
])
def test_bad_settings_are_refused_with_the_valid_values(values, message):
    with pytest.raises(RecipeError, match=f"eval.invariance.*{message}"):
        build_section(InvarianceSettings, "eval.invariance", values)


def test_a_diverged_model_is_not_scored():
    recipe = recipe_from_dict({"method": "simclr", "model": {"backbone_config": {**TINY_RESNET, "num_channels": 1}},
                               "data": {"source": "builtin:digits", "image_size": 16, "channels": 1,
                                        "max_train_samples": 20, "max_eval_samples": 20},
                               "views": {"mean": [0.5], "std": [0.5]}}, check_model=False)
    model = SimCLRForPreTraining(SimCLRConfig(backbone_config={**TINY_RESNET, "num_channels": 1})).eval()
    with torch.no_grad():
        model.get_backbone().embedder.embedder.convolution.weight.fill_(float("nan"))
    context = EvaluationContext(eval_config=EvalConfig(protocols=("invariance",)), data_config=recipe.data, model=model,
                                recipe=recipe)
    with pytest.raises(NonFiniteError, match="non-finite features"):
        evaluate(context)


def test_hfssl_eval_on_a_tiny_trained_run_writes_rows_and_the_card(tmp_path: Path):
    recipe = {
        "method": "simclr",
        "model": {"backbone_config": {**TINY_RESNET, "num_channels": 1}, "projection_hidden_dim": 32,
                  "projection_dim": 16},
        "data": {"source": "builtin:digits", "image_size": 16, "channels": 1, "max_train_samples": 256,
                 "max_eval_samples": 64},
        "views": {"mean": [0.3], "std": [0.4], "flip_prob": 0.0, "saturation": 0.0, "hue": 0.0},
        "optim": {"lr": 0.01, "warmup_steps": 0},
        "train": {"batch_size": 32, "max_steps": 3, "checkpoint_every": 100, "trackers": [], "progress_bar": False,
                  "knn_every": None, "log_every": 1, "monitor_every": 100},
        "eval": {"protocols": ["knn"], "knn": {"k": [5]}, "baselines": True},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    assert hfssl_main(["train", str(tmp_path / "tiny.yaml"), "--output-dir", str(run)]) == 0
    assert hfssl_main(["eval", str(run), "--protocol", "invariance", "--set", "invariance.max_samples=40",
                       "--set", "invariance.operations=[crop, flip, grayscale, rotation]"]) == 0
    results = json.loads((run / "eval_results.json").read_text())
    rows = [row for row in results["results"] if row["protocol"] == "invariance"]
    assert [row["operation"] for row in rows] == ["crop", "flip", "rotation", "all"]  # grayscale: grey images
    assert any(row["protocol"] == "knn" for row in results["results"])  # merged with the run's own rows
    for row in rows:
        assert row["features"] == "model" and row["views"] == "recipe" and row["samples"] == 40 and row["seed"] == 0
        assert -1.0 <= row["negative_cosine"] <= row["positive_cosine"] + 1e-9 <= 1.0 + 1e-9
        assert 0.0 <= row["copy_retrieval_top1"] <= 1.0
    summary = rows[-1]
    assert 0.0 <= summary["alignment"] <= 4.0 and -4.0 <= summary["uniformity"] <= 0.0
    baselines = [row for row in results["baselines"] if row["protocol"] == "invariance"]
    assert [row["operation"] for row in baselines] == ["crop", "flip", "rotation", "all"]
    assert all(row["features"] == "raw_pixels" for row in baselines)
    # The exported encoder (its processor, the run's views from the run's recipe) gives the same kind of rows.
    output = tmp_path / "encoder.json"
    assert hfssl_main(["eval", str(run / "encoder"), "--dataset", "builtin:digits", "--image-size", "16",
                       "--channels", "1", "--max-test-samples", "40", "--no-baselines", "--protocol", "invariance",
                       "--set", "invariance.operations=[flip]", "--output", str(output)]) == 0
    encoder_rows = json.loads(output.read_text())["results"]
    assert [row["operation"] for row in encoder_rows] == ["flip", "all"] and encoder_rows[0]["views"] == "recipe"
    assert encoder_rows[0]["positive_cosine"] == pytest.approx(rows[1]["positive_cosine"], abs=0.02)
    assert hfssl_main(["card", str(run)]) == 0
    card = (run / "README.md").read_text()
    assert "**Invariance to augmentations**" in card and "| Operation | cosine to its copy |" in card
    assert (f"| rotation | {rows[2]['positive_cosine']:.3f} | {rows[2]['negative_cosine']:.3f} | "
            f"{100 * rows[2]['invariance']:.1f} | {100 * rows[2]['copy_retrieval_top1']:.1f} | - | - |") in card
    assert f"{summary['alignment']:.3f} | {summary['uniformity']:.3f} |" in card
    metadata = yaml.safe_load(card.split("---")[1])
    metrics = [metric for entry in metadata["model-index"][0]["results"] for metric in entry["metrics"]]
    (score,) = [metric for metric in metrics if metric["name"] == "Invariance (operation=flip, seed=0) invariance score"]
    assert score["value"] == pytest.approx(rows[1]["invariance"], abs=1e-6)
