"""Jigsaw's tiny config for the registry-parametrized tests (tests/models/test_common.py): 8-px tiles on a
3x3 grid, 10 permutations (computed once here and given to the config, as a saved config holds them)."""

from __future__ import annotations

import torch

from hfssl.models.jigsaw.permutations import maximal_hamming_permutations
from tiny import TINY_RESNET, register_tiny

PERMUTATIONS = maximal_hamming_permutations(10, 9, seed=0)
TINY_JIGSAW = {"backbone_config": TINY_RESNET, "tile_size": 8, "gap": 2, "jitter": 1, "num_permutations": 10,
               "permutations": PERMUTATIONS, "tile_embedding_dim": 8, "classifier_hidden_dim": 16}


def puzzles(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Nine shown tiles per image and the permutation's index."""
    return {"pixel_values": torch.randn(batch_size, 9, 3, 8, 8, generator=generator),
            "labels": torch.randint(10, (batch_size,), generator=generator)}


register_tiny("jigsaw", TINY_JIGSAW, puzzles, image_size=32)  # 3x3 grid of 8-px tiles, gap 2: >= 30 px
