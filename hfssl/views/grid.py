"""Tiles on a grid of cells: the inputs of the patch-based pretext tasks, batched on the device.

Jigsaw (Noroozi & Favaro 2016, sec. 3) and relative patch position (Doersch et al. 2015, sec. 3)
both cut an image into a ``grid_size x grid_size`` grid of square cells and take one smaller square
tile inside each cell. The space between neighbouring tiles (the *gap*) and a random shift of each
tile inside its cell (the *jitter*) stop the network from solving the task by continuing lines and
textures across tile borders, the low-level shortcut both papers describe.

Layout (:class:`GridLayout`), all sizes in pixels:

* a cell is ``tile_size + gap`` wide; the grid, ``grid_size`` cells wide, sits in the centre of the
  image (a leftover of ``image_size - grid_size * cell`` pixels is split, the odd pixel after);
* without jitter a tile sits at offset ``gap // 2`` in its cell, so centred tiles are ``gap`` apart;
* with ``jitter = j`` each tile is shifted by a whole number of pixels drawn uniformly from
  ``[-j, j]`` on each axis, independently per tile and per image; ``j <= gap // 2`` keeps every tile
  inside its cell (Noroozi & Favaro take a random 64-px tile in each 75-px cell: ``gap = 11``,
  ``j = 5`` here).

Cells are numbered row-major: cell ``k`` is in row ``k // grid_size``, column ``k % grid_size``.

Randomness: :func:`sample_tile_positions` makes one draw from the caller's generator,
``torch.randint(-j, j + 1, (batch, grid_size ** 2, 2))`` (row shift, column shift), and none when
``jitter == 0``, so a method's input builder is exact on resume and tests can redraw it.
:func:`extract_tiles` cuts tiles at given positions with one gather (no Python loop over images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hfssl.settings import RecipeError
from hfssl.views.generators import _full_precision as full_precision


@dataclass(frozen=True)
class GridLayout:
    """Where the tiles of a ``grid_size x grid_size`` grid lie.

    Args:
        grid_size: cells per side (3 in both papers).
        tile_size: side of a tile.
        gap: pixels between centred neighbouring tiles (a cell is ``tile_size + gap`` wide).
        jitter: largest shift of a tile from its centred place, per axis; at most ``gap // 2``.
    """

    grid_size: int
    tile_size: int
    gap: int
    jitter: int

    def __post_init__(self) -> None:
        for name, low in (("grid_size", 2), ("tile_size", 1), ("gap", 0), ("jitter", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
        if self.jitter > self.gap // 2:
            raise ValueError(f"jitter={self.jitter} would move tiles out of their cells: with gap={self.gap} it can be "
                             f"at most gap // 2 = {self.gap // 2}; lower jitter or raise gap")

    @property
    def num_cells(self) -> int:
        return self.grid_size ** 2

    @property
    def cell_size(self) -> int:
        return self.tile_size + self.gap

    @property
    def extent(self) -> int:
        """Side of the whole grid: the smallest image it fits in."""
        return self.grid_size * self.cell_size

    def origin(self, image_size: int) -> int:
        """Pixel where the centred grid starts (rows and columns alike)."""
        return (image_size - self.extent) // 2

    def centred_positions(self, image_size: int) -> torch.Tensor:
        """Top-left corner ``(num_cells, 2)`` (row, column) of every centred tile, row-major cells."""
        cells = torch.arange(self.num_cells)
        index = torch.stack([cells // self.grid_size, cells % self.grid_size], dim=1)  # (num_cells, 2)
        return self.origin(image_size) + index * self.cell_size + self.gap // 2

    def problem(self, image_size: int, min_tile_size: int = 1) -> str | None:
        """Why this layout does not fit ``image_size`` or a backbone that needs ``min_tile_size``-px
        inputs, with the sizes that work; ``None`` when it fits."""
        problems = []
        if self.tile_size < min_tile_size:
            problems.append(f"{self.tile_size}-px tiles are smaller than the {min_tile_size} px the backbone needs")
        if self.extent > image_size:
            problems.append(f"a {self.grid_size}x{self.grid_size} grid of {self.tile_size}-px tiles with gap {self.gap} "
                            f"needs images of at least {self.extent} px, got {image_size} px")
        if not problems:
            return None
        tile = max(self.tile_size, min_tile_size)
        largest = image_size // self.grid_size - self.gap
        fixes = [f"use images of at least {self.grid_size * (tile + self.gap)} px"]
        if largest >= min_tile_size:
            fixes.append(f"or tiles of {min_tile_size} to {largest} px at this image size and gap")
        return "; ".join(problems) + "; " + " ".join(fixes)

    def check(self, image_size: int, min_tile_size: int = 1) -> None:
        """Raise ``ValueError`` with :meth:`problem` when the layout does not fit."""
        problem = self.problem(image_size, min_tile_size)
        if problem is not None:
            raise ValueError(problem)


def sample_tile_positions(layout: GridLayout, batch: int, image_size: int,
                          generator: torch.Generator | None) -> torch.Tensor:
    """Top-left corners ``(batch, num_cells, 2)`` (row, column) of every cell's tile, jittered.

    One draw ``torch.randint(-jitter, jitter + 1, (batch, num_cells, 2))`` from ``generator`` when
    ``layout.jitter > 0``, none otherwise. The positions are on the generator's device.
    """
    layout.check(image_size)
    device = generator.device if generator is not None else torch.device("cpu")
    centred = layout.centred_positions(image_size).to(device)
    positions = centred.unsqueeze(0).expand(batch, -1, -1)
    if layout.jitter > 0:
        shift = torch.randint(-layout.jitter, layout.jitter + 1, (batch, layout.num_cells, 2), generator=generator,
                              device=device)
        positions = positions + shift
    return positions.contiguous()


def extract_tiles(images: torch.Tensor, positions: torch.Tensor, tile_size: int) -> torch.Tensor:
    """Cut square tiles out of a batch of images at given corners, with one gather.

    Args:
        images: ``(B, C, H, W)``, any dtype.
        positions: ``(B, T, 2)`` integer top-left corners (row, column) of ``T`` tiles per image;
            every tile must lie inside its image.
        tile_size: side ``s`` of the tiles.

    Returns:
        ``(B, T, C, s, s)``: tile ``t`` of image ``b`` is ``images[b, :, r:r + s, c:c + s]`` for
        ``(r, c) = positions[b, t]``.
    """
    batch, channels, height, width = images.shape
    if positions.ndim != 3 or positions.shape[0] != batch or positions.shape[2] != 2:
        raise ValueError(f"positions must be (batch={batch}, tiles, 2), got {tuple(positions.shape)}")
    rows, columns = positions[..., 0], positions[..., 1]
    if rows.min() < 0 or columns.min() < 0 or rows.max() + tile_size > height or columns.max() + tile_size > width:
        raise ValueError(f"{tile_size}-px tiles at these positions leave the {height}x{width} images")
    offsets = torch.arange(tile_size, device=images.device)
    row_index = (rows.to(images.device)[..., None] + offsets)[..., :, None]  # (B, T, s, 1)
    column_index = (columns.to(images.device)[..., None] + offsets)[..., None, :]  # (B, T, 1, s)
    flat = row_index * width + column_index  # (B, T, s, s) indices into H * W
    tiles = images.flatten(2).gather(2, flat.flatten(1).unsqueeze(1).expand(batch, channels, -1))  # (B, C, T*s*s)
    return tiles.reshape(batch, channels, -1, tile_size, tile_size).transpose(1, 2)


def grid_tiles(images: torch.Tensor, layout: GridLayout, generator: torch.Generator | None) -> torch.Tensor:
    """Every cell's tile of square images ``(B, C, S, S)``: ``(B, num_cells, C, tile, tile)``, cells
    row-major, jittered with :func:`sample_tile_positions`."""
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"grid tiles need square images, got {tuple(images.shape[-2:])}")
    positions = sample_tile_positions(layout, images.shape[0], images.shape[-1], generator)
    return extract_tiles(images, positions, layout.tile_size)


def standardize_tiles(tiles: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each tile to zero mean and unit standard deviation over its own pixels and channels
    (Noroozi & Favaro 2016, sec. 3.2: against the low-level statistics shortcut). ``(..., C, s, s)``
    in, same shape out; a flat tile becomes all zeros."""
    dims = (-3, -2, -1)
    mean = tiles.mean(dim=dims, keepdim=True)
    std = tiles.std(dim=dims, keepdim=True, unbiased=False)
    return (tiles - mean) / (std + eps)


