"""RotNet's tiny config for the registry-parametrized tests (tests/models/test_common.py): the four rotations of
four random 16 px images, as the input builder makes them."""

from __future__ import annotations

import torch

from hfssl.models.rotnet import rotate_all
from tiny import IMAGE_SIZE, TINY_RESNET, register_tiny


def four_rotations(batch_size: int = 4, generator: torch.Generator | None = None, *,
                   channels: int = 3) -> dict[str, torch.Tensor]:
    pixel_values, labels = rotate_all(torch.randn(batch_size, channels, IMAGE_SIZE, IMAGE_SIZE, generator=generator))
    return {"pixel_values": pixel_values, "labels": labels}


register_tiny("rotnet", {"backbone_config": TINY_RESNET}, four_rotations)
