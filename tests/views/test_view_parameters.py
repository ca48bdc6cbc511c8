"""Random parameters: torchvision's crop semantics, colour-jitter orders, seeding."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from hfssl.views.functional import HUE
from hfssl.views.parameters import crop_boxes_from_uniforms, sample_color_jitter, sample_crop_boxes


def _torchvision_get_params(area_u, ratio_u, top_u, left_u, height, width, scale, ratio):
    """RandomResizedCrop.get_params written per image as torchvision does, fed the same uniforms."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for attempt in range(len(area_u)):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * float(area_u[attempt]))
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * float(ratio_u[attempt]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(math.floor(float(top_u) * (height - h + 1)))
            j = int(math.floor(float(left_u) * (width - w + 1)))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize(
    "height, width, scale, ratio",
    [
        (32, 32, (0.2, 1.0), (3 / 4, 4 / 3)),
        (28, 28, (0.08, 1.0), (3 / 4, 4 / 3)),
        (20, 36, (0.05, 0.2), (3 / 4, 4 / 3)),  # non-square, multi-crop local scale
        (16, 16, (0.9, 1.0), (0.3, 3.0)),  # many attempts do not fit
        (16, 16, (0.5, 1.0), (5.0, 8.0)),  # fallback: central crop with ratio clamped to 5
        (12, 40, (0.5, 1.0), (0.5, 1.0)),  # fallback for a wide image: ratio clamped to 1
    ],
)
def test_crop_boxes_follow_torchvision_get_params(height: int, width: int, scale, ratio) -> None:
    generator = torch.Generator().manual_seed(0)
    num = 400
    area_u, ratio_u = torch.rand((num, 10), generator=generator), torch.rand((num, 10), generator=generator)
    top_u, left_u = torch.rand(num, generator=generator), torch.rand(num, generator=generator)
    boxes = crop_boxes_from_uniforms(area_u, ratio_u, top_u, left_u, height, width, scale, ratio)
    got = torch.stack([boxes.top, boxes.left, boxes.height, boxes.width], dim=1).tolist()
    expected = [
        list(_torchvision_get_params(area_u[n], ratio_u[n], top_u[n], left_u[n], height, width, scale, ratio))
        for n in range(num)
    ]
    assert got == expected


def test_sampled_boxes_stay_inside_and_respect_scale_and_ratio() -> None:
    generator = torch.Generator().manual_seed(1)
    boxes = sample_crop_boxes(generator, 5000, 32, 32, (0.2, 1.0), (3 / 4, 4 / 3))
    assert (boxes.top >= 0).all() and (boxes.left >= 0).all()
    assert (boxes.top + boxes.height <= 32).all() and (boxes.left + boxes.width <= 32).all()
    fraction = (boxes.height * boxes.width).double() / (32 * 32)
    # Rounding w and h to whole pixels moves the area by at most about one row and column.
    assert fraction.min() >= 0.2 - 2 * 32 / 1024 and fraction.max() <= 1.0
    aspect = boxes.width.double() / boxes.height.double()
    assert aspect.min() >= 0.75 * 0.85 and aspect.max() <= 4 / 3 / 0.85
    # Offsets are uniform over the valid range: both ends are reached.
    assert (boxes.top == 0).any() and (boxes.top == 32 - boxes.height).any()


def test_crop_sampling_is_seeded() -> None:
    def draw(seed: int) -> torch.Tensor:
        boxes = sample_crop_boxes(torch.Generator().manual_seed(seed), 64, 32, 32, (0.2, 1.0), (3 / 4, 4 / 3))
        return torch.stack([boxes.top, boxes.left, boxes.height, boxes.width])

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))


def test_color_jitter_parameters_ranges_and_orders() -> None:
    num = 4000
    parameters = sample_color_jitter(torch.Generator().manual_seed(0), num, 0.4, 0.4, 0.2, 0.1)
    factors = parameters.factors
    for column, strength in enumerate((0.4, 0.4, 0.2)):
        assert factors[:, column].min() >= 1 - strength and factors[:, column].max() <= 1 + strength
        assert factors[:, column].min() < 1 - 0.9 * strength and factors[:, column].max() > 1 + 0.9 * strength
    assert parameters.hue_delta.abs().max() <= 0.1 and parameters.hue_delta.abs().max() > 0.09
    order = parameters.order
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(num, 4))  # each row a permutation
    for step in range(4):
        expected = torch.nonzero(order[:, step] == HUE).flatten()
        assert torch.equal(parameters.hue_indices[step].sort().values, expected)
        # Every operation is equally likely at every step.
        counts = torch.bincount(order[:, step], minlength=4).double() / num
        assert (counts - 0.25).abs().max() < 0.03
    permutations = Counter(tuple(row) for row in order.tolist())
    assert len(permutations) == 24 and min(permutations.values()) > num / 24 * 0.7


def test_zero_strength_gives_identity_factors() -> None:
    parameters = sample_color_jitter(torch.Generator().manual_seed(0), 16, 0.0, 0.0, 0.0, 0.0)
    assert torch.equal(parameters.factors, torch.ones(16, 3))
    assert torch.equal(parameters.hue_delta, torch.zeros(16))
