"""Decode any image value into a fixed-size uint8 ``(C, S, S)`` array, one at a time or vectorised.

Accepted values: ``PIL.Image.Image``; ``{"bytes", "path"}`` dicts (``datasets.Image(decode=False)``);
encoded bytes; file paths (relative ones resolved against the source's folder) and URLs; numpy
arrays, torch tensors and nested lists in ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` layout with
C in 1..4.

Conversions, so that every image of a data set ends with the same channel count:

* pixel values: uint8 as is; other integers are read as 16-bit when an image's maximum is above
  255 (``value / 257``, the exact 0..65535 -> 0..255 map); floats are read as [0, 1] when an
  image's maximum is at most 1 and as [0, 255] otherwise; booleans as 0/255.
* modes: grey (``L``, ``I;16``, ``I``, ``F``), 1-bit (``1``), palette (``P``, with or without
  transparency), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` and alpha modes (``RGBA``, ``LA``, ``PA``)
  become ``L`` or ``RGB`` **as transformers reads images for its pipelines**
  (``transformers.image_utils.load_image``: ``image.convert("RGB")``): the alpha channel is dropped
  and a transparent pixel keeps the colour stored under it. An exported model is served by
  ``pipeline("zero-shot-image-classification" | "image-feature-extraction" | ...)``, which reads
  every file, path or PIL image that way, so training must see the same pixels (compositing on
  white here cost the emoji CLIP model half its zero-shot accuracy through the pipeline: issue 26).
  A PIL image with transparency handed straight to an image processor is composited on white by
  transformers (``convert_to_rgb``); the model cards say to read images with ``load_image`` first.
* grey -> RGB repeats the channel; RGB -> grey uses the ITU-R 601-2 luma weights (PIL's ``L``).
* size: as the exported image processor (a ``CLIPImageProcessor``) resizes: the shorter side to
  ``S`` with bilinear interpolation that antialiases when shrinking (PIL ``BILINEAR``; ``torch``
  ``interpolate(..., antialias=True)`` in the vectorised path), the longer to ``int(S * long /
  short)``, then the centred ``S x S`` square is cropped. The aspect ratio is kept: objects are not
  squashed, and the few border pixels it drops are the ones random crops rarely keep anyway. EXIF
  orientation is applied first (as ``load_image``), so phone photos come out upright.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F

IMAGE_EXTENSIONS = frozenset(extension.lower() for extension in PIL.Image.registered_extensions())
# ITU-R 601-2 luma transform, as PIL's convert("L"): L = R * 299/1000 + G * 587/1000 + B * 114/1000.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_uint8(array: np.ndarray) -> np.ndarray:
    """One image's values as uint8 following the rules in the module docstring."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(array.dtype, np.integer):
        values = array.astype(np.float32)
        if values.size and values.max() > 255:
            values = values / 257.0
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if values.size and not np.isfinite(values).all():
            raise ValueError("the image holds NaN or infinite values")
        if values.size and values.max() <= 1.0:
            values = values * 255.0
    else:
        raise ValueError(f"image values of dtype {array.dtype} are not numbers")
    return np.rint(np.clip(values, 0, 255)).astype(np.uint8)


