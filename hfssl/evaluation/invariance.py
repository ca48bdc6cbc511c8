"""How invariant an image encoder's features are to augmentations: alignment, uniformity, and each view operation alone.

The seeds claim that self-supervised representations become "invariant concerning augmentation". Two measures:

* **alignment and uniformity** (Wang & Isola 2020; the formulas of :mod:`hfssl.evaluation.alignment_uniformity`,
  shared with the text ``alignment-uniformity`` protocol): alignment over two augmented views of each test image made
  by the training pipeline (:class:`hfssl.views.MultiViewGenerator` with the run's ``views`` section, two global views,
  no local crops; a model without a recipe gets the default :class:`~hfssl.views.ViewsConfig`), uniformity over the
  pairs of distinct clean test images (the deterministic evaluation transform, as the frozen features of the other
  protocols). The multi-view pipeline is used whatever the method's own view kind: a ``single_view`` method (MAE)
  trained on crops and flips only, so its ``views`` section's colour settings, unused in its training, act here.
* **per operation**: each view operation of :mod:`hfssl.views` applied *alone*, always (probability 1), with the
  strengths of the same ``views`` section, to every test image; then, over the ``N`` images with clean features
  ``z_i`` and features of the augmented copies ``a_i`` (L2-normalised):

  - ``positive_cosine = mean_i cos(z_i, a_i)``: how close an image stays to its own augmented copy;
  - ``negative_cosine = mean_{i != j} cos(z_i, a_j)``: how close it is to the copies of other images;
  - ``invariance = (positive - negative) / (1 - negative)``: the positive similarity rescaled so that 1 is an exactly
    invariant encoder and 0 one for which the copy is no closer than any other image (collapsed features, where
    ``negative = 1``, score 0);
  - ``copy_retrieval_top1``: the share of images whose nearest augmented copy (cosine) is their own.

  The operations (:data:`OPERATIONS`): ``crop`` (random resized crop, ``views.crop_scale`` / ``crop_ratio``,
  resized back to the image side), ``flip`` (horizontal), ``color_jitter`` (brightness, contrast, saturation, hue in a
  random order, ``views.brightness`` ...), ``grayscale``, ``blur`` (Gaussian, sigma in ``views.blur_sigma``, kernel 10 %
  of the side), ``solarize`` (threshold 0.5) and ``rotation`` (one of ``views.rotation_degrees``, by default 90, 180
  or 270 degrees, exact). An operation that changes nothing on the data is left out with a log line: ``grayscale``
  on 1-channel images, ``color_jitter`` when every strength it can use is 0.

Images stay uint8 between the operation and the encoder: an augmented image is rounded to whole grey levels and goes
through the evaluated model's own transform (the recipe's evaluation transform, or an encoder's image processor),
exactly as a clean one does, so any encoder that serves ``image-features`` can be measured. The raw-pixel baseline
scores the flattened pixels in ``[0, 1]`` of the same augmented images.

Seeding: one ``torch.Generator`` on the images' device, seeded once; the alignment views are drawn first, then the
operations in their listed order, batch by batch (so the same seed, operations and images give the same numbers on
one device type).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from hfssl.evaluation.alignment_uniformity import alignment, uniformity
from hfssl.views import MultiViewGenerator, ViewsConfig, functional
from hfssl.views.generators import SOLARIZE_THRESHOLD
from hfssl.views.parameters import sample_color_jitter, sample_crop_boxes, uniform

logger = logging.getLogger(__name__)

#: ``(images float (B, C, S, S) in [0, 1], generator, views) -> images of the same shape``.
Operation = Callable[[torch.Tensor, torch.Generator, ViewsConfig], torch.Tensor]
#: ``uint8 (B, C, S, S) on the images' device -> features (B, D)``.
Embed = Callable[[torch.Tensor], torch.Tensor]

#: Rows of the similarity matrix scored at once for the copy retrieval (memory: ``CHUNK x N`` float64).
CHUNK = 256


def _crop(images: torch.Tensor, generator: torch.Generator, views: ViewsConfig) -> torch.Tensor:
    size = images.shape[-1]
    boxes = sample_crop_boxes(generator, images.shape[0], size, size, tuple(views.crop_scale), tuple(views.crop_ratio))
    return functional.resized_crop(images, boxes.top, boxes.left, boxes.height, boxes.width, size)


def _flip(images: torch.Tensor, generator: torch.Generator, views: ViewsConfig) -> torch.Tensor:
    return images.flip(-1)


def _jitter_strengths(views: ViewsConfig, channels: int) -> tuple[float, float, float, float]:
    """The strengths the view pipeline uses: saturation and hue only on colour images."""
    colour = channels == 3
    return (float(views.brightness), float(views.contrast),
            float(views.saturation) if colour else 0.0, float(views.hue) if colour else 0.0)


def _color_jitter(images: torch.Tensor, generator: torch.Generator, views: ViewsConfig) -> torch.Tensor:
    parameters = sample_color_jitter(generator, images.shape[0], *_jitter_strengths(views, images.shape[1]))
    return functional.color_jitter(images, parameters.factors, parameters.hue_delta, parameters.order,
                                   parameters.hue_indices)


def _grayscale(images: torch.Tensor, generator: torch.Generator, views: ViewsConfig) -> torch.Tensor:
    return functional.rgb_to_grayscale(images).expand_as(images).contiguous()


def _blur(images: torch.Tensor, generator: torch.Generator, views: ViewsConfig) -> torch.Tensor:
    sigma = uniform(generator, (images.shape[0],), *views.blur_sigma)
    return functional.gaussian_blur(images, sigma, functional.gaussian_kernel_size(images.shape[-1]))


def _solarize(images: torch.Tensor, generator: torch.Generator, views: ViewsConfig) -> torch.Tensor:
    return functional.solarize(images, SOLARIZE_THRESHOLD)


def _rotation(images: torch.Tensor, generator: torch.Generator, views: ViewsConfig) -> torch.Tensor:
    angles = torch.tensor(views.rotation_degrees, dtype=torch.float32, device=images.device)
    choice = torch.randint(len(angles), (images.shape[0],), generator=generator, device=images.device)
    return functional.rotate(images, angles[choice])


#: Every view operation the protocol can apply alone, by name, in the order of the view pipeline.
OPERATIONS: dict[str, Operation] = {
    "crop": _crop, "flip": _flip, "color_jitter": _color_jitter, "grayscale": _grayscale, "blur": _blur,
    "solarize": _solarize, "rotation": _rotation,
}


def applicable_operations(names: tuple[str, ...], views: ViewsConfig, channels: int) -> list[str]:
    """``names`` less the operations that change nothing on ``channels``-channel images (see the module docstring).

    Raises:
        ValueError: none is left; the message names the operations that would change the images.
    """
    idle = set()
    if channels == 1:
        idle.add("grayscale")
    if not any(value > 0 for value in _jitter_strengths(views, channels)):
        idle.add("color_jitter")
    kept = [name for name in names if name not in idle]
    for name in names:
        if name in idle:
            logger.info("invariance: %s leaves these %d-channel images unchanged (views section): not measured",
                        name, channels)
    if not kept:
        useful = [name for name in OPERATIONS if name not in idle]
        raise ValueError(f"none of the operations {list(names)} changes {channels}-channel images with these views "
                         f"settings; list others in eval.invariance.operations (these would: {', '.join(useful)})")
    return kept


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """Float images in ``[0, 1]`` -> uint8, rounded to the nearest grey level (what the evaluated transform takes)."""
    return images.mul(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def training_views(views: ViewsConfig, image_size: int, channels: int) -> MultiViewGenerator:
    """Two global views of each image by the training pipeline of ``views``, left in ``[0, 1]`` (mean 0, std 1): the
    evaluated model's own transform normalises them as it does clean images. Per-view blur / solarize probabilities
    (BYOL) keep their first two values."""

    def two(values: tuple[float, ...] | None) -> tuple[float, ...] | None:
        return None if values is None else (tuple(values) * 2)[:2]

    pair = dataclasses.replace(views, num_views=2, num_local_views=0, mean=(0.0,) * channels, std=(1.0,) * channels,
                               blur_prob_per_view=two(views.blur_prob_per_view),
                               solarize_prob_per_view=two(views.solarize_prob_per_view))
    return MultiViewGenerator(pair, image_size, channels)


def similarity_scores(clean: torch.Tensor, augmented: torch.Tensor) -> dict[str, float]:
    """``positive_cosine``, ``negative_cosine``, ``invariance`` and ``copy_retrieval_top1`` (module docstring) of the
    features ``(N, D)`` of ``N >= 2`` clean images and of their augmented copies, row ``i`` of each the same image."""
    if clean.shape != augmented.shape or clean.ndim != 2 or clean.shape[0] < 2:
        raise ValueError(f"similarity_scores needs two (N, D) feature matrices of the same shape with N >= 2, got "
                         f"{tuple(clean.shape)} and {tuple(augmented.shape)}")
    z = F.normalize(clean.double(), dim=1)
    a = F.normalize(augmented.double(), dim=1)
    num = z.shape[0]
    positives = (z * a).sum(dim=1)  # (N,)
    # sum_{i != j} z_i . a_j = (sum_i z_i) . (sum_j a_j) - sum_i z_i . a_i: no N x N matrix needed.
    negative = float(((z.sum(dim=0) @ a.sum(dim=0)) - positives.sum()) / (num * (num - 1)))
    positive = float(positives.mean())
    found = 0
    for start in range(0, num, CHUNK):
        similarities = z[start:start + CHUNK] @ a.T  # (chunk, N)
        found += int((similarities.argmax(dim=1) == torch.arange(start, start + len(similarities))).sum())
    spread = 1.0 - negative
    invariance = (positive - negative) / spread if spread > 1e-12 else 0.0
    return {"positive_cosine": positive, "negative_cosine": negative, "invariance": invariance,
            "copy_retrieval_top1": found / num}


@torch.no_grad()
def _features(embed: Embed, pixels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``embed`` over ``pixels`` (uint8 ``(N, C, S, S)``) batch by batch: ``(N, D)`` float64 on the CPU."""
    return torch.cat([embed(pixels[start:start + batch_size]).detach().double().cpu()
                      for start in range(0, pixels.shape[0], batch_size)])


