"""The context encoder's tiny config for the registry-parametrized tests (tests/models/test_common.py): random
16 px images with their central quarter removed, and a two-layer discriminator."""

from __future__ import annotations

import torch

from hfssl.models.context_encoder import center_mask
from tiny import IMAGE_SIZE, TINY_RESNET, register_tiny

TINY_CONTEXT_ENCODER = {"backbone_config": TINY_RESNET, "image_size": IMAGE_SIZE,
                        "decoder_options": {"hidden_size": 16, "num_upsamples": 2},
                        "discriminator_channels": 8, "discriminator_layers": 2}


def masked_images(batch_size: int = 4, generator: torch.Generator | None = None, *,
                  channels: int = 3) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(batch_size, channels, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
            "mask": center_mask(batch_size, IMAGE_SIZE, 0.5)}


register_tiny("context_encoder", TINY_CONTEXT_ENCODER, masked_images)
