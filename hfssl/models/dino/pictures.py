"""DINO's picture for the model card: the last layer's [CLS] self-attention of a few test images (ViT only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hfssl.data.images import read_pixels
from hfssl.plots import Picture, PictureContext, register_picture, save_attention_plot
from hfssl.views import build_eval_transform

ATTENTION_PICTURE = "attention_maps.png"
register_picture(Picture(
    ATTENTION_PICTURE, "Self-attention of the [CLS] token on test images",
    "Self-attention of the last layer's [CLS] token to every image patch, one row per attention head, on test\n"
    "images that pre-training never saw (as in fig. 3 of the DINO paper); brighter patches receive more attention.\n"
    "No labels or segmentation were used in training.", heading="Attention maps", order=70))
MAX_HEADS = 6


def draw_attention_maps(model: torch.nn.Module, context: PictureContext) -> list[Path]:
    """``MethodSpec.pictures`` of DINO: ``images/attention_maps.png`` from 8 test images when the
    backbone is a ViT (convolutional backbones have no [CLS] attention: no picture)."""
    if context.eval_dataset is None or context.recipe is None or not is_vision_transformer(model.get_backbone()):
        return []
    originals, attentions = cls_attention_maps(model.get_backbone(), context.recipe, context.eval_dataset, count=8)
    return [save_attention_plot(originals, attentions, context.images_dir / ATTENTION_PICTURE)]


def is_vision_transformer(backbone: torch.nn.Module) -> bool:
    config = backbone.config
    return hasattr(config, "patch_size") and hasattr(config, "num_attention_heads") and hasattr(config, "image_size")


@torch.no_grad()
def cls_attention_maps(backbone: torch.nn.Module, recipe: Any, dataset: Any, count: int = 8
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Originals ``(N, H, W, C)`` in [0, 1] and the last layer's attention of [CLS] to every patch,
    ``(heads, N, H, W)``, upsampled (nearest) to the image size (DINO fig. 3; at most 6 heads shown).

    Attention weights need transformers' eager attention: it is switched on for this pass only."""
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    pixels = torch.as_tensor(read_pixels(dataset, 0, min(count, len(dataset))))
    device = next(backbone.parameters()).device
    pixel_values = transform(pixels.to(device))
    previous = backbone.config._attn_implementation
    was_training = backbone.training
    backbone.eval()
    backbone.set_attn_implementation("eager")
    try:
        outputs = backbone(pixel_values=pixel_values, output_attentions=True,
                           interpolate_pos_encoding=pixel_values.shape[-1] != backbone.config.image_size)
    finally:
        backbone.set_attn_implementation(previous)
        backbone.train(was_training)
    attention = outputs.attentions[-1][:, :MAX_HEADS, 0, 1:]  # (N, heads, patches): [CLS] -> every patch
    grid = pixel_values.shape[-1] // backbone.config.patch_size
    attention = attention.reshape(attention.shape[0], attention.shape[1], grid, grid)
    attention = F.interpolate(attention, size=pixel_values.shape[-2:], mode="nearest")  # (N, heads, H, W)
    mean = torch.tensor(recipe.views.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(recipe.views.std, device=device).view(1, -1, 1, 1)
    originals = (pixel_values * std + mean).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return originals, attention.transpose(0, 1).float().cpu().numpy()
