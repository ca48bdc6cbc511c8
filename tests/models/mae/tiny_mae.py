"""MAE's tiny config for the registry-parametrized tests (tests/models/test_common.py)."""

from __future__ import annotations

from tiny import TINY_VIT_MAE, one_view, register_tiny

register_tiny("mae", {"backbone_config": TINY_VIT_MAE}, one_view)
