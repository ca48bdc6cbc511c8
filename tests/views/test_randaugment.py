"""RandAugment and Cutout as view operations: PIL's definitions for the operations it has, seeded and batched,
off by default (nothing drawn), and refused settings named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from hfssl.settings import RecipeError
from hfssl.views import ViewsConfig, build_views
from hfssl.views.randaugment import GREY, OPERATIONS, auto_contrast, cutout, equalize, posterize, randaugment


def _grey_images(count: int = 6, size: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    low = torch.randint(0, 100, (count, 1, 1, 1), generator=generator)
    span = torch.randint(20, 150, (count, 1, 1, 1), generator=generator)
    return (low + torch.rand(count, 1, size, size, generator=generator) * span).round().to(torch.uint8)


@pytest.mark.parametrize("name", ["equalize", "autocontrast", "posterize"])
def test_operations_match_pil(name):
    images = _grey_images()
    floats = images.float() / 255.0
    for index in range(images.shape[0]):
        picture = Image.fromarray(images[index, 0].numpy())
        if name == "equalize":
            ours, reference = equalize(floats[index:index + 1]), ImageOps.equalize(picture)
        elif name == "autocontrast":
            ours, reference = auto_contrast(floats[index:index + 1]), ImageOps.autocontrast(picture)
        else:
            bits = 3 + index % 5
            ours, reference = posterize(floats[index:index + 1], torch.tensor([float(bits)])), ImageOps.posterize(picture, bits)
        levels = (ours[0, 0] * 255.0).round().numpy()
        # PIL's autocontrast rounds its lookup table through an integer offset: one grey level at most.
        tolerance = 1 if name == "autocontrast" else 0
        assert np.abs(levels - np.asarray(reference, dtype=np.float64)).max() <= tolerance, (name, index)


def test_randaugment_is_seeded_batched_and_in_range():
    images = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    first = randaugment(images, torch.Generator().manual_seed(5), 2)
    again = randaugment(images, torch.Generator().manual_seed(5), 2)
    other = randaugment(images, torch.Generator().manual_seed(6), 2)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == images.shape and first.min() >= 0.0 and first.max() <= 1.0
    # One image's result depends on its own draws only: the batch is processed as independent images.
    changed = (first - images).abs().flatten(1).amax(1) > 0
    assert 0 < int(changed.sum()) <= 32
    assert len(OPERATIONS) == 14
    identity = randaugment(images, torch.Generator().manual_seed(5), 0)
    assert torch.equal(identity, images)


def test_cutout_fills_one_clipped_grey_square_per_image():
    images = torch.zeros(64, 1, 10, 10)
    out = cutout(images, torch.Generator().manual_seed(0), 0.4)
    for index in range(64):
        rows, columns = torch.nonzero(out[index, 0] == GREY, as_tuple=True)
        assert len(rows) > 0
        height, width = int(rows.max() - rows.min()) + 1, int(columns.max() - columns.min()) + 1
        assert height <= 4 and width <= 4 and len(rows) == height * width  # a rectangle: the square, clipped
    assert (out == GREY).flatten(1).sum(1).max() == 16  # unclipped squares are 4 x 4


def test_off_by_default_draws_nothing_and_on_changes_the_views():
    pixels = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    plain = ViewsConfig(num_views=1, mean=(0.5,), std=(0.5,))
    generator = torch.Generator().manual_seed(3)
    before = build_views("single_view", plain, 16, 1)(pixels, generator)["pixel_values"]
    state = generator.get_state()
    reference = torch.Generator().manual_seed(3)
    build_views("single_view", ViewsConfig(num_views=1, mean=(0.5,), std=(0.5,), flip_prob=0.5), 16, 1)(pixels, reference)
    assert torch.equal(state, reference.get_state())  # the same draws as before RandAugment existed
    strong = ViewsConfig(num_views=1, mean=(0.5,), std=(0.5,), randaugment_num_ops=2, cutout_fraction=0.5)
    after = build_views("single_view", strong, 16, 1)(pixels, torch.Generator().manual_seed(3))["pixel_values"]
    assert after.shape == before.shape and not torch.equal(after, before)
    multi = build_views("multi_view", ViewsConfig(num_views=2, randaugment_num_ops=1, randaugment_magnitude=0.5), 16, 3)
    assert multi(pixels.expand(-1, 3, -1, -1).contiguous(), torch.Generator().manual_seed(0))["pixel_values"].shape == (8, 2, 3, 16, 16)


@pytest.mark.parametrize("values, key", [({"randaugment_num_ops": -1}, "randaugment_num_ops"),
                                         ({"randaugment_magnitude": 1.5}, "randaugment_magnitude"),
                                         ({"cutout_fraction": 2.0}, "cutout_fraction")])
def test_bad_settings_are_named(values, key):
    with pytest.raises(RecipeError, match=f"views.{key}"):
        ViewsConfig(**values)
