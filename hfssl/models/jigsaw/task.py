"""The jigsaw puzzle of a batch (Noroozi & Favaro 2016, sec. 3): tiles in a permuted order and the
permutation's index, made on the device from normalised images with the caller's generator.

The training input builder (:class:`JigsawInputs`) and the held-out pretext accuracy
(:meth:`JigsawForPreTraining.get_pretext_predictions`) both call :func:`make_jigsaw_puzzles`, so a fixed
seed gives a fixed task.

Draws from the generator, in this order: the labels ``torch.randint(P, (B,))``, then the tile jitter of
:func:`hfssl.views.grid.sample_tile_positions` (none without jitter).
"""

from __future__ import annotations

from typing import Any

import torch

from hfssl.models.jigsaw.configuration_jigsaw import JigsawConfig
from hfssl.views.grid import GridLayout, full_precision, grid_tiles, normalized_pixels, standardize_tiles


def make_jigsaw_puzzles(images: torch.Tensor, layout: GridLayout, permutations: torch.Tensor,
                        generator: torch.Generator, normalize_tiles: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffled tiles and their labels.

    Args:
        images: normalised square images ``(B, C, S, S)`` on the generator's device.
        layout: the grid (``T = layout.num_cells`` tiles of ``s = layout.tile_size`` px).
        permutations: ``(P, T)`` integer table; permutation ``k`` shows cell ``permutations[k, i]`` at place ``i``.
        generator: the source of every random number (labels, jitter).
        normalize_tiles: each tile to zero mean and unit standard deviation on its own (sec. 3.2).

    Returns:
        ``tiles (B, T, C, s, s)`` where ``tiles[b, i]`` is the tile of cell ``permutations[labels[b], i]``,
        and ``labels (B,)`` int64 in ``[0, P)``.
    """
    batch = images.shape[0]
    permutations = permutations.to(images.device)
    labels = torch.randint(permutations.shape[0], (batch,), generator=generator, device=images.device)
    tiles = grid_tiles(images, layout, generator)  # (B, T, C, s, s), cells row-major
    order = permutations[labels]  # (B, T): the cell shown at each place
    shuffled = tiles.gather(1, order[:, :, None, None, None].expand_as(tiles))
    if normalize_tiles:
        shuffled = standardize_tiles(shuffled)
    return shuffled, labels


class JigsawInputs:
    """``make_inputs(batch, generator)``: ``{"pixel_values": tiles (B, T, C, s, s), "labels": (B,)}`` from
    the uint8 batch, normalised with the recipe's ``views.mean`` / ``views.std`` (the exported
    processor's normalisation) before the tiles are cut, in float32 whatever the step's precision."""

    def __init__(self, recipe: Any) -> None:
        config = JigsawConfig(**recipe.model)
        self.layout = config.layout
        self.permutations = torch.tensor(config.permutations, dtype=torch.int64)
        self.normalize_tiles = config.normalize_tiles
        self.mean = torch.tensor(tuple(recipe.views.mean), dtype=torch.float32).reshape(1, -1, 1, 1)
        self.std = torch.tensor(tuple(recipe.views.std), dtype=torch.float32).reshape(1, -1, 1, 1)

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        images = normalized_pixels(batch, generator, self.mean, self.std)
        with full_precision(images.device):
            tiles, labels = make_jigsaw_puzzles(images, self.layout, self.permutations, generator, self.normalize_tiles)
        return {"pixel_values": tiles, "labels": labels}