def _channels_last(array: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` -> ``(H, W, C)``, C in 1..4."""
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3 and array.shape[-1] in (1, 2, 3, 4):
        return array
    if array.ndim == 3 and array.shape[0] in (1, 2, 3, 4):
        return np.transpose(array, (1, 2, 0))
    raise ValueError(
        f"an array of shape {tuple(array.shape)} is not an image: expected (H, W), (H, W, C) or (C, H, W) "
        "with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)"
    )


def array_to_pil(value: Any) -> PIL.Image.Image:
    """A numpy array / torch tensor / nested list -> ``L``, ``LA``, ``RGB`` or ``RGBA`` PIL image."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except ValueError as error:  # numpy >= 1.24 refuses ragged nested lists
        raise ValueError("the nested lists have rows of different lengths, so they are not an image") from error
    if array.dtype == object:
        raise ValueError("the nested lists have rows of different lengths, so they are not an image")
    image = to_uint8(_channels_last(array))
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[image.shape[-1]]
    return PIL.Image.fromarray(image[:, :, 0] if mode == "L" else image, mode=mode)


def open_image(value: Any, base_dir: str | Path | None = None) -> PIL.Image.Image:
    """Open any accepted image value as a fully loaded PIL image (errors surface here, not later)."""
    if isinstance(value, dict):
        if value.get("bytes"):
            value = value["bytes"]
        elif value.get("path"):
            value = value["path"]
        else:
            raise ValueError("the image entry has neither bytes nor a path")
    if value is None:
        raise ValueError("the image is missing (None)")
    if isinstance(value, PIL.Image.Image):
        image = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        image = PIL.Image.open(io.BytesIO(bytes(value)))
    elif isinstance(value, (str, os.PathLike)):
        text = str(value)
        if "://" in text:  # URLs and hf:// paths: datasets' own opener handles the protocols
            import datasets

            image = datasets.Image().decode_example({"path": text, "bytes": None})
        else:
            image = PIL.Image.open(_resolve_path(text, base_dir))
    else:
        return array_to_pil(value)
    image.load()
    return image


def _resolve_path(value: str, base_dir: str | Path | None) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None and (Path(base_dir) / path).exists():
        return Path(base_dir) / path
    if path.exists():
        return path
    where = f" (relative paths are looked up in {str(base_dir)!r} and the working directory)" if base_dir else ""
    raise FileNotFoundError(f"no image file at {value!r}{where}")


def to_mode(image: PIL.Image.Image, channels: int) -> PIL.Image.Image:
    """Convert any PIL mode to ``L`` (channels=1) or ``RGB`` (channels=3) as the module docstring says."""
    if image.mode in _HIGH_BIT_MODES:
        image = PIL.Image.fromarray(to_uint8(np.asarray(image)), mode="L")
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        # transformers' load_image: convert("RGB") drops the alpha channel (the stored colours stay).
        image = image.convert("RGB")
    target = "L" if channels == 1 else "RGB"
    if image.mode == target:
        return image
    if image.mode not in ("L", "RGB"):  # 1, P, CMYK, YCbCr, LAB, HSV, RGBX: via RGB (or L for 1-bit)
        image = image.convert("L" if image.mode == "1" else "RGB")
    return image.convert(target)


def shorter_side_size(height: int, width: int, image_size: int) -> tuple[int, int]:
    """``(height, width)`` after resizing the shorter side to ``image_size``, the longer one to
    ``int(image_size * long / short)``: transformers' ``get_resize_output_image_size`` (``shortest_edge``)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(image_size * long / short)
    return (new_long, image_size) if width <= height else (image_size, new_long)


def centre_crop_offsets(height: int, width: int, image_size: int) -> tuple[int, int]:
    """``(top, left)`` of the centred ``image_size`` square, as transformers' ``center_crop``."""
    return (height - image_size) // 2, (width - image_size) // 2


def resize_pil(image: PIL.Image.Image, image_size: int) -> PIL.Image.Image:
    """The exported image processor's resize (:func:`hfssl.export.build_image_processor`): the shorter side
    to ``image_size`` (PIL bilinear, which antialiases when shrinking), then the centred square."""
    if image.width == image.height == image_size:
        return image
    height, width = shorter_side_size(image.height, image.width, image_size)
    image = image.resize((width, height), PIL.Image.Resampling.BILINEAR)
    if height == width == image_size:
        return image
    top, left = centre_crop_offsets(height, width, image_size)
    return image.crop((left, top, left + image_size, top + image_size))


def decode_image(value: Any, channels: int, image_size: int, base_dir: str | Path | None = None) -> np.ndarray:
    """Decode one image value into a uint8 array of shape ``(channels, image_size, image_size)``.

    Raises whatever the decoder raises (``OSError`` for unreadable bytes, ``FileNotFoundError``,
    ``ValueError`` for arrays that are not images); callers add the row and column to the message.
    """
    image = open_image(value, base_dir)
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = PIL.ImageOps.exif_transpose(image)
    image = resize_pil(to_mode(image, channels), image_size)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else np.ascontiguousarray(array.transpose(2, 0, 1))


def _batch_to_uint8(images: np.ndarray) -> np.ndarray:
    """Vectorised :func:`to_uint8` over ``(N, ...)`` with the per-image range rules, as float32."""
    if images.dtype == np.uint8:
        return images.astype(np.float32)
    if images.dtype == np.bool_:
        return images.astype(np.float32) * 255.0
    values = images.astype(np.float32)
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"image values of dtype {images.dtype} are not numbers")
    if not np.isfinite(values).all():
        raise ValueError("the images hold NaN or infinite values")
    maxima = values.reshape(len(values), -1).max(axis=1).reshape((-1,) + (1,) * (values.ndim - 1))
    if np.issubdtype(images.dtype, np.integer):
        values = np.where(maxima > 255, values / 257.0, values)
    else:
        values = np.where(maxima <= 1.0, values * 255.0, values)
    return np.rint(np.clip(values, 0, 255))


def arrays_to_pixels(images: np.ndarray, channels: int, image_size: int) -> np.ndarray:
    """Vectorised decode of a batch of fixed-shape arrays to uint8 ``(N, channels, S, S)``.

    Same rules as :func:`decode_image` (values, alpha dropped, luma, shorter side then centre crop, bilinear with
    antialiasing), computed with numpy and ``torch.nn.functional.interpolate`` on the whole batch
    instead of one PIL call per image: built-in sets of 70,000 images take well under a second.

    Args:
        images: ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` array, C in 1..4.
    """
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 2, 3, 4):
        images = images.transpose(0, 3, 1, 2)
    elif not (images.ndim == 4 and images.shape[1] in (1, 2, 3, 4)):
        raise ValueError(
            f"arrays of shape {tuple(images.shape[1:])} are not images: expected (H, W), (H, W, C) or (C, H, W) "
            "with C in 1..4"
        )
    values = torch.from_numpy(_batch_to_uint8(images))  # (N, C, H, W) float32 in 0..255
    if values.shape[1] in (2, 4):  # drop the alpha channel, as PIL's convert("RGB") / convert("L") of LA
        values = values[:, :-1]
    if channels == 1 and values.shape[1] == 3:
        values = (values * torch.from_numpy(_LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True).round()
    height, width = shorter_side_size(values.shape[2], values.shape[3], image_size)
    if (height, width) != tuple(values.shape[2:]):
        values = F.interpolate(values, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    top, left = centre_crop_offsets(height, width, image_size)
    values = values[:, :, top: top + image_size, left: left + image_size]
    pixels = values.round_().clamp_(0, 255).to(torch.uint8)
    if channels == 3 and pixels.shape[1] == 1:  # grey -> RGB after resizing: a third of the work
        pixels = pixels.expand(-1, 3, -1, -1)
    return pixels.contiguous().numpy()
