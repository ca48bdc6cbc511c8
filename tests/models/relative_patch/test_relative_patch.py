"""Relative patch position (Doersch et al. 2015): the patch pairs against per-image reference code, labels
that point where the neighbour is, each anti-shortcut switch, the input builder, the recipe's checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hfssl.models.relative_patch import RelativePatchConfig, RelativePatchForPreTraining, RelativePatchInputs
from hfssl.models.relative_patch.task import NEIGHBOUR_CELLS, make_patch_pairs
from hfssl.recipe import load_recipe
from hfssl.settings import RecipeError
from tiny import TINY_CONVNEXT, TINY_VIT
from tiny_relative_patch import TINY_RELATIVE_PATCH

REPO = Path(__file__).resolve().parents[3]


def _config(**overrides) -> RelativePatchConfig:
    return RelativePatchConfig(**{**TINY_RELATIVE_PATCH, "downsample_prob": 0.0, "color_drop_channels": 0, **overrides})


def _naive_pairs(images, config, seed):
    """Per image, drawing as the task module documents: labels, jitter, downsampling, colour dropping."""
    generator = torch.Generator().manual_seed(seed)
    batch, channels, size = images.shape[0], images.shape[1], images.shape[-1]
    labels = torch.randint(8, (batch,), generator=generator)
    shifts = torch.randint(-config.jitter, config.jitter + 1, (batch, 9, 2), generator=generator)
    cell_size = config.patch_size + config.gap
    start = (size - 3 * cell_size) // 2
    pairs = []
    for b in range(batch):
        pair = []
        for cell in (4, NEIGHBOUR_CELLS[int(labels[b])]):
            row = start + (cell // 3) * cell_size + config.gap // 2 + int(shifts[b, cell, 0])
            column = start + (cell % 3) * cell_size + config.gap // 2 + int(shifts[b, cell, 1])
            pair.append(images[b, :, row:row + config.patch_size, column:column + config.patch_size])
        pairs.append(torch.stack(pair))
    pairs = torch.stack(pairs)
    if config.downsample_prob > 0:
        shrink = torch.rand((batch, 2), generator=generator) < config.downsample_prob
        for b in range(batch):
            for p in range(2):
                if shrink[b, p]:
                    small = F.interpolate(pairs[b, p][None], size=config.patch_size // config.downsample_factor,
                                          mode="area")
                    pairs[b, p] = F.interpolate(small, size=config.patch_size, mode="bilinear", align_corners=False)[0]
    if config.color_drop_channels and channels == 3:
        choice = torch.randint(3, (batch, 2), generator=generator)
        noise = torch.randn(pairs.shape, generator=generator) if config.color_drop_fill == "noise" else None
        for b in range(batch):
            for p in range(2):
                chosen = int(choice[b, p])
                dropped = [c for c in range(3) if c != chosen] if config.color_drop_channels == 2 else [chosen]
                kept = [c for c in range(3) if c not in dropped]
                spread = pairs[b, p, kept].std(unbiased=False)
                for c in dropped:
                    pairs[b, p, c] = 0.0 if noise is None else noise[b, p, c] * 0.01 * spread
    return pairs, labels


@pytest.mark.parametrize("overrides", [
    {},
    {"downsample_prob": 0.5, "downsample_factor": 2},
    {"color_drop_channels": 2, "color_drop_fill": "noise"},
    {"color_drop_channels": 1, "color_drop_fill": "zero", "downsample_prob": 0.5, "downsample_factor": 4},
])
def test_pairs_equal_per_image_reference_code_for_a_fixed_generator(overrides):
    config = _config(**overrides)
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    patches, labels = make_patch_pairs(images, config, torch.Generator().manual_seed(5))
    expected, expected_labels = _naive_pairs(images, config, 5)
    assert torch.equal(labels, expected_labels)
    torch.testing.assert_close(patches, expected, rtol=0, atol=1e-6)
    assert patches.shape == (8, 2, 3, 8, 8)


def test_the_label_says_where_the_neighbour_was_cut():
    """Images whose pixels hold their own coordinates: the patches' corners give where they were cut, and the
    neighbour lies one cell away from the centre in the label's direction."""
    config = _config(gap=4, jitter=2)
    size = 36
    rows = torch.arange(size).reshape(size, 1).expand(size, size)
    coordinates = torch.stack([rows, rows.T]).float()  # (2, S, S): row, column
    images = coordinates.expand(64, 2, size, size)
    patches, labels = make_patch_pairs(images, config, torch.Generator().manual_seed(1))
    directions = {cell: (cell // 3 - 1, cell % 3 - 1) for cell in NEIGHBOUR_CELLS}
    for b in range(64):
        centre, neighbour = patches[b, 0, :, 0, 0], patches[b, 1, :, 0, 0]  # top-left (row, column)
        shift = (neighbour - centre) / (config.patch_size + config.gap)  # in cells, give or take the jitter
        expected = directions[NEIGHBOUR_CELLS[int(labels[b])]]
        assert tuple(round(float(value)) for value in shift) == expected
    assert len(set(labels.tolist())) == 8


def test_colour_dropping_keeps_one_or_two_channels_and_leaves_grey_images_alone():
    images = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0)) + 3
    for count in (1, 2):
        config = _config(color_drop_channels=count, color_drop_fill="zero")
        patches, _ = make_patch_pairs(images, config, torch.Generator().manual_seed(2))
        zero_channels = (patches.flatten(3) == 0).all(dim=3).sum(dim=2)  # (B, 2)
        assert (zero_channels == count).all()
    grey = images[:, :1]
    config = _config(color_drop_channels=2)
    dropped, _ = make_patch_pairs(grey, config, torch.Generator().manual_seed(2))
    plain, _ = make_patch_pairs(grey, _config(), torch.Generator().manual_seed(2))
    assert torch.equal(dropped, plain)


