"""Batched image operations with explicit per-sample parameters (no randomness here).

Every function takes float images ``(N, C, H, W)`` in ``[0, 1]`` (``C`` is 1 or 3) on any device
and per-sample parameter tensors of length ``N`` on the same device, and returns new images of
the same dtype. Keeping the randomness out of these functions lets the tests compare each one
with a per-image reference (PIL, ``colorsys``, a direct 2-D convolution) for known parameters,
and lets :mod:`hfssl.views.generators` draw all parameters from one ``torch.Generator``.

The photometric operations follow torchvision's definitions (which SimCLR and BYOL use):
brightness, contrast and saturation are blends with black, the mean grey level and the grey image
(clamped to ``[0, 1]``), hue is a rotation of the HSV hue channel, grey is ITU-R 601 luma.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights, as PIL's "L" conversion and torchvision's rgb_to_grayscale.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Operation codes of :func:`color_jitter`'s ``order``.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    """``(N,)`` -> ``(N, 1, 1, 1)`` so that one value scales one image."""
    return values.reshape(-1, 1, 1, 1)


def _crop_axis(start: torch.Tensor, length: torch.Tensor, size: int, extent: int, flip: torch.Tensor | None) -> torch.Tensor:
    """Normalised sampling coordinates ``(N, size)`` along one axis for grid_sample.

    Output pixel ``u`` of a crop ``[start, start + length)`` resized to ``size`` samples the
    source at ``start + (u + 0.5) * length / size - 0.5`` (pixel centres, as ``interpolate`` with
    ``align_corners=False`` and PIL). Clamping to the crop keeps its border pixels from blending
    with pixels outside it, so the result equals "slice the crop, then resize it" exactly.
    """
    positions = torch.arange(size, device=start.device, dtype=torch.float32)
    if flip is not None:
        # A horizontal flip reads the output columns right to left: folded into the same grid.
        positions = torch.where(flip[:, None], size - 1 - positions, positions)
    start = start.to(torch.float32)[:, None]
    length = length.to(torch.float32)[:, None]
    source = start + (positions + 0.5) * length / size - 0.5
    source = torch.minimum(torch.maximum(source, start), start + length - 1)
    return (2 * source + 1) / extent - 1  # pixel index -> [-1, 1] (align_corners=False)


def resized_crop(
    images: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    height: torch.Tensor,
    width: torch.Tensor,
    size: int,
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop a box per image, resize it to ``size x size`` (bilinear) and optionally flip it.

    One batched sampling grid and one ``grid_sample`` call for the whole batch. The result equals
    slicing ``images[n, :, top:top+height, left:left+width]`` and resizing it with
    ``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``: exact for crops that
    are enlarged (the usual case, crop <= image); shrinking crops are not low-pass filtered first,
    as torchvision's ``RandomResizedCrop(antialias=False)``.

    Args:
        images: ``(N, C, H, W)`` float.
        top, left, height, width: ``(N,)`` integer boxes inside the image.
        size: output side ``S``.
        flip: ``(N,)`` bool, mirror the crop left-right.

    Returns:
        ``(N, C, S, S)``.
    """
    num, _, image_height, image_width = images.shape
    grid_x = _crop_axis(left, width, size, image_width, flip)  # (N, S)
    grid_y = _crop_axis(top, height, size, image_height, None)  # (N, S)
    grid = torch.stack(
        (grid_x[:, None, :].expand(num, size, size), grid_y[:, :, None].expand(num, size, size)), dim=-1
    )  # (N, S, S, 2) as (x, y)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B``: ``(N, 3, H, W) -> (N, 1, H, W)``; 1 channel is returned as is."""
    if images.shape[1] == 1:
        return images
    red, green, blue = images.unbind(dim=1)
    return (LUMA_WEIGHTS[0] * red + LUMA_WEIGHTS[1] * green + LUMA_WEIGHTS[2] * blue).unsqueeze(1)


