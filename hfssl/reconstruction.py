"""What the reconstruction methods share: the ``reconstruction`` capability's result, its error measures and
the card picture of input / corrupted input / reconstruction triplets.

A model that serves the ``reconstruction`` capability (:data:`hfssl.registry.RECONSTRUCTION`) answers
``get_reconstructions(pixel_values, generator) -> Reconstruction`` for clean, normalised images (the
evaluation transform's output): the image it was asked to reconstruct (``original``, in the space its loss
compares), the input it saw (``corrupted``: noisy, masked, greyscale, or the original itself for a plain
autoencoder), its output (``reconstructed``) and, when the loss covers only a region (inpainting, masked
patches), that region (``mask``, 1 inside). Any randomness of the corruption is drawn from ``generator``.

* :func:`reconstruction_errors`: per-image squared error (over the mask region when there is one) and PSNR of
  the displayed images, the numbers of the ``reconstruction`` protocol.
* :func:`draw_reconstruction_triplets`: the picture each method's ``MethodSpec.pictures`` hook calls; it asks
  the model object for its reconstructions and imports no method.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfssl.data.images import read_pixels
from hfssl.plots import Picture, PictureContext, figure, register_picture
from hfssl.views import build_eval_transform

#: The peak of displayed images (they are in [0, 1]) in the PSNR.
PSNR_PEAK = 1.0
#: Squared errors below this count as this in the PSNR (a perfect reconstruction gives 100 dB, not infinity).
PSNR_MIN_ERROR = 1e-10


@dataclass
class Reconstruction:
    """A reconstruction method's view of a batch (the ``reconstruction`` capability).

    Attributes:
        original: ``(B, C, H, W)`` what the model is asked to reconstruct, in the space its loss compares
            (normalised pixels for the autoencoders; Lab's ab channels for colorization).
        corrupted: ``(B, C', H, W)`` what the model saw (noisy, masked or greyscale input; the original for a
            plain autoencoder).
        reconstructed: ``(B, C, H, W)`` the model's output in the space of ``original``.
        mask: ``None`` (the loss covers the whole image) or ``(B, 1, H, W)`` with 1 where the loss is measured
            (the removed region of an inpainting task), 0 elsewhere.
        display: ``(tensor, role) -> (B, 1 | 3, H, W)`` in [0, 1], turning ``original`` / ``corrupted`` /
            ``reconstructed`` (``role`` names which) into displayable images; ``None``: the three are
            normalised pixels, undone with the evaluation transform's mean and std.
    """

    original: torch.Tensor
    corrupted: torch.Tensor
    reconstructed: torch.Tensor
    mask: torch.Tensor | None = None
    display: Callable[[torch.Tensor, str], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.original.ndim != 4 or self.reconstructed.shape != self.original.shape:
            raise ValueError(f"a Reconstruction needs original and reconstructed of one shape (B, C, H, W), got "
                             f"{tuple(self.original.shape)} and {tuple(self.reconstructed.shape)}")
        if self.corrupted.ndim != 4 or self.corrupted.shape[0] != self.original.shape[0] \
                or self.corrupted.shape[-2:] != self.original.shape[-2:]:
            raise ValueError(f"a Reconstruction's corrupted input must be (B, C', H, W) like original "
                             f"{tuple(self.original.shape)}, got {tuple(self.corrupted.shape)}")
        if self.mask is not None:
            batch, _, height, width = self.original.shape
            if tuple(self.mask.shape) != (batch, 1, height, width):
                raise ValueError(f"a Reconstruction's mask must be (B, 1, H, W) = {(batch, 1, height, width)}, "
                                 f"got {tuple(self.mask.shape)}")

    def images(self, role: str, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
        """``original``, ``corrupted`` or ``reconstructed`` as displayable ``(B, 1 | 3, H, W)`` images in [0, 1]:
        through ``display``, or the normalisation ``mean`` / ``std`` undone."""
        tensor = getattr(self, role)
        if self.display is not None:
            images = self.display(tensor, role)
        else:
            shape = (1, -1, 1, 1)
            images = (tensor.float() * torch.tensor(std, device=tensor.device).view(shape)
                      + torch.tensor(mean, device=tensor.device).view(shape))
        return images.float().clamp(0.0, 1.0)


def reconstruction_errors(reconstruction: Reconstruction, mean: Sequence[float], std: Sequence[float]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image ``(B,)``: the mean squared error between ``reconstructed`` and ``original`` in the loss's
    space, and the PSNR (dB) of the displayed reconstruction against the displayed original
    (``10 log10(1 / mse)`` on [0, 1] images), both over the mask region when there is one."""
    mask = reconstruction.mask
    difference = (reconstruction.reconstructed.float() - reconstruction.original.float()) ** 2
    shown = (reconstruction.images("reconstructed", mean, std) - reconstruction.images("original", mean, std)) ** 2

    def per_image(squares: torch.Tensor) -> torch.Tensor:
        if mask is None:
            return squares.flatten(1).mean(dim=1)
        weights = mask.to(squares.dtype).expand_as(squares)
        return (squares * weights).flatten(1).sum(dim=1) / weights.flatten(1).sum(dim=1).clamp_min(1.0)

    mse = per_image(difference)
    psnr = 10.0 * torch.log10(PSNR_PEAK ** 2 / per_image(shown).clamp_min(PSNR_MIN_ERROR))
    return mse, psnr


def _triplets_caption(description: dict[str, str], name: str) -> str:
    corruption = description.get("corruption", "").replace("_", " ")
    if corruption == "none":
        seen = "the input the model saw (the clean image: no corruption)"
    else:
        seen = f"the input the model saw ({corruption})" if corruption else "the input the model saw"
    region = " The loss covers only the marked region." if description.get("masked") == "1" else ""
    return (f"Top row: fixed test images; middle: {seen}; bottom: the model's reconstruction (test images, "
            f"never trained on).{region}")


#: The card picture of every method that serves ``reconstruction`` and calls :func:`draw_reconstruction_triplets`.
TRIPLETS = register_picture(Picture("reconstruction_triplets.png", "Test images, the corrupted inputs and their "
                                    "reconstructions", _triplets_caption, heading="Reconstructions", order=60))


@torch.no_grad()
def reconstruction_batch(model: torch.nn.Module, recipe: Any, dataset: Any, count: int = 8, seed: int = 0
                         ) -> tuple[Reconstruction, tuple[float, ...], tuple[float, ...]]:
    """The model's :class:`Reconstruction` of the first ``count`` images of ``dataset`` after the recipe's
    evaluation transform, with one generator seeded with ``seed`` on the model's device; and the mean and std
    that undo the normalisation."""
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    device = next(model.parameters()).device
    pixels = torch.as_tensor(read_pixels(dataset, 0, min(count, len(dataset)))).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        result = model.get_reconstructions(transform(pixels), generator)
    finally:
        model.train(was_training)
    return result, transform.mean, transform.std


def save_image_rows(rows: Sequence[tuple[str, np.ndarray]], path: Path, description: str) -> Path:
    """A PNG grid: one row per ``(title, images (N, H, W, 1 | 3) in [0, 1])``; ``description`` goes in the PNG's
    ``Description`` (the card quotes its ``key=value`` words)."""
    count = rows[0][1].shape[0]
    canvas = figure(1.2 * count + 1.2, 1.3 * len(rows))
    for row, (title, images) in enumerate(rows):
        for column in range(count):
            axes = canvas.add_subplot(len(rows), count, row * count + column + 1)
            image = np.clip(images[column], 0.0, 1.0)
            if image.shape[-1] == 1:
                axes.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                axes.imshow(image)
            axes.set_xticks([])
            axes.set_yticks([])
            if column == 0:
                axes.set_ylabel(title, fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.savefig(path, format="png", bbox_inches="tight", metadata={"Description": description})
    return path


def _to_rgb_or_grey(images: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N, H, W, C)`` with C 1 or 3 (2-channel tensors are shown as their first channel)."""
    if images.shape[1] not in (1, 3):
        images = images[:, :1]
    return images.permute(0, 2, 3, 1).cpu().numpy()


def draw_reconstruction_triplets(model: torch.nn.Module, context: PictureContext, corruption: str = "",
                                 count: int = 8) -> list[Path]:
    """``images/reconstruction_triplets.png``: input / corrupted input / reconstruction for the first ``count``
    test images (fixed seed 0). A method's ``MethodSpec.pictures`` hook calls it; ``corruption`` (one word, such
    as ``gaussian_noise``) is quoted in the caption. Draws nothing without test images or a recipe."""
    if context.eval_dataset is None or context.recipe is None or len(context.eval_dataset) == 0:
        return []
    result, mean, std = reconstruction_batch(model, context.recipe, context.eval_dataset, count)
    corrupted = result.images("corrupted", mean, std)
    if result.mask is not None:  # outline the region the loss covers: a red tint on colour, mid-grey on grey
        corrupted = corrupted if corrupted.shape[1] == 3 else corrupted.expand(-1, 3, -1, -1)
        tint = torch.tensor([1.0, 0.0, 0.0], device=corrupted.device).view(1, 3, 1, 1)
        corrupted = torch.where(result.mask.bool(), 0.6 * corrupted + 0.4 * tint, corrupted)
    rows = [("input", _to_rgb_or_grey(result.images("original", mean, std))),
            ("corrupted", _to_rgb_or_grey(corrupted)),
            ("reconstruction", _to_rgb_or_grey(result.images("reconstructed", mean, std)))]
    words = [f"hfssl reconstruction_triplets count={rows[0][1].shape[0]}", f"masked={int(result.mask is not None)}"]
    if corruption:
        words.append(f"corruption={corruption.replace(' ', '_')}")
    return [save_image_rows(rows, context.images_dir / TRIPLETS.file, " ".join(words))]
