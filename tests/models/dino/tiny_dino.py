"""DINO's tiny config for the registry-parametrized tests (tests/models/test_common.py)."""

from __future__ import annotations

from tiny import TINY_VIT, multi_crop, register_tiny

# On the tiny ViT, local crops through interpolated position embeddings (tests/models/dino/test_dino.py also
# runs it on the tiny ResNet).
register_tiny("dino", {"backbone_config": TINY_VIT, "head_hidden_dim": 32, "head_bottleneck_dim": 16,
                       "head_output_dim": 64}, multi_crop)
