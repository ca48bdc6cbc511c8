"""RotNet: the rotation builder against per-image reference code, labels that line up with the inputs, the
input builder's seeding, refused sizes and settings, the pretext-task capability, exact resume with the training
pretext accuracy logged, and a short digits run that learns the task."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfssl.evaluation.features import iter_image_batches
from hfssl.hub.card import write_model_card
from hfssl.models.rotnet import RotationInputs, RotNetConfig, rotate_all
from hfssl.recipe import ViewsConfig, load_recipe
from hfssl.settings import RecipeError
from hfssl.training.trainer import train
from hfssl.views import build_eval_transform, build_views
from rotation_reference import naive_turns
from tiny import TINY_RESNET, tiny_inputs, tiny_model

REPO = Path(__file__).resolve().parents[3]
FAST = ["train.progress_bar=false", "train.trackers=[]", "train.knn_every=null", "eval.protocols=[]"]
TINY_DIGITS_RESNET = "{model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 8, " \
                     "hidden_sizes: [8, 16], depths: [1, 1]}"
VIEWS = dict(crop_scale=(0.5, 1.0), flip_prob=0.5, mean=(0.5,), std=(0.25,))


def _pixels(batch: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_rotate_all_equals_the_per_image_reference_exactly():
    images = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    rotated, labels = rotate_all(images)
    assert rotated.shape == (12, 2, 6, 6) and labels.dtype == torch.int64
    assert labels.tolist() == [0, 1, 2, 3] * 3  # image-major: the four rotations of an image are neighbours
    for row in range(12):
        assert torch.equal(rotated[row], naive_turns(images[row // 4], row % 4)), row


def test_input_builder_is_the_seeded_view_then_all_four_rotations():
    """Exact tensors for a fixed generator: the single_view crop/flip view of each image (same seed), then each
    turned 0-3 times by the reference; rotating every row back by its label gives the view again."""
    views = ViewsConfig(**VIEWS)
    pixels = _pixels()
    inputs = RotationInputs(views, 8, 1)({"pixels": pixels, "labels": torch.zeros(3)}, torch.Generator().manual_seed(4))
    plain = build_views("single_view", views, 8, 1)(pixels, torch.Generator().manual_seed(4))["pixel_values"]
    assert set(inputs) == {"pixel_values", "labels"}
    for row, (image, label) in enumerate(zip(inputs["pixel_values"], inputs["labels"].tolist())):
        assert torch.equal(image, naive_turns(plain[row // 4], label))
        assert torch.equal(naive_turns(image, -label), plain[row // 4])  # rotate back by the label
    again = RotationInputs(views, 8, 1)({"pixels": pixels}, torch.Generator().manual_seed(4))
    other = RotationInputs(views, 8, 1)({"pixels": pixels}, torch.Generator().manual_seed(5))
    assert torch.equal(again["pixel_values"], inputs["pixel_values"])
    assert not torch.equal(other["pixel_values"], inputs["pixel_values"])


def test_non_square_images_and_rotated_views_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"needs square images, got 8x10 .*resize or crop"):
        rotate_all(torch.zeros(2, 1, 8, 10))
    model = tiny_model("rotnet").eval()
    with pytest.raises(ValueError, match="square"):
        model.get_pretext_predictions(torch.zeros(2, 3, 16, 12), torch.Generator())
    with pytest.raises(RecipeError, match=r"views.rotation_prob=0"):
        load_recipe(REPO / "recipes" / "rotnet" / "digits.yaml", ["views.rotation_prob=0.5"])
    with pytest.raises(ValueError, match="classifier_hidden_dim"):
        RotNetConfig(backbone_config=TINY_RESNET, classifier_hidden_dim=0)


@pytest.mark.parametrize("hidden", [None, 8])
def test_pretext_predictions_are_the_classifier_on_the_four_rotations(hidden):
    model = tiny_model("rotnet", classifier_hidden_dim=hidden).eval()
    assert isinstance(model.classifier, torch.nn.Linear) == (hidden is None)
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, labels = model.get_pretext_predictions(images, torch.Generator().manual_seed(0))
        rotated, expected_labels = rotate_all(images)
        outputs = model(pixel_values=rotated, labels=expected_labels)
    assert logits.shape == (12, 4) and torch.equal(labels, expected_labels)
    torch.testing.assert_close(logits, outputs.logits)
    assert float(outputs.pretext_accuracy) == float((logits.argmax(-1) == labels).float().mean())
    with pytest.raises(ValueError, match="one rotation label per image"):
        model(**dict(tiny_inputs("rotnet"), labels=torch.zeros(3, dtype=torch.long)))


def test_resume_is_bit_exact_and_the_training_pretext_accuracy_is_logged(tmp_path, caplog):
    """6 steps uninterrupted, and again from the step-3 checkpoint: the same final weights (the views and their
    rotations are remade from the step's seed); every logged step carries ``train/pretext_accuracy``."""
    overrides = [*FAST, f"model.backbone_config={TINY_DIGITS_RESNET}", "train.batch_size=32", "train.max_steps=6",
                 "train.checkpoint_every=3", "train.log_every=1"]
    recipe = load_recipe(REPO / "recipes" / "rotnet" / "digits.yaml", overrides)
    with caplog.at_level(logging.DEBUG, logger="hfssl.training.trainer"):
        full = train(recipe, tmp_path / "full")
    logged = [record.getMessage() for record in caplog.records if "train/pretext_accuracy" in record.getMessage()]
    assert len(logged) == 6, logged
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(full.output_dir / "checkpoints" / "step-00000003", resumed_dir / "checkpoints" / "step-00000003")
    resumed = train(recipe, resumed_dir, resume=True)
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step-00000003"
    expected, actual = load_file(tmp_path / "full" / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    # The image family's card names the rotation classifier as the extra part and the pretext-task limitation.
    card = write_model_card(tmp_path / "full").read_text()
    assert "encoder + pretext-task classifier" in card and "projection head" not in card
    assert "RotNet trains the encoder to solve a hand-crafted pretext task" in card
    assert "Augmentation-invariance" not in card
    assert "- pretext-task\n" in card.split("---")[1]  # the metadata tag the jigsaw and relative-patch cards carry


def test_a_short_digits_run_learns_the_rotations_well_above_chance(tmp_path):
    """40 steps of 64 digits (4 x 64 rotated images a step) on a narrower ResNet than the recipe's (widths 16/32,
    an MLP classifier of width 64), to stay fast: the held-out pretext accuracy, on the clean test images through
    the eval transform, is far above the 25 % of chance and of the untrained model."""
    backbone = ("{model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 16, hidden_sizes: [16, 32], "
                "depths: [1, 1]}")
    recipe = load_recipe(REPO / "recipes" / "rotnet" / "digits.yaml",
                         [*FAST, f"model.backbone_config={backbone}", "model.classifier_hidden_dim=64",
                          "train.batch_size=64", "train.max_steps=40", "optim.lr=0.005"])
    result = train(recipe, tmp_path)
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    images = torch.cat([transform(torch.from_numpy(pixels))
                        for pixels, _ in iter_image_batches(result.data.eval_test_dataset, 512)])
    assert images.shape[0] == 360  # the digits test split
    torch.manual_seed(0)
    untrained = type(result.model)(result.model.config).eval()
    accuracies = {}
    with torch.no_grad():
        for name, model in (("trained", result.model.eval()), ("untrained", untrained)):
            logits, labels = model.get_pretext_predictions(images, torch.Generator().manual_seed(0))
            accuracies[name] = float((logits.argmax(-1) == labels).float().mean())
    assert accuracies["trained"] > 0.6, accuracies
    assert accuracies["untrained"] < 0.4, accuracies
