"""The relative-position task of a batch (Doersch et al. 2015, sec. 3): the centre patch of a 3x3 grid, one
of its eight neighbours and the neighbour's index, made on the device from normalised images.

The training input builder (:class:`RelativePatchInputs`) and the held-out pretext accuracy
(:meth:`RelativePatchForPreTraining.get_pretext_predictions`) both call :func:`make_patch_pairs`.

Labels: neighbour ``k`` in ``0..7`` is grid cell :data:`NEIGHBOUR_CELLS` ``[k]`` (row-major cells, the centre
4 left out): 0 top-left, 1 top, 2 top-right, 3 left, 4 right, 5 bottom-left, 6 bottom, 7 bottom-right.

Draws from the generator, in this order (a trick that is off draws nothing):

1. the labels, ``torch.randint(8, (B,))``;
2. the jitter of every cell (:func:`hfssl.views.grid.sample_tile_positions`, ``(B, 9, 2)``);
3. downsampling: ``torch.rand((B, 2))`` (a patch is shrunk when below ``downsample_prob``);
4. colour dropping (3-channel images only): the kept channel ``torch.randint(3, (B, 2))`` when two are
   dropped, the dropped one when one is; then, for ``noise``, ``torch.randn((B, 2, 3, s, s))``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hfssl.models.relative_patch.configuration_relative_patch import RelativePatchConfig
from hfssl.views.grid import extract_tiles, full_precision, normalized_pixels, sample_tile_positions

CENTRE_CELL = 4
NEIGHBOUR_CELLS = (0, 1, 2, 3, 5, 6, 7, 8)
#: Standard deviation of the noise in a dropped channel, relative to the kept channels' (Doersch et al. 2015, sec. 3.1).
NOISE_SCALE = 0.01


def make_patch_pairs(images: torch.Tensor, config: RelativePatchConfig,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and neighbour patches and the neighbour's index.

    Args:
        images: normalised square images ``(B, C, S, S)`` on the generator's device.
        config: the layout and the anti-shortcut switches.
        generator: the source of every random number (see the module's draw order).

    Returns:
        ``patches (B, 2, C, s, s)`` (centre first) and ``labels (B,)`` int64 in ``[0, 8)``.
    """
    batch, channels, size = images.shape[0], images.shape[1], images.shape[-1]
    labels = torch.randint(len(NEIGHBOUR_CELLS), (batch,), generator=generator, device=images.device)
    positions = sample_tile_positions(config.layout, batch, size, generator)  # (B, 9, 2)
    cells = torch.tensor(NEIGHBOUR_CELLS, device=images.device)[labels]  # (B,)
    centre = positions[:, CENTRE_CELL]  # (B, 2)
    neighbour = positions[torch.arange(batch, device=images.device), cells]  # (B, 2)
    patches = extract_tiles(images, torch.stack([centre, neighbour], dim=1), config.patch_size)  # (B, 2, C, s, s)
    if config.downsample_prob > 0:
        shrink = torch.rand((batch, 2), generator=generator, device=images.device) < config.downsample_prob
        patches = torch.where(shrink[:, :, None, None, None], downsample(patches, config.downsample_factor), patches)
    if config.color_drop_channels and channels == 3:
        patches = drop_colors(patches, config.color_drop_channels, config.color_drop_fill, generator)
    return patches, labels


def downsample(patches: torch.Tensor, factor: int) -> torch.Tensor:
    """Shrink ``(..., C, s, s)`` patches to ``s // factor`` (area average) and blow them back up to ``s``
    (bilinear): what remains is the coarse image."""
    shape = patches.shape
    flat = patches.reshape(-1, *shape[-3:])
    small = F.interpolate(flat, size=max(1, shape[-1] // factor), mode="area")
    return F.interpolate(small, size=shape[-2:], mode="bilinear", align_corners=False).reshape(shape)


def drop_colors(patches: torch.Tensor, count: int, fill: str, generator: torch.Generator) -> torch.Tensor:
    """Drop ``count`` (1 or 2) random channels of each RGB patch ``(B, 2, 3, s, s)``, replaced by ``fill``
    (``noise``: Gaussian with :data:`NOISE_SCALE` of the kept channels' standard deviation; ``zero``)."""
    batch, pair = patches.shape[:2]
    choice = torch.randint(3, (batch, pair), generator=generator, device=patches.device)
    one_hot = F.one_hot(choice, 3).bool()[:, :, :, None, None]  # (B, 2, 3, 1, 1)
    dropped = ~one_hot if count == 2 else one_hot  # two dropped: all but the chosen one; one: the chosen one
    if fill == "zero":
        replacement = torch.zeros_like(patches)
    else:
        kept = torch.where(dropped, torch.nan, patches)
        spread = torch.sqrt(torch.nanmean((kept - torch.nanmean(kept, dim=(2, 3, 4), keepdim=True)) ** 2,
                                          dim=(2, 3, 4), keepdim=True))  # (B, 2, 1, 1, 1)
        noise = torch.randn(patches.shape, generator=generator, device=patches.device)
        replacement = noise * NOISE_SCALE * spread
    return torch.where(dropped, replacement, patches)


class RelativePatchInputs:
    """``make_inputs(batch, generator)``: ``{"pixel_values": (B, 2, C, s, s), "labels": (B,)}`` from the uint8
    batch, normalised with the recipe's ``views.mean`` / ``views.std`` before the patches are cut."""

    def __init__(self, recipe: Any) -> None:
        self.config = RelativePatchConfig(**recipe.model)
        self.mean = torch.tensor(tuple(recipe.views.mean), dtype=torch.float32).reshape(1, -1, 1, 1)
        self.std = torch.tensor(tuple(recipe.views.std), dtype=torch.float32).reshape(1, -1, 1, 1)

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        images = normalized_pixels(batch, generator, self.mean, self.std)
        with full_precision(images.device):
            patches, labels = make_patch_pairs(images, self.config, generator)
        return {"pixel_values": patches, "labels": labels}