def invariance_rows(embedders: dict[str, Embed], pixels: torch.Tensor, views: ViewsConfig, operations: tuple[str, ...],
                    seed: int, batch_size: int, alpha: float = 2.0, t: float = 2.0) -> dict[str, list[dict[str, Any]]]:
    """The protocol's rows for each feature set (module docstring).

    Args:
        embedders: ``{features name: uint8 (B, C, S, S) -> (B, D)}`` (``model``, ``raw_pixels``); every one sees the
            same augmented images.
        pixels: the test images, uint8 ``(N, C, S, S)``, square, on the device the views are made on.
        views: the ``views`` section whose training pipeline and strengths are used.
        operations: names in :data:`OPERATIONS`, measured in this order.
        seed: of the one generator. batch_size: images per pass.
        alpha, t: Wang & Isola's exponents.

    Returns:
        ``{features name: [one row per applicable operation, then the summary row (operation "all")]}``.
    """
    if pixels.ndim != 4 or pixels.dtype != torch.uint8 or pixels.shape[-1] != pixels.shape[-2] or len(pixels) < 2:
        raise ValueError(f"the invariance protocol needs at least 2 square uint8 test images (N, C, S, S) (data.image_size "
                         f"prepares them square), got a {pixels.dtype} batch of shape {tuple(pixels.shape)}")
    unknown = [name for name in operations if name not in OPERATIONS]
    if unknown:
        raise ValueError(f"unknown view operations {unknown}; known: {', '.join(OPERATIONS)}")
    channels, size = pixels.shape[1], pixels.shape[-1]
    names = applicable_operations(tuple(operations), views, channels)
    generator = torch.Generator(device=pixels.device).manual_seed(seed)
    pair = training_views(views, size, channels)
    clean = {name: _features(embed, pixels, batch_size) for name, embed in embedders.items()}
    first: dict[str, list[torch.Tensor]] = {name: [] for name in embedders}
    second: dict[str, list[torch.Tensor]] = {name: [] for name in embedders}
    for start in range(0, len(pixels), batch_size):
        views_batch = pair(pixels[start:start + batch_size], generator)["pixel_values"]  # (B, 2, C, S', S') in [0, 1]
        one, two = to_pixels(views_batch[:, 0]), to_pixels(views_batch[:, 1])
        for name, embed in embedders.items():
            with torch.no_grad():
                first[name].append(embed(one).detach().double().cpu())
                second[name].append(embed(two).detach().double().cpu())
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in embedders}
    for operation in names:
        augmented = _augmented_features(embedders, pixels, OPERATIONS[operation], generator, views, batch_size)
        for name in embedders:
            rows[name].append({"operation": operation, **similarity_scores(clean[name], augmented[name]),
                               "samples": len(pixels)})
    for name in embedders:
        measured = rows[name]
        summary = {"operation": "all",
                   "alignment": float(alignment(torch.cat(first[name]), torch.cat(second[name]), alpha)),
                   "uniformity": float(uniformity(clean[name], t))}
        for key in ("positive_cosine", "negative_cosine", "invariance", "copy_retrieval_top1"):
            summary[key] = sum(row[key] for row in measured) / len(measured)
        measured.append({**summary, "samples": len(pixels), "operations": names})
    return rows


def _augmented_features(embedders: dict[str, Embed], pixels: torch.Tensor, operation: Operation,
                        generator: torch.Generator, views: ViewsConfig, batch_size: int) -> dict[str, torch.Tensor]:
    """Every embedder's features of the same augmented copies (the operation drawn once per batch)."""
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in embedders}
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start:start + batch_size].to(torch.float32).div(255.0)
        changed = to_pixels(operation(batch, generator, views))
        for name, embed in embedders.items():
            with torch.no_grad():
                collected[name].append(embed(changed).detach().double().cpu())
    return {name: torch.cat(parts) for name, parts in collected.items()}
