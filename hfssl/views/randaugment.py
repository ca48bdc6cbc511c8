"""RandAugment and Cutout as batched, seeded view operations (FixMatch's strong augmentation).

RandAugment (Cubuk et al. 2020) applies ``N`` operations drawn uniformly from a fixed list to each image.
FixMatch (Sohn et al. 2020, sec. 2.3 and Table 12) uses it as its strong augmentation with a magnitude drawn
at random for every applied operation (instead of one global ``M``), followed by Cutout. The operations and
their ranges here are FixMatch's Table 12, with magnitude ``m`` in ``[0, 1]`` (0: weakest):

========================  =============================================================================
Identity, AutoContrast,   no magnitude (AutoContrast stretches each channel to [0, 1]; Equalize is
Equalize                  torchvision's / PIL's histogram equalisation on 256 grey levels)
Brightness, Color,        enhancement factor ``0.95 - 0.9 m`` in [0.05, 0.95] (PIL's ImageEnhance: a blend
Contrast, Sharpness       with black, the grey image, the mean grey, the 3x3 smoothed image)
Posterize                 keep ``8 - round(4 m)`` bits (4 to 8)
Solarize                  invert the pixels at or above ``1 - m``
Rotate                    ``+-30 m`` degrees
ShearX, ShearY            ``+-0.3 m``
TranslateX, TranslateY    ``+-0.3 m`` of the image side
========================  =============================================================================

Geometric operations fill the uncovered corners with mid-grey (0.5, FixMatch's 128). Cutout (DeVries & Taylor
2017) then replaces a square of side ``cutout_fraction * S`` centred at a uniform position (clipped at the
border) with mid-grey.

Batched without per-image Python loops or host syncs: every round draws, per image, the operation, the
magnitude and the sign from the caller's generator (in that order: three draws of ``N`` values per round,
whatever is chosen), then every photometric operation is computed for the whole batch and selected with
``torch.where``, and the geometric ones are one ``affine_grid`` + ``grid_sample`` (identity for the images
whose operation is not geometric). Images are float ``(N, C, S, S)`` in ``[0, 1]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hfssl.views.functional import rgb_to_grayscale
from hfssl.views.parameters import uniform

__all__ = ["OPERATIONS", "auto_contrast", "cutout", "equalize", "posterize", "randaugment", "sharpness_reference"]

#: FixMatch's RandAugment operations (Table 12), in the order of their codes.
OPERATIONS = ("identity", "auto_contrast", "equalize", "brightness", "color", "contrast", "sharpness",
              "posterize", "solarize", "rotate", "shear_x", "shear_y", "translate_x", "translate_y")
_CODE = {name: code for code, name in enumerate(OPERATIONS)}
#: Fill value of uncovered pixels (geometric operations, Cutout).
GREY = 0.5
MAX_DEGREES = 30.0
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.3


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, 1, 1, 1)


def _blend(images: torch.Tensor, degenerate: torch.Tensor | float, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageEnhance``: ``clamp(degenerate + factor * (images - degenerate), 0, 1)``."""
    return (degenerate + _per_sample(factor) * (images - degenerate)).clamp(0.0, 1.0)


