"""MoCo v3's tiny config for the registry-parametrized tests (tests/models/test_common.py)."""

from __future__ import annotations

from tiny import TINY_VIT, register_tiny, two_views

# On the tiny ViT, with its frozen patch projection.
register_tiny("moco_v3", {"backbone_config": TINY_VIT, "projection_hidden_dim": 32, "projection_dim": 16,
                          "prediction_hidden_dim": 32}, two_views)
