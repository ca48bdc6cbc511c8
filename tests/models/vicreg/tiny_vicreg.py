"""VICReg's tiny config for the registry-parametrized tests (tests/models/test_common.py)."""

from __future__ import annotations

from tiny import TINY_RESNET, register_tiny, two_views

register_tiny("vicreg", {"backbone_config": TINY_RESNET, "projection_hidden_dim": 32, "projection_dim": 16}, two_views)
