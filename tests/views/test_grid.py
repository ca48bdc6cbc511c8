"""The shared tile grid (hfssl/views/grid.py) against per-image slicing, and its size checks."""

from __future__ import annotations

import pytest
import torch

from hfssl.views.grid import GridLayout, extract_tiles, grid_tiles, sample_tile_positions, standardize_tiles


def _naive_grid(images: torch.Tensor, layout: GridLayout, shifts: torch.Tensor | None) -> torch.Tensor:
    """Per image and per cell: slice the tile at the cell's centred place plus its shift."""
    size = images.shape[-1]
    start = (size - layout.grid_size * (layout.tile_size + layout.gap)) // 2
    out = []
    for b in range(images.shape[0]):
        tiles = []
        for cell in range(layout.grid_size ** 2):
            row = start + (cell // layout.grid_size) * (layout.tile_size + layout.gap) + layout.gap // 2
            column = start + (cell % layout.grid_size) * (layout.tile_size + layout.gap) + layout.gap // 2
            if shifts is not None:
                row, column = row + int(shifts[b, cell, 0]), column + int(shifts[b, cell, 1])
            tiles.append(images[b, :, row:row + layout.tile_size, column:column + layout.tile_size])
        out.append(torch.stack(tiles))
    return torch.stack(out)


@pytest.mark.parametrize(("layout", "size"), [(GridLayout(3, 5, 3, 1), 27), (GridLayout(3, 4, 0, 0), 12),
                                              (GridLayout(2, 6, 4, 2), 21)])
def test_grid_tiles_equal_per_image_slicing_for_a_fixed_generator(layout, size):
    images = torch.randn(5, 3, size, size, generator=torch.Generator().manual_seed(0))
    tiles = grid_tiles(images, layout, torch.Generator().manual_seed(7))
    # The documented draw: one randint of (batch, cells, 2) shifts in [-jitter, jitter], none without jitter.
    shifts = None
    if layout.jitter:
        shifts = torch.randint(-layout.jitter, layout.jitter + 1, (5, layout.num_cells, 2),
                               generator=torch.Generator().manual_seed(7))
        assert shifts.abs().max() == layout.jitter  # the test does see jitter
    assert torch.equal(tiles, _naive_grid(images, layout, shifts))
    assert tiles.shape == (5, layout.num_cells, 3, layout.tile_size, layout.tile_size)


def test_extract_tiles_cuts_any_positions_and_refuses_tiles_outside_the_image():
    images = torch.arange(2 * 1 * 10 * 10, dtype=torch.float32).reshape(2, 1, 10, 10)
    positions = torch.tensor([[[0, 0], [6, 3]], [[2, 6], [5, 5]]])
    tiles = extract_tiles(images, positions, 4)
    for b in range(2):
        for t in range(2):
            r, c = positions[b, t].tolist()
            assert torch.equal(tiles[b, t], images[b, :, r:r + 4, c:c + 4])
    with pytest.raises(ValueError, match="leave the 10x10 images"):
        extract_tiles(images, torch.tensor([[[0, 7]], [[0, 0]]]), 4)


def test_jitter_keeps_tiles_in_their_cells_and_the_grid_centred():
    layout = GridLayout(3, 6, 4, 2)
    positions = sample_tile_positions(layout, 64, 31, torch.Generator().manual_seed(1))
    origin = (31 - 30) // 2
    cells = torch.arange(9)
    cell_row = origin + (cells // 3) * 10
    cell_column = origin + (cells % 3) * 10
    assert (positions[..., 0] >= cell_row).all() and (positions[..., 0] + 6 <= cell_row + 10).all()
    assert (positions[..., 1] >= cell_column).all() and (positions[..., 1] + 6 <= cell_column + 10).all()
    assert sample_tile_positions(GridLayout(3, 6, 4, 0), 2, 31, torch.Generator()).unique(dim=0).shape[0] == 1


def test_standardized_tiles_have_zero_mean_and_unit_deviation_each():
    tiles = torch.rand(3, 9, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 7 + 2
    out = standardize_tiles(tiles)
    for b in range(3):
        for t in range(9):
            tile = out[b, t]
            assert abs(tile.mean().item()) < 1e-5
            assert abs(tile.std(unbiased=False).item() - 1) < 1e-3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"grid_size": 3, "tile_size": 8, "gap": 2, "jitter": 2}, "at most gap // 2 = 1"),
    ({"grid_size": 1, "tile_size": 8, "gap": 2, "jitter": 0}, "grid_size must be a whole number >= 2"),
    ({"grid_size": 3, "tile_size": 0, "gap": 2, "jitter": 0}, "tile_size must be a whole number >= 1"),
])
def test_bad_layouts_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GridLayout(**kwargs)


def test_a_grid_that_does_not_fit_says_which_sizes_work():
    layout = GridLayout(3, 7, 2, 1)
    assert layout.problem(27) is None and layout.problem(40, min_tile_size=7) is None
    message = layout.problem(26)
    assert "needs images of at least 27 px, got 26 px" in message and "use images of at least 27 px" in message
    message = layout.problem(28, min_tile_size=16)
    assert "7-px tiles are smaller than the 16 px the backbone needs" in message
    assert "use images of at least 54 px" in message
    with pytest.raises(ValueError, match="at least 27 px"):
        grid_tiles(torch.zeros(1, 1, 26, 26), layout, torch.Generator())
