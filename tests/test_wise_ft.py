"""hfssl.wise_ft: the interpolation of two dual encoders (exact at the ends, the mean half-way, integer buffers from
B), the architecture check and the parsing of --alpha. The real CLI on two trained runs is
tests/models/clip/test_clip_wise_ft.py."""

from __future__ import annotations

import pytest
import torch

from hfssl.models.clip import HfsslCLIPConfig, HfsslCLIPForPreTraining
from hfssl.settings import RecipeError
from hfssl.wise_ft import check_same_architecture, interpolate_state, interpolated_model, parse_alphas
from tiny import TINY


def _dual(seed: int, **changes: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return HfsslCLIPForPreTraining(HfsslCLIPConfig(**{**TINY["clip"][0], **changes})).backbone.eval()


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    model_a, model_b = _dual(0), _dual(1)
    with torch.no_grad():  # integer buffers that differ, to see whose are kept
        model_b.text_model.embeddings.token_type_ids.fill_(1)
    return model_a, model_b


def test_alpha_0_and_1_give_a_and_b_exactly(pair: tuple[torch.nn.Module, torch.nn.Module]) -> None:
    model_a, model_b = pair
    for alpha, expected in ((0.0, model_a), (1.0, model_b)):
        state = interpolated_model(model_a, model_b, alpha).state_dict()
        for name, tensor in expected.state_dict().items():
            if tensor.is_floating_point():
                assert torch.equal(state[name], tensor), (alpha, name)


def test_alpha_half_is_the_mean_and_integer_buffers_come_from_b(pair: tuple[torch.nn.Module, torch.nn.Module]) -> None:
    model_a, model_b = pair
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    mixed = interpolate_state(state_a, state_b, 0.5)
    floating = [name for name, tensor in state_b.items() if tensor.is_floating_point()]
    assert len(floating) > 20 and any(not torch.equal(state_a[name], state_b[name]) for name in floating)
    for name in floating:
        mean = ((state_a[name].double() + state_b[name].double()) / 2).to(state_b[name].dtype)
        assert torch.equal(mixed[name], mean), name
    # the model loads it, the logit scale too; integer buffers (here non-persistent: outside the state dict) are B's
    model = interpolated_model(model_a, model_b, 0.25)
    expected = 0.75 * model_a.logit_scale.item() + 0.25 * model_b.logit_scale.item()
    assert model.logit_scale.item() == pytest.approx(expected, rel=1e-6)
    integer = {name: tensor for name, tensor in model_b.named_buffers() if not tensor.is_floating_point()}
    assert integer and not torch.equal(integer["text_model.embeddings.token_type_ids"],
                                       dict(model_a.named_buffers())["text_model.embeddings.token_type_ids"])
    for name, tensor in model.named_buffers():
        if name in integer:
            assert torch.equal(tensor, integer[name]), name

def test_different_architectures_are_refused_naming_the_tensor() -> None:
    model_a = _dual(0)
    with pytest.raises(ValueError, match=r"visual_projection\.weight has shape \(16, 32\) in A and \(8, 32\) in B"):
        check_same_architecture(model_a, _dual(0, projection_dim=8))
    deeper = _dual(0, text_config={**TINY["clip"][0]["text_config"], "num_hidden_layers": 3})
    with pytest.raises(ValueError, match=r"tensors only in B \(text_model\.encoder\.layer\.2\."):
        check_same_architecture(model_a, deeper)
    with pytest.raises(ValueError, match="A is a VisionTextDualEncoderModel and B a ViTModel"):
        check_same_architecture(model_a, model_a.vision_model)


def test_alphas_are_parsed_sorted_and_checked() -> None:
    assert parse_alphas("1,0,0.5,0.5") == [0.0, 0.5, 1.0]
    for bad in ("0,1.5", "a,b", "", "nan"):
        with pytest.raises(RecipeError, match="--alpha"):
            parse_alphas(bad)
