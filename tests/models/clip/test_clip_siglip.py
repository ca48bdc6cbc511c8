"""CLIP with ``model.loss: siglip`` (Zhai et al. 2023): initial scale and bias, the loss from the transformers
dual encoder's own logits plus the bias, the scale clamp, the bias in saved models, and bad loss names."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hfssl.models.clip import HfsslCLIPConfig, HfsslCLIPForPreTraining
from hfssl.recipe import recipe_from_dict
from hfssl.settings import RecipeError
from tiny import TINY, tiny_inputs, tiny_model


def test_siglip_starts_at_scale_10_and_bias_minus_10_and_clip_has_no_bias() -> None:
    model = tiny_model("clip", loss="siglip")
    assert model.backbone.logit_scale.item() == pytest.approx(math.log(10.0), abs=1e-6)
    assert model.logit_bias.item() == -10.0 and model.logit_bias.requires_grad
    assert "logit_bias" in dict(model.named_parameters())
    clip = tiny_model("clip")
    assert clip.logit_bias is None and "logit_bias" not in clip.state_dict()
    assert clip.backbone.logit_scale.item() == pytest.approx(math.log(1 / 0.07), abs=1e-6)
    # An explicit starting scale still wins over the loss's default.
    assert tiny_model("clip", loss="siglip", logit_scale_init_value=1.0).backbone.logit_scale.item() == 1.0


def test_the_loss_is_the_sigmoid_loss_of_the_transformers_logits_plus_the_bias() -> None:
    model = tiny_model("clip", loss="siglip", logit_bias_init_value=-2.0).eval()
    inputs = tiny_inputs("clip", batch_size=5)
    with torch.no_grad():
        output = model(**inputs)
        logits = model.backbone(**inputs).logits_per_image + model.logit_bias  # (5, 5): t cos + b
    signs = 2 * torch.eye(5) - 1
    expected = -torch.nn.functional.logsigmoid(signs * logits).sum() / 5
    torch.testing.assert_close(output.loss, expected)
    assert output.logit_bias.item() == -2.0


def test_the_scale_is_still_clipped_at_max_logit_scale() -> None:
    model = tiny_model("clip", loss="siglip", max_logit_scale=50.0)
    with torch.no_grad():
        model.backbone.logit_scale.fill_(6.0)  # exp(6) = 403
    assert model(**tiny_inputs("clip")).logit_scale.item() == pytest.approx(50.0, rel=1e-5)
    model.on_train_step_end(1, {})
    assert model.backbone.logit_scale.item() == pytest.approx(math.log(50.0), abs=1e-6)


def test_the_bias_is_saved_and_loaded_with_the_model(tmp_path: Path) -> None:
    model = tiny_model("clip", loss="siglip")
    with torch.no_grad():
        model.logit_bias.fill_(-3.25)
    model.save_pretrained(tmp_path)
    loaded = HfsslCLIPForPreTraining.from_pretrained(tmp_path)
    assert loaded.config.loss == "siglip" and loaded.logit_bias.item() == -3.25
    assert loaded.backbone.logit_scale.item() == pytest.approx(math.log(10.0), abs=1e-6)


def test_an_unknown_loss_names_the_key_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"model.loss='sigmoid'.*clip, siglip"):
        HfsslCLIPConfig(**{**TINY["clip"][0], "loss": "sigmoid"})
    with pytest.raises(RecipeError, match=r"model.loss='infonce'.*clip, siglip"):  # when the recipe is read
        recipe_from_dict({"method": "clip", "model": {**TINY["clip"][0], "loss": "infonce"},
                          "data": {"source": "captions", "image_size": 16, "channels": 3}}, check_model=False)


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_a_bad_gradient_cache_chunk_size_names_the_key(value: object) -> None:
    with pytest.raises(ValueError, match="model.gradient_cache_chunk_size must be an integer >= 1"):
        HfsslCLIPConfig(**{**TINY["clip"][0], "gradient_cache_chunk_size": value})
