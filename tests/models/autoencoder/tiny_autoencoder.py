"""Tiny configs of the autoencoder family for the registry-parametrized tests (tests/models/test_common.py): one
file for the five methods of ``hfssl/models/autoencoder`` (one folder, one modeling file), each with the inputs its
builder makes (clean and corrupted views, the VAE's eps, the contractive projections) at 16 px."""

from __future__ import annotations

import torch

from tiny import IMAGE_SIZE, TINY_RESNET, one_view, register_tiny

#: Shared by the five: the tiny ResNet (32 features), a 16 px reconstruction from a 4 px start map.
BASE = {"backbone_config": TINY_RESNET, "image_size": IMAGE_SIZE, "decoder_hidden_size": 16, "decoder_num_upsamples": 2}


def noisy_and_clean(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    clean = torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return {"pixel_values": clean + 0.3 * torch.randn(clean.shape, generator=generator), "target_pixel_values": clean}


def view_and_eps(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    return {**one_view(batch_size, generator), "noise": torch.randn(batch_size, 32, generator=generator)}


def view_and_projections(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    return {**one_view(batch_size, generator), "projections": torch.randn(2, batch_size, 8, generator=generator)}


register_tiny("autoencoder", {**BASE, "bottleneck_dim": 8}, one_view)
register_tiny("denoising_autoencoder", {**BASE, "bottleneck_dim": 8, "noise_masking": 0.25}, noisy_and_clean)
register_tiny("sparse_autoencoder", {**BASE, "bottleneck_dim": 16}, one_view)
register_tiny("vae", {**BASE}, view_and_eps)
register_tiny("contractive_autoencoder", {**BASE, "bottleneck_dim": 8, "contractive_projections": 2},
              view_and_projections)