def auto_contrast(images: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image linearly to ``[0, 1]`` (a constant channel is left as it is)."""
    low = images.amin(dim=(2, 3), keepdim=True)
    high = images.amax(dim=(2, 3), keepdim=True)
    span = high - low
    return torch.where(span > 0, (images - low) / span.clamp_min(1e-12), images)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel on 256 grey levels (torchvision's ``equalize`` / PIL's)."""
    batch, channels, height, width = images.shape
    levels = (images * 255.0).round().clamp(0, 255).long().reshape(batch * channels, height * width)
    histogram = torch.zeros(batch * channels, 256, device=images.device, dtype=torch.float32)
    histogram.scatter_add_(1, levels, torch.ones_like(levels, dtype=torch.float32))
    last_level = levels.amax(dim=1, keepdim=True)
    step = torch.div(height * width - histogram.gather(1, last_level), 255, rounding_mode="floor")  # (BC, 1)
    before = histogram.cumsum(dim=1) - histogram  # pixels below each level
    lut = torch.div(before + torch.div(step, 2, rounding_mode="floor"), step.clamp_min(1), rounding_mode="floor")
    mapped = lut.clamp(0, 255).gather(1, levels)
    result = torch.where(step > 0, mapped, levels.float()) / 255.0
    return result.reshape(batch, channels, height, width).to(images.dtype)


def sharpness_reference(images: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1, over 13) on the interior; the border kept."""
    channels = images.shape[1]
    kernel = torch.ones(3, 3, device=images.device, dtype=images.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(channels, 1, 3, 3)
    smoothed = F.conv2d(images, kernel, groups=channels)
    result = images.clone()
    result[:, :, 1:-1, 1:-1] = smoothed
    return result


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the ``bits`` (N,) most significant bits of each 8-bit grey level."""
    levels = (images * 255.0).round().clamp(0, 255)
    bucket = _per_sample(torch.pow(2.0, 8.0 - bits.to(images.dtype)))
    return torch.floor(levels / bucket) * bucket / 255.0


def _photometric(images: torch.Tensor, operation: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Apply each image's photometric operation (geometric and identity images unchanged)."""
    factor = 0.95 - 0.9 * magnitude
    grey = rgb_to_grayscale(images)
    candidates = {
        "auto_contrast": lambda: auto_contrast(images),
        "equalize": lambda: equalize(images),
        "brightness": lambda: _blend(images, 0.0, factor),
        "color": lambda: _blend(images, grey, factor) if images.shape[1] == 3 else images,
        "contrast": lambda: _blend(images, grey.mean(dim=(1, 2, 3), keepdim=True), factor),
        "sharpness": lambda: _blend(images, sharpness_reference(images), factor),
        "posterize": lambda: posterize(images, 8.0 - torch.round(4.0 * magnitude)),
        "solarize": lambda: torch.where(images >= _per_sample(1.0 - magnitude), 1.0 - images, images),
    }
    result = images
    for name, compute in candidates.items():
        result = torch.where(_per_sample(operation == _CODE[name]), compute(), result)
    return result


def _affine(images: torch.Tensor, operation: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Rotate / shear / translate each image whose operation is geometric, in one ``grid_sample``."""
    count = images.shape[0]
    signed = magnitude * sign
    theta = torch.zeros(count, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    radians = signed * (MAX_DEGREES * math.pi / 180.0)
    rotate = operation == _CODE["rotate"]
    theta[:, 0, 0] = torch.where(rotate, torch.cos(radians), theta[:, 0, 0])
    theta[:, 0, 1] = torch.where(rotate, -torch.sin(radians), theta[:, 0, 1])
    theta[:, 1, 0] = torch.where(rotate, torch.sin(radians), theta[:, 1, 0])
    theta[:, 1, 1] = torch.where(rotate, torch.cos(radians), theta[:, 1, 1])
    theta[:, 0, 1] = torch.where(operation == _CODE["shear_x"], signed * MAX_SHEAR, theta[:, 0, 1])
    theta[:, 1, 0] = torch.where(operation == _CODE["shear_y"], signed * MAX_SHEAR, theta[:, 1, 0])
    # Normalised coordinates span 2 per side: a shift of t * S pixels is 2 t.
    theta[:, 0, 2] = torch.where(operation == _CODE["translate_x"], 2.0 * MAX_TRANSLATE * signed, theta[:, 0, 2])
    theta[:, 1, 2] = torch.where(operation == _CODE["translate_y"], 2.0 * MAX_TRANSLATE * signed, theta[:, 1, 2])
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Sampling (x - grey) with zero padding fills the uncovered pixels with grey.
    moved = F.grid_sample(images - GREY, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + GREY
    geometric = operation >= _CODE["rotate"]
    return torch.where(_per_sample(geometric), moved.clamp(0.0, 1.0), images)


def randaugment(images: torch.Tensor, generator: torch.Generator, num_ops: int,
                magnitude: float | None = None) -> torch.Tensor:
    """``num_ops`` rounds of RandAugment on float ``(N, C, S, S)`` images in ``[0, 1]``; see the module docstring.

    Args:
        images: the views after their crop and flip (and colour operations).
        generator: the views' generator (on the images' device).
        num_ops: operations per image (``N``; FixMatch uses 2).
        magnitude: a fixed magnitude in ``[0, 1]`` for every operation (RandAugment's ``M / 30``), or
            ``None`` for one drawn uniformly per operation and image (FixMatch).
    """
    count = images.shape[0]
    device = images.device
    for _ in range(num_ops):
        operation = torch.randint(len(OPERATIONS), (count,), generator=generator, device=device)
        strength = uniform(generator, (count,), 0.0, 1.0)
        if magnitude is not None:
            strength = torch.full_like(strength, float(magnitude))
        sign = torch.where(uniform(generator, (count,), 0.0, 1.0) < 0.5, -1.0, 1.0)
        images = _photometric(images, operation, strength.to(images.dtype))
        images = _affine(images, operation, strength.to(images.dtype), sign.to(images.dtype))
    return images


def cutout(images: torch.Tensor, generator: torch.Generator, fraction: float) -> torch.Tensor:
    """Fill one square of side ``round(fraction * S)`` per image with grey, its centre uniform over the image
    (the square clipped at the border; DeVries & Taylor 2017). Draws the centres' rows, then columns."""
    count, _, height, width = images.shape
    side = max(1, int(round(fraction * min(height, width))))
    rows = uniform(generator, (count,), 0.0, float(height)).floor()
    columns = uniform(generator, (count,), 0.0, float(width)).floor()
    top = (rows - side // 2).reshape(-1, 1)
    left = (columns - side // 2).reshape(-1, 1)
    row_index = torch.arange(height, device=images.device, dtype=top.dtype).reshape(1, -1)
    column_index = torch.arange(width, device=images.device, dtype=left.dtype).reshape(1, -1)
    inside_rows = (row_index >= top) & (row_index < top + side)  # (N, H)
    inside_columns = (column_index >= left) & (column_index < left + side)  # (N, W)
    inside = (inside_rows[:, :, None] & inside_columns[:, None, :]).unsqueeze(1)  # (N, 1, H, W)
    return torch.where(inside, torch.full_like(images, GREY), images)