def normalized_pixels(batch: dict[str, Any], generator: torch.Generator, mean: torch.Tensor,
                      std: torch.Tensor) -> torch.Tensor:
    """An input builder's first step: uint8 ``batch["pixels"] (B, C, H, W)`` -> float32
    ``(pixels / 255 - mean) / std`` on the generator's device (``mean`` / ``std`` ``(1, C, 1, 1)``: the
    recipe's ``views.mean`` / ``views.std``, which the exported processor applies too)."""
    if "pixels" not in batch:
        raise ValueError(f"an image method needs batches with 'pixels' (uint8 (B, C, H, W)); got keys {sorted(batch)}")
    pixels = batch["pixels"]
    if pixels.device.type != generator.device.type:
        pixels = pixels.to(generator.device, non_blocking=True)
    if pixels.ndim != 4 or pixels.shape[1] != mean.shape[1]:
        raise ValueError(f"expected uint8 pixels (batch, {mean.shape[1]} channels, height, width), got "
                         f"{tuple(pixels.shape)}; views.mean and views.std need one value per data channel")
    with full_precision(pixels.device):
        images = pixels.to(torch.float32).div_(255.0)
        return images.sub_(mean.to(images.device)).div_(std.to(images.device))


def check_grid_recipe(recipe: Any, layout: GridLayout, min_tile_size: int, size_key: str, what: str = "tiles") -> None:
    """Refuse, when the recipe is loaded, tiles that do not fit its images or its backbone.

    Args:
        recipe: the recipe (``data.image_size``, ``views.crop_size``).
        layout: the method's grid, from its ``model`` section and config defaults.
        min_tile_size: what the backbone needs (:func:`hfssl.backbones.min_input_size`).
        size_key: the model key of the tile side (``tile_size``, ``patch_size``), named in the message.
        what: ``tiles`` or ``patches``.

    Raises:
        RecipeError: naming the sizes and the ones that work.
    """
    image_size = recipe.data.image_size
    crop_size = recipe.views.crop_size
    if crop_size is not None and crop_size != image_size:
        raise RecipeError(f"views.crop_size={crop_size}: the grid pretext tasks cut their {what} from whole "
                          f"images of data.image_size={image_size} px and evaluate on them too; remove views.crop_size "
                          "(or set it to data.image_size)")
    problem = layout.problem(image_size, min_tile_size)
    if problem is not None:
        raise RecipeError(f"data.image_size {image_size} with grid {layout.grid_size}, gap {layout.gap} and "
                          f"{layout.tile_size}-px {what} (model.{size_key}): {problem}. A small data set can be "
                          "upsampled with data.image_size (see recipes/jigsaw/fashion_mnist.yaml)")
