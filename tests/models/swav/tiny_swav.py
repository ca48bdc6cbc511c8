"""SwAV's tiny config for the registry-parametrized tests (tests/models/test_common.py)."""

from __future__ import annotations

from tiny import TINY_RESNET, multi_crop, register_tiny

# On the tiny ResNet with a queue of 8 rows that starts at once.
register_tiny("swav", {"backbone_config": TINY_RESNET, "projection_hidden_dim": 32, "projection_dim": 16,
                       "num_prototypes": 20, "queue_size": 8}, multi_crop)
