"""Split-brain's tiny config for the registry-parametrized tests (tests/models/test_common.py): one normalised RGB
view of four random 16 px images; the tiny ResNet's widths (16, 16, 32) split in halves of 8, 8, 16."""

from __future__ import annotations

from tiny import TINY_RESNET, one_view, register_tiny

register_tiny("split_brain", {"backbone_config": TINY_RESNET, "image_size": 16, "decoder_hidden_size": 16},
              one_view)
