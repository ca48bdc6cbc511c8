"""The CIE 1976 Lab formulas written out per pixel in float64, independent of kornia: the reference of
hfssl.views.lab's tests and of the colour-prediction methods' loss tests."""

from __future__ import annotations

import torch

WHITE_D65 = (0.95047, 1.0, 1.08883)


def naive_lab(r: float, g: float, b: float) -> tuple[float, float, float]:
    """One sRGB pixel -> Lab by the textbook formulas (IEC 61966-2-1 linearisation, sRGB -> XYZ matrix, CIE 1976)."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    rl, gl, bl = linear(r), linear(g), linear(b)
    x = 0.412453 * rl + 0.357580 * gl + 0.180423 * bl
    y = 0.212671 * rl + 0.715160 * gl + 0.072169 * bl
    z = 0.019334 * rl + 0.119193 * gl + 0.950227 * bl

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29
    fx, fy, fz = f(x / WHITE_D65[0]), f(y / WHITE_D65[1]), f(z / WHITE_D65[2])
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def naive_normalised_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``(B, 3, H, W)`` in [0, 1] -> normalised Lab ``((L - 50) / 50, a / 110, b / 110)``, pixel by pixel."""
    out = torch.empty(rgb.shape, dtype=torch.float64)
    batch, _, height, width = rgb.shape
    for n in range(batch):
        for i in range(height):
            for j in range(width):
                lightness, a, b = naive_lab(*rgb[n, :, i, j].double().tolist())
                out[n, :, i, j] = torch.tensor([(lightness - 50) / 50, a / 110, b / 110])
    return out
