"""CIE Lab (hfssl.views.lab): the conversion against the CIE 1976 formulas written out per pixel in float64,
known colours, the round trip within ROUND_TRIP_TOLERANCE, and the normalisations and the 8-bit encoding that
the exported encoders' image processors invert exactly."""

from __future__ import annotations

import math

import pytest
import torch

from hfssl.views.lab import (AB_SCALE, LAB_PROCESSOR_MEAN, LAB_PROCESSOR_STD, ROUND_TRIP_TOLERANCE, denormalise_lab,
                             lab_to_8bit, lab_to_rgb, normalise_lab, rgb_to_lab, rgb_to_normalised_lab)
from lab_reference import naive_lab

def _random_rgb(seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(seed))


def test_rgb_to_lab_equals_the_cie_formulas_per_pixel():
    rgb = _random_rgb()
    lab = rgb_to_lab(rgb)
    for index in [(0, 0, 0), (0, 4, 6), (1, 2, 3), (1, 0, 5)]:
        n, i, j = index
        expected = naive_lab(*rgb[n, :, i, j].double().tolist())
        assert lab[n, :, i, j].tolist() == pytest.approx(expected, abs=2e-3), index


@pytest.mark.parametrize("rgb, lab", [((1, 1, 1), (100, 0, 0)), ((0, 0, 0), (0, 0, 0)),
                                      ((1, 0, 0), (53.24, 80.09, 67.20)), ((0, 0, 1), (32.30, 79.19, -107.86))])
def test_known_colours(rgb, lab):
    pixel = torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1)
    assert rgb_to_lab(pixel).flatten().tolist() == pytest.approx(lab, abs=0.02)


def test_round_trip_within_the_stated_tolerance_over_the_whole_cube():
    """Random colours and every corner and edge midpoint of the RGB cube: back within ROUND_TRIP_TOLERANCE."""
    grid = torch.tensor([0.0, 0.5, 1.0])
    corners = torch.cartesian_prod(grid, grid, grid).T.reshape(1, 3, 27, 1)
    for rgb in (_random_rgb(1), corners):
        error = (lab_to_rgb(rgb_to_lab(rgb)) - rgb).abs().max().item()
        assert error < ROUND_TRIP_TOLERANCE, error
    # The sRGB gamut stays inside the ab scale's range that the networks see (|a|, |b| / 110 about 1).
    lab = rgb_to_lab(corners)
    assert lab[:, 1:].abs().max() / AB_SCALE < 1.0


def test_normalisations_invert_and_the_8bit_encoding_matches_the_processor_constants():
    lab = rgb_to_lab(_random_rgb(2))
    lightness, color = normalise_lab(lab)
    assert lightness.shape == (2, 1, 5, 7) and color.shape == (2, 2, 5, 7)
    torch.testing.assert_close(denormalise_lab(lightness, color), lab)
    assert lightness.min() >= -1 and lightness.max() <= 1
    # An image processor rescaling by 1/255 and normalising with LAB_PROCESSOR_MEAN / _STD gives normalised Lab.
    encoded = lab_to_8bit(lab) / 255
    mean = torch.tensor(LAB_PROCESSOR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(LAB_PROCESSOR_STD).view(1, 3, 1, 1)
    torch.testing.assert_close((encoded - mean) / std, torch.cat([lightness, color], dim=1), atol=1e-5, rtol=0)
    # Normalised RGB views (the recipe's mean/std) go through the same conversion.
    rgb = _random_rgb(3)
    views = (rgb - 0.5) / 0.25
    light2, color2 = rgb_to_normalised_lab(views, (0.5,) * 3, (0.25,) * 3)
    expected_light, expected_color = normalise_lab(rgb_to_lab(rgb))
    torch.testing.assert_close(light2, expected_light, atol=1e-5, rtol=0)
    torch.testing.assert_close(color2, expected_color, atol=1e-5, rtol=0)
    assert not math.isnan(float(color2.sum()))


def test_grey_or_malformed_inputs_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"data.channels=3"):
        rgb_to_lab(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"Lab images"):
        lab_to_rgb(torch.zeros(3, 4, 4))
