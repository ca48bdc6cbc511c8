"""MAE's picture for the model card: masked inputs, reconstructions and originals of test images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfssl.data.images import read_pixels
from hfssl.plots import Picture, PictureContext, register_picture, save_reconstruction_plot
from hfssl.views import build_eval_transform


def _reconstructions_caption(description: dict[str, str], name: str) -> str:
    ratio = description.get("mask_ratio")
    removed = f"{100 * float(ratio):.0f} % removed" if ratio else "the rest masked at random"
    return (f"Top row: the visible patches the encoder saw ({removed}); middle: the decoder's reconstruction with the "
            "visible patches pasted back; bottom: the original test images.")


RECONSTRUCTIONS = register_picture(Picture("reconstructions.png", "Masked inputs, reconstructions and originals",
                                           _reconstructions_caption, heading="Reconstructions", order=60))


def draw_reconstructions(model: torch.nn.Module, context: PictureContext) -> list[Path]:
    """``MethodSpec.pictures`` of MAE: ``images/reconstructions.png`` from 8 test images (fixed mask)."""
    if context.eval_dataset is None or context.recipe is None:
        return []
    originals, reconstructions, masked = mae_reconstructions(model, context.recipe, context.eval_dataset, count=8)
    return [save_reconstruction_plot(originals, reconstructions, masked, context.images_dir / RECONSTRUCTIONS.file,
                                     mask_ratio=float(model.config.mask_ratio))]


@torch.no_grad()
def mae_reconstructions(model: torch.nn.Module, recipe: Any, dataset: Any, count: int = 8
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Originals, reconstructions (visible patches pasted back) and masked inputs, ``(N, H, W, C)`` in [0, 1]."""
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    pixels = torch.as_tensor(read_pixels(dataset, 0, min(count, len(dataset))))
    device = next(model.parameters()).device
    pixel_values = transform(pixels.to(device))
    generator = torch.Generator(device="cpu").manual_seed(0)
    patch = model.config.backbone_config.patch_size
    num_patches = (pixel_values.shape[-1] // patch) ** 2
    noise = torch.rand(pixel_values.shape[0], num_patches, generator=generator).to(device)
    outputs = model(pixel_values=pixel_values, noise=noise)
    mae = model.mae
    prediction = outputs.logits
    if model.config.norm_pix_loss:
        # Undo the per-patch normalisation with the true patch statistics (MAE's visualisation).
        target = mae.patchify(pixel_values)
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        prediction = prediction * (var + 1e-6) ** 0.5 + mean
    mask = outputs.mask.unsqueeze(-1)  # (B, num_patches, 1), 1 = removed
    visible = mae.patchify(pixel_values)
    pasted = mae.unpatchify(visible * (1 - mask) + prediction * mask)
    masked = mae.unpatchify(visible * (1 - mask))
    mean = torch.tensor(recipe.views.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(recipe.views.std, device=device).view(1, -1, 1, 1)

    def to_images(tensor: torch.Tensor) -> np.ndarray:
        return (tensor * std + mean).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    return to_images(pixel_values), to_images(pasted), to_images(masked)
