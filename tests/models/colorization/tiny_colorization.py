"""Colorization's tiny config for the registry-parametrized tests (tests/models/test_common.py): one normalised RGB
view of four random 16 px images."""

from __future__ import annotations

from tiny import TINY_RESNET, one_view, register_tiny

register_tiny("colorization", {"backbone_config": TINY_RESNET, "image_size": 16, "decoder_hidden_size": 16},
              one_view)
