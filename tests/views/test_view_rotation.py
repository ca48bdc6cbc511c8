"""Rotation as a view (``views.rotation_prob``, ``views.rotation_degrees``) against per-image reference code."""

from __future__ import annotations

import math

import pytest
import torch

from hfssl.recipe import ViewsConfig
from hfssl.settings import RecipeError
from hfssl.views import build_eval_transform, build_views
from hfssl.views.functional import rotate, rotate_quarter_turns
from rotation_reference import naive_quarter_turn

MEAN, STD = (0.5,), (0.25,)
# Crop covering the whole image, nothing else random: a view is the normalised image, rotated or not.
IDENTITY = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, color_jitter_prob=0.0,
                grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0, mean=MEAN, std=STD)


def naive_rotate(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """Counter-clockwise rotation of ``(C, S, S)`` about the centre, pixel by pixel: each output pixel centre
    turned back by ``degrees`` and read bilinearly from the four nearest input pixels, 0 outside the image."""
    channels, size, _ = image.shape
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    centre = (size - 1) / 2
    out = torch.zeros(channels, size, size, dtype=torch.float64)
    source = image.double()
    for i in range(size):
        for j in range(size):
            x, y = j - centre, i - centre  # y points down: a counter-clockwise picture turn
            sx, sy = cos * x - sin * y + centre, sin * x + cos * y + centre
            x0, y0 = math.floor(sx), math.floor(sy)
            for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                for xx, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                    if 0 <= yy < size and 0 <= xx < size:
                        out[:, i, j] += wy * wx * source[:, yy, xx]
    return out.to(image.dtype)


def _images(batch: int = 6, channels: int = 2, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_quarter_turns_equal_the_pixel_by_pixel_reference_exactly():
    images = _images()
    turns = torch.tensor([0, 1, 2, 3, -1, 5])
    out = rotate_quarter_turns(images, turns)
    for image, k, result in zip(images, turns.tolist(), out):
        expected = image
        for _ in range(k % 4):
            expected = naive_quarter_turn(expected)
        assert torch.equal(result, expected), k


def test_any_angle_equals_the_bilinear_reference_and_multiples_of_90_are_exact():
    images = _images(batch=7)
    degrees = torch.tensor([0.0, 90.0, -90.0, 180.0, 10.0, -30.0, 100.0])
    out = rotate(images, degrees)
    for image, angle, result in zip(images, degrees.tolist(), out):
        torch.testing.assert_close(result, naive_rotate(image, angle), atol=1e-5, rtol=0)
    assert torch.equal(out[1], naive_quarter_turn(images[1]))
    assert torch.equal(out[3], naive_quarter_turn(naive_quarter_turn(images[3])))
    assert torch.equal(out[0], images[0])


def test_rotation_view_matches_the_per_image_reference_and_the_eval_transform_when_unrotated():
    """Every view is the eval transform's image, unrotated or turned by one of the angles (reference code); with
    probability 0.5 both happen, the same seed gives the same views, and nothing is drawn when rotation is off."""
    angles = (90.0, 180.0, 270.0, -10.0, 10.0)
    views = ViewsConfig(**IDENTITY, rotation_prob=0.5, rotation_degrees=angles)
    pixels = torch.randint(0, 256, (48, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    out = build_views("single_view", views, 8, 1)(pixels, torch.Generator().manual_seed(5))["pixel_values"]
    again = build_views("single_view", views, 8, 1)(pixels, torch.Generator().manual_seed(5))["pixel_values"]
    assert torch.equal(out, again)
    clean = build_eval_transform(views, 8, 1)(pixels)
    used = []
    for image, view, plain in zip(pixels.float() / 255, out, clean):
        if torch.allclose(view, plain, atol=1e-6, rtol=0):
            used.append(0.0)
            continue
        matches = [angle for angle in angles
                   if torch.allclose(view, (naive_rotate(image, angle) - MEAN[0]) / STD[0], atol=1e-4, rtol=0)]
        assert len(matches) == 1, matches
        used.append(matches[0])
    assert 0.0 in used and len(set(used)) >= 4, used
    off = ViewsConfig(**IDENTITY)
    unrotated = build_views("single_view", off, 8, 1)(pixels, torch.Generator().manual_seed(5))["pixel_values"]
    assert torch.equal(unrotated, clean)


@pytest.mark.parametrize("kind", ["single_view", "multi_view"])
def test_rotation_comes_after_the_crop_and_flip(kind):
    """Probability 1 and one angle: each view is the unrotated view (same seed, same crop and flip draws) turned once."""
    base = dict(IDENTITY, crop_scale=(0.5, 1.0), flip_prob=0.5)
    pixels = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    plain = build_views(kind, ViewsConfig(**base), 8, 1)(pixels, torch.Generator().manual_seed(2))["pixel_values"]
    turned = build_views(kind, ViewsConfig(**base, rotation_prob=1.0, rotation_degrees=(90.0,)), 8, 1)(
        pixels, torch.Generator().manual_seed(2))["pixel_values"]
    assert turned.shape == plain.shape
    for view, reference in zip(turned.reshape(-1, 1, 8, 8), plain.reshape(-1, 1, 8, 8)):
        assert torch.equal(view, naive_quarter_turn(reference))


def test_bad_rotation_settings_and_sizes_are_refused():
    with pytest.raises(RecipeError, match="rotation_prob"):
        ViewsConfig(rotation_prob=1.5)
    with pytest.raises(RecipeError, match="rotation_degrees"):
        ViewsConfig(rotation_degrees=())
    with pytest.raises(RecipeError, match="rotation_degrees"):
        ViewsConfig(rotation_degrees=(90.0, float("nan")))
    with pytest.raises(ValueError, match=r"square images, got 8x10"):
        rotate(torch.zeros(2, 1, 8, 10), torch.tensor([90.0, 0.0]))