def _blend(images: torch.Tensor, reference: torch.Tensor | float, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(factor * images + (1 - factor) * reference, 0, 1)`` with one factor per image."""
    factor = _per_sample(factor)
    return (factor * images + (1 - factor) * reference).clamp_(0.0, 1.0)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale every pixel by ``factor`` (N,) and clamp: a blend with black."""
    return _blend(images, 0.0, factor)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean grey level (a scalar per image) by ``factor`` (N,)."""
    mean = rgb_to_grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its grey version by ``factor`` (N,); a no-op on 1-channel images."""
    if images.shape[1] == 1:
        return images.clone()
    return _blend(images, rgb_to_grayscale(images), factor)


def adjust_hue(images: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of every pixel by ``delta`` (N,) turns, keeping value and saturation.

    Uses the closed form ``channel_n = V - C * clamp(min(k, 4 - k), 0, 1)`` with
    ``k = (n + 6 H) mod 6`` for ``n = 5, 3, 1`` (R, G, B) and chroma ``C = max - min``, so the
    round trip through HSV costs a handful of elementwise passes. Grey pixels (C = 0) stay
    unchanged; 1-channel images are returned unchanged.
    """
    if images.shape[1] == 1:
        return images.clone()
    red, green, blue = images.unbind(dim=1)  # each (N, H, W)
    # Elementwise maxima of the three planes: much faster on CPU than a max-reduction over dim 1.
    maximum = torch.maximum(torch.maximum(red, green), blue)
    minimum = torch.minimum(torch.minimum(red, green), blue)
    chroma = maximum - minimum
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    # Hue in sextants [0, 6), as colorsys/torchvision: which channel is the maximum decides the sector.
    hue = torch.where(
        maximum == red,
        (green - blue) / safe,
        torch.where(maximum == green, 2.0 + (blue - red) / safe, 4.0 + (red - green) / safe),
    )
    hue = torch.remainder(hue + 6.0 * delta.reshape(-1, 1, 1), 6.0)  # (N, H, W)
    sector = torch.tensor([5.0, 3.0, 1.0], device=images.device, dtype=images.dtype).reshape(1, 3, 1, 1)
    k = torch.remainder(sector + hue.unsqueeze(1), 6.0)  # (N, 3, H, W)
    weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maximum.unsqueeze(1) - chroma.unsqueeze(1) * weight


def color_jitter(
    images: torch.Tensor,
    factors: torch.Tensor,
    hue_delta: torch.Tensor,
    order: torch.Tensor,
    hue_indices: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Brightness, contrast, saturation and hue in a per-image order (torchvision's ColorJitter).

    At each of the four steps every image applies its own operation ``order[n, step]``. The three
    blends share one formula, ``clamp(f * x + (1 - f) * reference)`` with reference black, the
    mean grey or the grey image, so one fused pass applies them to the whole batch; hue, the
    expensive one, runs only on the images whose step it is (``hue_indices[step]``).

    Args:
        images: ``(N, C, H, W)`` in ``[0, 1]``.
        factors: ``(N, 3)`` brightness, contrast and saturation factors (1 = unchanged).
        hue_delta: ``(N,)`` hue rotation in turns (0 = unchanged).
        order: ``(N, 4)`` a permutation of ``BRIGHTNESS, CONTRAST, SATURATION, HUE`` per image.
        hue_indices: for each step, the indices of the images with ``order[:, step] == HUE``.
            Computed from ``order`` when omitted (that synchronises a GPU with the host; the
            view generators pass them precomputed).

    Returns:
        ``(N, C, H, W)``.
    """
    if hue_indices is None:
        hue_indices = [torch.nonzero(order[:, step] == HUE).flatten() for step in range(4)]
    for step in range(4):
        operation = order[:, step]
        # Factor 1 for the images doing hue at this step: the blend leaves them unchanged.
        factor = factors.gather(1, operation.clamp(max=2)[:, None]).squeeze(1)
        factor = _per_sample(torch.where(operation == HUE, torch.ones_like(factor), factor))
        grey = rgb_to_grayscale(images)
        mean = grey.mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
        # (1 - f) * reference as (1 - f) * [is_saturation * grey + is_contrast * mean]; 0 for brightness.
        grey_weight = (1 - factor) * _per_sample(operation == SATURATION)
        mean_weight = (1 - factor) * _per_sample(operation == CONTRAST)
        offset = torch.addcmul(mean * mean_weight, grey, grey_weight)  # (N, 1, H, W)
        blended = torch.addcmul(offset, images, factor).clamp_(0.0, 1.0)
        indices = hue_indices[step]
        if images.shape[1] == 3 and indices.numel() > 0:
            rotated = adjust_hue(images.index_select(0, indices), hue_delta.index_select(0, indices))
            blended = blended.index_copy_(0, indices, rotated)
        images = blended
    return images


def gaussian_kernel_size(image_size: int) -> int:
    """SimCLR's blur kernel: 10 % of the image side, made odd (224 -> 23, 32 -> 3), at least 3."""
    return max(3, 2 * (int(0.1 * image_size) // 2) + 1)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one ``sigma`` (N,) per image, reflect padding.

    Each image's 1-D kernel ``exp(-t^2 / (2 sigma^2))``, ``t = -k//2 .. k//2``, normalised to sum
    1, is applied along rows then columns by grouped convolutions (one group per image channel),
    which equals the 2-D convolution with the outer product of the kernel.
    """
    num, channels, height, width = images.shape
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(offsets[None, :] ** 2) / (2 * sigma.to(images.dtype)[:, None] ** 2))  # (N, k)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel[:, None, :].expand(num, channels, kernel_size).reshape(num * channels, kernel_size)  # one per group
    flat = images.reshape(1, num * channels, height, width)
    flat = F.pad(flat, (radius, radius, 0, 0), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=num * channels)
    flat = F.pad(flat, (0, 0, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=num * channels)
    return flat.reshape(num, channels, height, width)


def solarize(images: torch.Tensor, threshold: torch.Tensor | float = 0.5) -> torch.Tensor:
    """Invert the pixels at or above ``threshold``: ``x < t ? x : 1 - x`` (BYOL, appendix B).

    ``threshold`` is a float or one value per image ``(N,)``; a threshold above 1 leaves an image
    unchanged, which is how the view generators skip the images that are not solarized.
    """
    if isinstance(threshold, torch.Tensor):
        threshold = _per_sample(threshold.to(images.dtype))
    return torch.where(images >= threshold, 1.0 - images, images)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel; ``mean``/``std`` are ``(C,)`` tensors."""
    return (images - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)


def check_square(images: torch.Tensor, what: str = "images") -> None:
    """Raise ``ValueError`` unless ``images`` ``(..., H, W)`` are square: a quarter turn of an ``H x W`` image is
    ``W x H``, so rotations by multiples of 90 degrees need ``H == W`` to keep a batch one size."""
    height, width = images.shape[-2:]
    if height != width:
        raise ValueError(
            f"rotating {what} by multiples of 90 degrees needs square images, got {height}x{width} (height x width); "
            "resize or crop them to a square first (data.image_size and views.crop_size give square images)"
        )


def rotate_quarter_turns(images: torch.Tensor, quarter_turns: torch.Tensor) -> torch.Tensor:
    """Rotate image ``n`` of a square batch ``(N, C, S, S)`` by ``quarter_turns[n] * 90`` degrees counter-clockwise.

    Exact (pixels are moved, not resampled), as ``torch.rot90(image, k, dims=(-2, -1))`` per image: every
    pixel of the batch is turned three times and the right one selected, which keeps the per-sample turns on
    the device (no host synchronisation) at the cost of three copies of the batch.

    Args:
        images: ``(N, C, S, S)``, any dtype.
        quarter_turns: ``(N,)`` integers; taken modulo 4 (-1 is 270 degrees).
    """
    check_square(images)
    turns = torch.remainder(quarter_turns.long(), 4).reshape(-1, 1, 1, 1)
    result = images.clone()
    for k in (1, 2, 3):
        result = torch.where(turns == k, torch.rot90(images, k, dims=(-2, -1)), result)
    return result


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate image ``n`` of a square batch ``(N, C, S, S)`` by ``degrees[n]`` counter-clockwise about its centre.

    The nearest multiple of 90 degrees is applied exactly (:func:`rotate_quarter_turns`), the rest (at most
    45 degrees either way) by bilinear resampling of the inverse-rotated pixel centres (``align_corners=False``),
    with zeros (black) where the source falls outside the image, as torchvision's ``RandomRotation`` with
    ``fill=0``. Images whose angle is a multiple of 90 are never resampled.

    Args:
        images: ``(N, C, S, S)`` float.
        degrees: ``(N,)`` float angles.
    """
    check_square(images)
    quarter_turns = torch.round(degrees / 90.0)
    residual = degrees - 90.0 * quarter_turns  # (N,) in [-45, 45]
    images = rotate_quarter_turns(images, quarter_turns.long())
    radians = torch.deg2rad(residual.to(torch.float32))
    cos, sin = torch.cos(radians), torch.sin(radians)
    # affine_grid maps output to input coordinates: a counter-clockwise turn of the picture (y pointing down)
    # samples the input at [[cos, -sin], [sin, cos]] @ (x, y). Square images: x and y share one scale.
    zeros = torch.zeros_like(cos)
    theta = torch.stack((torch.stack((cos, -sin, zeros), dim=1), torch.stack((sin, cos, zeros), dim=1)), dim=1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)  # (N, S, S, 2)
    turned = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.where((residual != 0).reshape(-1, 1, 1, 1), turned, images)
