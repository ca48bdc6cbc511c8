"""The supervised baseline's tiny config for the registry-parametrized tests (tests/models/test_common.py): two
random 16 px views of four images, as the multi_view generator makes them, and a class id for each image."""

from __future__ import annotations

import torch

from tiny import TINY_RESNET, register_tiny, two_views

NUM_CLASSES = 5


def two_labelled_views(batch_size: int = 4, generator: torch.Generator | None = None, *,
                       channels: int = 3) -> dict[str, torch.Tensor]:
    inputs = two_views(batch_size, generator, channels=channels)
    return {**inputs, "labels": torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator)}


register_tiny("supervised", {"backbone_config": TINY_RESNET, "num_classes": NUM_CLASSES}, two_labelled_views)
