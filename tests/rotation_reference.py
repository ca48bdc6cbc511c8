"""Per-image reference code for quarter turns, shared by the rotation view's tests and RotNet's: pixel by
pixel, no torch rotation routine."""

from __future__ import annotations

import torch


def naive_quarter_turn(image: torch.Tensor) -> torch.Tensor:
    """One counter-clockwise quarter turn of ``(C, S, S)``, pixel by pixel: output (i, j) is input (j, S-1-i)."""
    size = image.shape[-1]
    out = torch.empty_like(image)
    for i in range(size):
        for j in range(size):
            out[:, i, j] = image[:, j, size - 1 - i]
    return out


def naive_turns(image: torch.Tensor, turns: int) -> torch.Tensor:
    for _ in range(turns % 4):
        image = naive_quarter_turn(image)
    return image
