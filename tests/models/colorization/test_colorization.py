"""Colorization: the loss against the l2 formula on Lab computed by the CIE formulas pixel by pixel, the encoder's
lightness-only input, the reconstruction capability and its display, refused recipes and configs, and a short
real run on the emoji images: exact resume, the reconstruction protocol, the card's triplets, and the exported
encoder fed as the card says (in a process without hfssl) giving hfssl's own features."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfssl.data.images import read_pixels
from hfssl.models.colorization import ColorizationConfig
from hfssl.pipeline import run
from hfssl.recipe import load_recipe
from hfssl.settings import RecipeError
from hfssl.training.trainer import train
from hfssl.views import build_eval_transform
from lab_card import FAST, REPO, card_snippet_features
from lab_reference import naive_normalised_lab
from tiny import TINY_RESNET, tiny_model

RECIPE = REPO / "recipes" / "colorization" / "emoji.yaml"


def _rgb(seed: int = 0, size: int = 16) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_loss_is_the_mean_squared_ab_error_and_the_encoder_sees_lightness_only():
    model = tiny_model("colorization").eval()
    rgb = _rgb()
    lab = naive_normalised_lab(rgb)  # (2, 3, 16, 16) float64: (L - 50) / 50, a / 110, b / 110
    with torch.no_grad():
        outputs = model(pixel_values=(rgb - 0.5) / 0.5)
        predicted = outputs.predicted_color.double()
        squares = [(predicted[n, c, i, j] - lab[n, 1 + c, i, j]) ** 2
                   for n in range(2) for c in range(2) for i in range(16) for j in range(16)]
        assert float(outputs.loss) == pytest.approx(float(sum(squares) / len(squares)), rel=1e-4)
        # The encoder's input is the lightness alone: the same features and colours from L, whatever the colour.
        features, colors = model.colorize(lab[:, :1].float())
        torch.testing.assert_close(outputs.embeddings, features, atol=2e-4, rtol=0)
        torch.testing.assert_close(outputs.predicted_color, colors, atol=2e-4, rtol=0)
        torch.testing.assert_close(model.get_embeddings((rgb - 0.5) / 0.5), features, atol=2e-4, rtol=0)
    assert model.backbone.config.num_channels == 1


def test_reconstructions_are_the_true_and_predicted_ab_shown_with_the_images_lightness():
    model = tiny_model("colorization").eval()
    rgb = _rgb(1)
    with torch.no_grad():
        result = model.get_reconstructions((rgb - 0.5) / 0.5, torch.Generator().manual_seed(0))
        outputs = model(pixel_values=(rgb - 0.5) / 0.5)
    assert result.original.shape == result.reconstructed.shape == (2, 2, 16, 16)
    assert result.corrupted.shape == (2, 1, 16, 16) and result.mask is None
    torch.testing.assert_close(result.reconstructed, outputs.predicted_color)
    # Displayed: the original is the RGB image again (Lab round trip), the corrupted input its lightness L / 100.
    torch.testing.assert_close(result.images("original", (0.5,) * 3, (0.5,) * 3), rgb, atol=1e-4, rtol=0)
    lightness = naive_normalised_lab(rgb)[:, :1].float()
    torch.testing.assert_close(result.images("corrupted", (0.5,) * 3, (0.5,) * 3), (lightness + 1) / 2,
                               atol=1e-4, rtol=0)
    assert float((result.reconstructed - result.original).pow(2).mean()) == pytest.approx(float(outputs.loss), rel=1e-5)


def test_grey_data_grey_views_and_bad_settings_are_refused_with_the_fix():
    with pytest.raises(RecipeError, match=r"data.channels=3 and use a colour source"):
        load_recipe(RECIPE, ["data.source=builtin:digits", "data.channels=1", "views.mean=[0.5]", "views.std=[0.5]"])
    with pytest.raises(RecipeError, match=r"views.grayscale_prob=0"):
        load_recipe(RECIPE, ["views.grayscale_prob=0.2"])
    with pytest.raises(ValueError, match=r"input_mean / input_std"):
        ColorizationConfig(backbone_config=TINY_RESNET, input_mean=[0.5])
    with pytest.raises(ValueError, match=r"image_size"):
        ColorizationConfig(backbone_config=TINY_RESNET, image_size=0)
    with pytest.raises(ValueError, match=r"data.channels=3"):
        tiny_model("colorization")(pixel_values=torch.zeros(2, 1, 16, 16))


def test_emoji_run_resumes_exactly_evaluates_draws_and_its_export_fed_as_the_card_says_gives_hfssls_features(tmp_path):
    """A 4-step run on builtin:emoji (16 px, a tiny ResNet) through the whole pipeline, and again from its step-2
    checkpoint (the same final weights); the run's config takes the views' normalisation and size; the held-out
    reconstruction error, the card's Lab warning and triplets; the card's snippet on 4 real test images in a
    process without hfssl gives the model's own features."""
    recipe = load_recipe(RECIPE, [*FAST, "train.max_steps=4", "train.checkpoint_every=2",
                                  "eval.protocols=[linear,reconstruction]", "views.mean=[0.4,0.5,0.6]"])
    result = run(recipe, tmp_path / "run")
    run_dir = tmp_path / "run"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["input_mean"] == [0.4, 0.5, 0.6] and config["image_size"] == 16
    assert config["encoder_input"] == "lab-lightness"
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(run_dir / "checkpoints" / "step-00000002", resumed_dir / "checkpoints" / "step-00000002")
    train(recipe, resumed_dir, resume=True)
    expected, actual = load_file(run_dir / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name

    rows = json.loads((run_dir / "eval_results.json").read_text())["results"]
    reconstruction = next(row for row in rows if row["protocol"] == "reconstruction")
    assert reconstruction["examples"] > 0 and reconstruction["mse"] > 0 and reconstruction["psnr"] > 5
    card = (run_dir / "README.md").read_text()
    assert "Warning: this encoder does not take RGB" in card and "the CIE Lab lightness only" in card
    assert (run_dir / "images" / "reconstruction_triplets.png").is_file()
    assert "images/reconstruction_triplets.png" in card

    model = result.model.eval()
    pixels = read_pixels(result.data.eval_test_dataset, 0, 4)  # (4, 3, 16, 16) uint8, as the data module made them
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    with torch.no_grad():
        expected = model.get_embeddings(transform(torch.from_numpy(pixels)))
    report = card_snippet_features(run_dir, pixels.transpose(0, 2, 3, 1), tmp_path)
    assert report["hfssl_imported"] is False
    torch.testing.assert_close(report["embeddings"], expected, atol=1e-4, rtol=1e-4)
