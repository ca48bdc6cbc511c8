"""Relative patch position's tiny config for the registry-parametrized tests (tests/models/test_common.py)."""

from __future__ import annotations

import torch

from tiny import TINY_RESNET, register_tiny

TINY_RELATIVE_PATCH = {"backbone_config": TINY_RESNET, "patch_size": 8, "gap": 2, "jitter": 1,
                       "patch_embedding_dim": 8, "classifier_hidden_dim": 16}


def patch_pairs(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """A centre patch and a neighbour per image, and the neighbour's place."""
    return {"pixel_values": torch.randn(batch_size, 2, 3, 8, 8, generator=generator),
            "labels": torch.randint(8, (batch_size,), generator=generator)}


register_tiny("relative_patch", TINY_RELATIVE_PATCH, patch_pairs, image_size=32)  # 3x3 grid of 8-px patches, gap 2: >= 30 px
