"""Each batched view operation against a naive per-image reference for known parameters."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hfssl.views import functional

LUMA = np.array([0.299, 0.587, 0.114])


def _images(num: int = 6, channels: int = 3, height: int = 12, width: int = 12, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((num, channels, height, width), generator=generator)


def _long(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


# --- random resized crop + flip -------------------------------------------------------------

CROPS = [  # (top, left, height, width) in a 12 x 16 image: enlarged, shrunk, thin, full, corner
    (0, 0, 12, 16),
    (2, 3, 5, 7),
    (0, 9, 12, 7),
    (4, 0, 3, 16),
    (11, 15, 1, 1),
    (1, 1, 10, 2),
]


@pytest.mark.parametrize("size", [8, 20])
@pytest.mark.parametrize("flip", [False, True])
def test_resized_crop_equals_slice_then_resize(size: int, flip: bool) -> None:
    images = _images(num=len(CROPS), height=12, width=16)
    top, left, height, width = (_long(list(column)) for column in zip(*CROPS))
    flips = torch.full((len(CROPS),), flip)
    output = functional.resized_crop(images, top, left, height, width, size, flips)
    assert output.shape == (len(CROPS), 3, size, size)
    for index, (t, l, h, w) in enumerate(CROPS):
        crop = images[index : index + 1, :, t : t + h, l : l + w]
        expected = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=False)[0]
        if flip:
            expected = expected.flip(-1)
        torch.testing.assert_close(output[index], expected, atol=2e-5, rtol=0)


def test_resized_crop_matches_pil_bilinear_for_enlarged_crops() -> None:
    images = _images(num=3, channels=1, height=16, width=16)
    boxes = [(3, 2, 8, 6), (0, 0, 16, 16), (5, 9, 7, 7)]
    top, left, height, width = (_long(list(column)) for column in zip(*boxes))
    output = functional.resized_crop(images, top, left, height, width, 16)
    for index, (t, l, h, w) in enumerate(boxes):
        crop = images[index, 0, t : t + h, l : l + w].numpy()
        expected = np.asarray(Image.fromarray(crop, mode="F").resize((16, 16), Image.BILINEAR))
        np.testing.assert_allclose(output[index, 0].numpy(), expected, atol=1e-5)


def test_full_crop_is_identity_and_flip_mirrors() -> None:
    images = _images(num=4, height=10, width=10)
    full = _long([0] * 4), _long([0] * 4), _long([10] * 4), _long([10] * 4)
    flips = torch.tensor([False, True, False, True])
    output = functional.resized_crop(images, *full, 10, flips)
    torch.testing.assert_close(output[~flips], images[~flips], atol=1e-6, rtol=0)
    torch.testing.assert_close(output[flips], images[flips].flip(-1), atol=1e-6, rtol=0)


# --- colour -----------------------------------------------------------------------------------


def _np_grey(image: np.ndarray) -> np.ndarray:
    return np.tensordot(LUMA, image, axes=(0, 0))[None]  # (1, H, W)


def _np_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(image * factor, 0, 1)


def _np_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    mean = _np_grey(image).mean() if image.shape[0] == 3 else image.mean()
    return np.clip(factor * image + (1 - factor) * mean, 0, 1)


def _np_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    if image.shape[0] == 1:
        return image
    return np.clip(factor * image + (1 - factor) * _np_grey(image), 0, 1)


def _np_hue(image: np.ndarray, delta: float) -> np.ndarray:
    if image.shape[0] == 1:
        return image
    output = np.empty_like(image)
    for row in range(image.shape[1]):
        for column in range(image.shape[2]):
            hue, saturation, value = colorsys.rgb_to_hsv(*image[:, row, column])
            output[:, row, column] = colorsys.hsv_to_rgb((hue + delta) % 1.0, saturation, value)
    return output


def test_grayscale_uses_luma_weights() -> None:
    images = _images()
    grey = functional.rgb_to_grayscale(images)
    expected = np.stack([_np_grey(image) for image in images.double().numpy()])
    np.testing.assert_allclose(grey.numpy(), expected, atol=1e-6)
    one_channel = images[:, :1]
    assert torch.equal(functional.rgb_to_grayscale(one_channel), one_channel)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "operation, reference",
    [
        (functional.adjust_brightness, _np_brightness),
        (functional.adjust_contrast, _np_contrast),
        (functional.adjust_saturation, _np_saturation),
    ],
)
def test_blend_operations_match_closed_forms(operation, reference, channels: int) -> None:
    images = _images(channels=channels)
    factors = torch.tensor([0.0, 0.5, 0.6, 1.0, 1.3, 2.5])
    output = operation(images, factors)
    for index, image in enumerate(images.double().numpy()):
        np.testing.assert_allclose(output[index].numpy(), reference(image, float(factors[index])), atol=1e-6)


def test_hue_matches_colorsys() -> None:
    images = _images(num=5, height=6, width=7)
    images[0, :, :2] = 0.4  # grey pixels: no hue, must stay unchanged
    images[1, 0] = images[1, 1]  # ties between the maximal channels
    delta = torch.tensor([0.0, 0.1, -0.1, 0.5, -0.37])
    output = functional.adjust_hue(images, delta)
    for index, image in enumerate(images.double().numpy()):
        np.testing.assert_allclose(output[index].numpy(), _np_hue(image, float(delta[index])), atol=2e-6)
    one_channel = images[:, :1]
    assert torch.equal(functional.adjust_hue(one_channel, delta), one_channel)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("precomputed_indices", [False, True])
def test_color_jitter_applies_each_images_own_order(channels: int, precomputed_indices: bool) -> None:
    generator = torch.Generator().manual_seed(3)
    num = 8
    images = _images(num=num, channels=channels, height=5, width=6)
    factors = 0.5 + torch.rand((num, 3), generator=generator)
    hue_delta = torch.rand(num, generator=generator) - 0.5
    order = torch.stack([torch.randperm(4, generator=generator) for _ in range(num)])
    indices = [torch.nonzero(order[:, step] == functional.HUE).flatten() for step in range(4)]
    output = functional.color_jitter(images, factors, hue_delta, order, indices if precomputed_indices else None)
    for index, image in enumerate(images.double().numpy()):
        expected = image
        for operation in order[index].tolist():
            if operation == functional.HUE:
                expected = _np_hue(expected, float(hue_delta[index]))
            else:
                reference = (_np_brightness, _np_contrast, _np_saturation)[operation]
                expected = reference(expected, float(factors[index, operation]))
        np.testing.assert_allclose(output[index].numpy(), expected, atol=1e-5)


# --- blur, solarize ---------------------------------------------------------------------------


@pytest.mark.parametrize("size, expected", [(8, 3), (16, 3), (28, 3), (32, 3), (96, 9), (224, 23)])
def test_gaussian_kernel_is_ten_percent_of_the_side_and_odd(size: int, expected: int) -> None:
    assert functional.gaussian_kernel_size(size) == expected


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_gaussian_blur_equals_direct_2d_convolution(kernel_size: int) -> None:
    images = _images(num=3, height=11, width=9)
    sigma = torch.tensor([0.1, 0.8, 2.0])
    output = functional.gaussian_blur(images, sigma, kernel_size)
    radius = kernel_size // 2
    offsets = np.arange(-radius, radius + 1)
    for index, image in enumerate(images.double().numpy()):
        kernel_1d = np.exp(-(offsets**2) / (2 * float(sigma[index]) ** 2))
        kernel = np.outer(kernel_1d, kernel_1d)
        kernel /= kernel.sum()
        padded = np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
        expected = np.zeros_like(image)
        for row in range(image.shape[1]):
            for column in range(image.shape[2]):
                window = padded[:, row : row + kernel_size, column : column + kernel_size]
                expected[:, row, column] = (window * kernel).sum(axis=(1, 2))
        np.testing.assert_allclose(output[index].numpy(), expected, atol=1e-6)


def test_gaussian_blur_keeps_constant_images() -> None:
    images = torch.full((2, 3, 8, 8), 0.3)
    output = functional.gaussian_blur(images, torch.tensor([0.5, 2.0]), 5)
    torch.testing.assert_close(output, images)


def test_solarize_inverts_at_and_above_threshold() -> None:
    images = torch.tensor([0.0, 0.2, 0.4999, 0.5, 0.75, 1.0]).reshape(1, 1, 1, 6).repeat(2, 1, 1, 1)
    expected = torch.tensor([0.0, 0.2, 0.4999, 0.5, 0.25, 0.0])
    torch.testing.assert_close(functional.solarize(images)[0, 0, 0], expected)
    per_image = functional.solarize(images, torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(per_image[0, 0, 0], expected)
    assert torch.equal(per_image[1], images[1])