def test_input_builder_makes_the_pairs_of_the_normalised_batch_and_the_model_predicts_them():
    recipe = load_recipe(REPO / "recipes/relative_patch/digits.yaml", ["data.image_size=63"])
    pixels = torch.randint(0, 256, (4, 1, 63, 63), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    inputs = RelativePatchInputs(recipe)({"pixels": pixels}, torch.Generator().manual_seed(3))
    images = (pixels.float() / 255 - 0.3) / 0.4
    config = RelativePatchConfig(**recipe.model)
    patches, labels = make_patch_pairs(images, config, torch.Generator().manual_seed(3))
    assert torch.equal(inputs["pixel_values"], patches) and torch.equal(inputs["labels"], labels)
    torch.manual_seed(0)
    model = RelativePatchForPreTraining(config).eval()
    with torch.no_grad():
        output = model(**inputs)
        logits, task_labels = model.get_pretext_predictions(images, torch.Generator().manual_seed(3))
    assert torch.equal(task_labels, labels) and torch.allclose(logits, output.logits, atol=1e-5)
    assert output.logits.shape == (4, 8) and 0 <= float(output.pretext_accuracy) <= 1


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.image_size=28"], "data.image_size 28 with grid 3, gap 5 and 16-px patches (model.patch_size): a 3x3 grid "
                             "of 16-px tiles with gap 5 needs images of at least 63 px, got 28 px"),
    (["model.patch_size=12"], "12-px tiles are smaller than the 16 px the backbone needs; use images of at least 63 px"),
    (["model.color_drop_channels=2"], "model.color_drop_channels=2 drops colour channels, but data.channels is 1"),
    (["model.jitter=3"], "model: jitter=3 would move tiles out of their cells: with gap=5 it can be at most"),
])
def test_the_recipe_refuses_patches_that_do_not_fit_with_the_sizes_that_work(overrides, message):
    with pytest.raises(RecipeError) as error:
        load_recipe(REPO / "recipes/relative_patch/digits.yaml", overrides)
    assert message in str(error.value)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"color_drop_channels": 3}, "color_drop_channels must be 0 (off), 1 or 2"),
    ({"color_drop_fill": "grey"}, "color_drop_fill must be one of noise, zero"),
    ({"downsample_prob": 1.5}, "downsample_prob must be in [0.0, 1.0]"),
])
def test_bad_switches_are_refused(overrides, message):
    with pytest.raises(ValueError) as error:
        _config(**overrides)
    assert message in str(error.value)


@pytest.mark.parametrize("backbone", [dict(TINY_VIT, image_size=32), TINY_CONVNEXT], ids=["vit", "convnext"])
def test_any_vision_backbone_trains_on_patches_and_embeds_whole_images(backbone):
    """A ViT sees 8-px patches through interpolated position embeddings, a ConvNeXt through its stem; both get
    a gradient everywhere, serve the pretext task and embed the whole 32-px images."""
    torch.manual_seed(0)
    config = _config(backbone_config=backbone, color_drop_channels=2)
    model = RelativePatchForPreTraining(config)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    patches, labels = make_patch_pairs(images, config, torch.Generator().manual_seed(1))
    output = model(pixel_values=patches, labels=labels)
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with torch.no_grad():
        logits, task_labels = model.get_pretext_predictions(images, torch.Generator().manual_seed(1))
        embeddings = model.get_embeddings(images)
    assert torch.equal(task_labels, labels) and logits.shape == (4, 8) and embeddings.shape == (4, 32)
