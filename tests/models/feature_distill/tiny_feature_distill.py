"""Feature distillation's tiny config for the registry-parametrized tests (tests/models/test_common.py): a tiny
student ResNet and a (randomly initialised) teacher of another width, named by its config alone."""

from __future__ import annotations

from tiny import TINY_RESNET, one_view, register_tiny

TEACHER = {**TINY_RESNET, "hidden_sizes": [16, 24]}

register_tiny("feature_distill", {"backbone_config": TINY_RESNET, "teacher_config": TEACHER,
                                  "projection_hidden_dim": 32}, one_view)
