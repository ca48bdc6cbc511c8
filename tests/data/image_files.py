"""Tiny real image files for the data tests (helpers imported by name: a conftest is not importable
as a module when several test folders have one)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import PIL.Image


def gradient_rgb(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth (H, W, 3) uint8 picture: JPEG keeps it close to the original."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 160, size=3)
    picture = np.stack([base[0] + x * 3, base[1] + y * 3, base[2] + (x + y)], axis=-1)
    return np.clip(picture, 0, 255).astype(np.uint8)


def special_images() -> dict[str, PIL.Image.Image]:
    """One image of each awkward mode, with known expected RGB values."""
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red 200 everywhere
    rgba[:10, :, 3] = 0  # top half fully transparent -> still (200, 0, 0): alpha is dropped
    rgba[10:, :, 3] = 255  # bottom half opaque -> (200, 0, 0)
    palette = PIL.Image.fromarray(gradient_rgb(20, 20, 3)).convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=8)
    cmyk = PIL.Image.fromarray(gradient_rgb(20, 20, 4)).convert("CMYK")
    grey16 = PIL.Image.fromarray((np.arange(400, dtype=np.uint16).reshape(20, 20) * 160).astype(np.uint16))
    return {
        "rgba": PIL.Image.fromarray(rgba, mode="RGBA"),
        "palette": palette,
        "cmyk": cmyk,
        "grey16": grey16,
    }


def encode(image: PIL.Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def write_image_folder(root: Path) -> Path:
    """``train/{cat,dog}`` and ``test/{cat,dog}`` with PNG/JPEG files, including RGBA, palette, a
    CMYK JPEG and a 16-bit grey PNG (all in ``train/cat``): 12 train and 4 test images."""
    for split, count in (("train", 4), ("test", 2)):
        for label, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                picture = PIL.Image.fromarray(gradient_rgb(24, 30, seed=10 * label + index))
                picture.save(folder / f"{index}.{'png' if index % 2 else 'jpg'}")
    specials = special_images()
    specials["rgba"].save(root / "train" / "cat" / "rgba.png")
    specials["palette"].save(root / "train" / "cat" / "palette.png")
    specials["cmyk"].save(root / "train" / "cat" / "cmyk.jpg", quality=95)
    specials["grey16"].save(root / "train" / "cat" / "grey16.png")
    return root
