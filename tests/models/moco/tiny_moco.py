"""MoCo v2's tiny config for the registry-parametrized tests (tests/models/test_common.py)."""

from __future__ import annotations

from tiny import TINY_RESNET, register_tiny, two_views

# A queue of 64 keys (a few batches).
register_tiny("moco", {"backbone_config": TINY_RESNET, "projection_hidden_dim": 32, "projection_dim": 16,
                       "queue_size": 64}, two_views)
