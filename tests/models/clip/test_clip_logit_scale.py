"""CLIP's logit scale ``exp(t)`` stays in [1, 100]: ``t`` is clamped to [0, ln 100] in the loss and on
the parameter after every step, as in the official code and open_clip."""

from __future__ import annotations

import math

import pytest
import torch

from tests.tiny import tiny_inputs, tiny_model


@pytest.mark.parametrize("value, expected", [(-3.0, 0.0), (0.0, 0.0), (2.0, 2.0), (7.0, math.log(100.0))])
def test_the_logit_scale_is_clamped_to_zero_and_ln_100(value, expected):
    model = tiny_model("clip")
    with torch.no_grad():
        model.backbone.logit_scale.fill_(value)
    output = model(**tiny_inputs("clip"))
    assert output.logit_scale.item() == pytest.approx(math.exp(expected), rel=1e-6)
    model.on_train_step_end(1, {})
    assert model.backbone.logit_scale.item() == pytest.approx(expected, abs=1e-7)


def test_a_negative_starting_scale_is_refused():
    with pytest.raises(ValueError, match="logit_scale_init_value"):
        tiny_model("clip", logit_scale_init_value=-1.0)
