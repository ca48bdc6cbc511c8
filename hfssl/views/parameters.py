"""Random augmentation parameters, drawn per sample from one ``torch.Generator`` on the device.

Nothing here touches the global RNG: every draw takes the caller's generator, so the same seed
gives the same parameters (and views). CPU and CUDA generators produce different streams for the
same seed, so views are reproducible per device type, not across them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hfssl.views.functional import HUE


def uniform(generator: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    """``U[low, high)`` float32 of ``shape`` on the generator's device."""
    return low + (high - low) * torch.rand(shape, generator=generator, device=generator.device)


def bernoulli(generator: torch.Generator, num: int, probability: torch.Tensor | float) -> torch.Tensor:
    """``(num,)`` bool, each True with ``probability`` (a float or a per-sample tensor)."""
    return torch.rand((num,), generator=generator, device=generator.device) < probability


@dataclass
class CropBoxes:
    """Integer crop boxes ``(N,)`` each: ``top``, ``left``, ``height``, ``width`` (int64)."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor


def crop_boxes_from_uniforms(
    area_uniform: torch.Tensor,
    ratio_uniform: torch.Tensor,
    top_uniform: torch.Tensor,
    left_uniform: torch.Tensor,
    image_height: int,
    image_width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> CropBoxes:
    """torchvision's ``RandomResizedCrop.get_params`` for a batch, from given uniforms in [0, 1).

    For each sample, attempt ``a`` (of ``A``, 10 in torchvision) proposes an area fraction
    ``U(scale)`` and a log-uniform aspect ratio in ``ratio``, rounds ``w = sqrt(area * ratio)``
    and ``h = sqrt(area / ratio)`` to integers, and is kept if it fits. The first fitting attempt
    wins; its position is uniform over the valid offsets. A sample with no fitting attempt falls
    back to the central crop with the aspect ratio clamped to ``ratio``.

    Args:
        area_uniform, ratio_uniform: ``(N, A)`` uniforms for the attempts.
        top_uniform, left_uniform: ``(N,)`` uniforms for the offsets.
        image_height, image_width: source size.
        scale: area fraction range; ratio: width / height range.

    Returns:
        :class:`CropBoxes` of ``(N,)`` int64 tensors.
    """
    # float64 as torchvision's Python floats (MPS has no float64: float32 there).
    dtype = torch.float32 if area_uniform.device.type == "mps" else torch.float64
    area = image_height * image_width
    target_area = area * (scale[0] + (scale[1] - scale[0]) * area_uniform.to(dtype))
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * ratio_uniform.to(dtype))
    # torch.round is round-half-to-even, as Python's round() in torchvision.
    width = torch.round(torch.sqrt(target_area * aspect)).long()  # (N, A)
    height = torch.round(torch.sqrt(target_area / aspect)).long()
    fits = (width > 0) & (width <= image_width) & (height > 0) & (height <= image_height)
    first = fits.long().argmax(dim=1, keepdim=True)  # first fitting attempt (0 when none fits)
    any_fits = fits.any(dim=1)
    width = width.gather(1, first).squeeze(1)
    height = height.gather(1, first).squeeze(1)

    # Fallback: the central crop, aspect clamped to the ratio range.
    in_ratio = image_width / image_height
    if in_ratio < min(ratio):
        fallback_width, fallback_height = image_width, int(round(image_width / min(ratio)))
    elif in_ratio > max(ratio):
        fallback_height, fallback_width = image_height, int(round(image_height * max(ratio)))
    else:
        fallback_width, fallback_height = image_width, image_height
    width = torch.where(any_fits, width, torch.full_like(width, fallback_width))
    height = torch.where(any_fits, height, torch.full_like(height, fallback_height))

    # Uniform integer offsets in [0, H - h]; the clamp guards u * n rounding up to n in float32.
    top = torch.minimum((top_uniform.to(dtype) * (image_height - height + 1)).floor().long(), image_height - height)
    left = torch.minimum((left_uniform.to(dtype) * (image_width - width + 1)).floor().long(), image_width - width)
    top = torch.where(any_fits, top, (image_height - height) // 2)
    left = torch.where(any_fits, left, (image_width - width) // 2)
    return CropBoxes(top=top, left=left, height=height, width=width)


def sample_crop_boxes(
    generator: torch.Generator,
    num: int,
    image_height: int,
    image_width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    attempts: int = 10,
) -> CropBoxes:
    """Draw ``num`` random-resized-crop boxes (see :func:`crop_boxes_from_uniforms`)."""
    device = generator.device
    area_uniform = torch.rand((num, attempts), generator=generator, device=device)
    ratio_uniform = torch.rand((num, attempts), generator=generator, device=device)
    offsets = torch.rand((2, num), generator=generator, device=device)
    return crop_boxes_from_uniforms(
        area_uniform, ratio_uniform, offsets[0], offsets[1], image_height, image_width, scale, ratio
    )


@dataclass
class ColorJitterParameters:
    """Per-sample colour jitter: see :func:`hfssl.views.functional.color_jitter`.

    ``factors (N, 3)``, ``hue_delta (N,)``, ``order (N, 4)`` and ``hue_indices`` (four index
    tensors, the samples doing hue at each step).
    """

    factors: torch.Tensor
    hue_delta: torch.Tensor
    order: torch.Tensor
    hue_indices: list[torch.Tensor]


def _factor_range(strength: float) -> tuple[float, float]:
    """torchvision's ColorJitter range for brightness/contrast/saturation: ``[max(0, 1 - s), 1 + s]``."""
    return max(0.0, 1.0 - strength), 1.0 + strength


def sample_color_jitter(
    generator: torch.Generator, num: int, brightness: float, contrast: float, saturation: float, hue: float
) -> ColorJitterParameters:
    """Draw factors and a uniformly random order of the four operations for each of ``num`` samples.

    The order is built so that the images doing hue at each step are known without reading the
    device: a random permutation of the batch deals the hue slot round-robin (image ``perm[i]``
    does hue at step ``i % 4``), and the three blends fill the other slots in an independent
    random order. Each image's order is therefore uniform over all 24 permutations, as in
    torchvision's ColorJitter and BYOL (appendix B); only the number of images per hue slot is
    balanced across the batch instead of multinomial.
    """
    device = generator.device
    columns = []
    for strength in (brightness, contrast, saturation):
        low, high = _factor_range(strength)
        columns.append(uniform(generator, (num,), low, high))
    factors = torch.stack(columns, dim=1)  # (N, 3)
    hue_delta = uniform(generator, (num,), -hue, hue)
    permutation = torch.randperm(num, generator=generator, device=device)
    hue_slot = torch.empty(num, dtype=torch.long, device=device)
    hue_slot[permutation] = torch.arange(num, device=device) % 4
    blend_order = torch.rand((num, 3), generator=generator, device=device).argsort(dim=1)  # (N, 3)
    steps = torch.arange(4, device=device)[None, :]  # (1, 4)
    # Step s takes blend number s - (s > slot) for the steps around the hue slot.
    blend_position = (steps - (steps > hue_slot[:, None]).long()).clamp(max=2)
    order = torch.where(steps == hue_slot[:, None], HUE, blend_order.gather(1, blend_position))
    hue_indices = [permutation[step::4] for step in range(4)]
    return ColorJitterParameters(factors=factors, hue_delta=hue_delta, order=order, hue_indices=hue_indices)
