"""CLIP's gradient cache (``model.gradient_cache_chunk_size``): the cached model's parameter gradients equal
the plain model's, for the CLIP and the SigLIP loss, with dropout in both towers (the cache replays each
chunk's masks) and with a locked tower (run once, never recomputed)."""

from __future__ import annotations

import pytest
import torch

from tiny import TINY, tiny_inputs, tiny_model

def _dropout(probability: float) -> dict[str, float]:
    return {"hidden_dropout_prob": probability, "attention_probs_dropout_prob": probability}
LOCKS = {None: {}, "image": {"lock_image_tower": True}, "text": {"lock_text_tower": True}}


def _model(loss: str, lock: str | None, dropout: bool, chunk_size: int | None, **towers: object) -> torch.nn.Module:
    kwargs = dict(TINY["clip"][0])
    probability = 0.1 if dropout else 0.0  # the tiny BERT tower's default is 0.1
    kwargs["vision_config"] = {**kwargs["vision_config"], **_dropout(probability)}
    kwargs["text_config"] = {**kwargs["text_config"], **_dropout(probability)}
    model = tiny_model("clip", **kwargs, loss=loss, gradient_cache_chunk_size=chunk_size, **LOCKS[lock], **towers)
    if loss == "siglip":
        with torch.no_grad():
            model.logit_bias.fill_(-1.0)  # away from -10, where every sigmoid saturates and gradients vanish
    return model.double().train()  # float64: equal up to summation order, so the tolerance can be tight


def _inputs() -> dict[str, torch.Tensor]:
    inputs = tiny_inputs("clip", batch_size=8)
    inputs["attention_mask"][5:, 4:] = 0  # some padded captions
    return {**inputs, "pixel_values": inputs["pixel_values"].double()}


def _gradients(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}


def _assert_same(cached: dict[str, torch.Tensor], plain: dict[str, torch.Tensor]) -> None:
    assert cached.keys() == plain.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(cached[name], grad, rtol=1e-9, atol=1e-11, msg=name)


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_cached_gradients_equal_the_full_batch(loss: str) -> None:
    inputs = _inputs()
    plain_model = _model(loss, None, dropout=False, chunk_size=None)
    plain_loss = plain_model(**inputs).loss
    plain = _gradients(plain_model, plain_loss)
    cached_model = _model(loss, None, dropout=False, chunk_size=3)  # chunks of 3, 3 and 2 pairs
    cached_loss = cached_model(**inputs).loss
    torch.testing.assert_close(cached_loss, plain_loss)
    _assert_same(_gradients(cached_model, cached_loss), plain)
    assert len(plain) == sum(1 for p in plain_model.parameters() if p.requires_grad)


@pytest.mark.parametrize("lock", [None, "image", "text"])
@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_with_dropout_and_locks_the_cache_equals_a_plain_forward_of_the_same_chunks(loss: str, lock: str | None) -> None:
    """With dropout the chunks draw their own masks: the reference embeds the same chunks in the same order
    from the same random state without the cache; the cache must replay those masks in its backward. A
    locked tower (no dropout: inference mode) runs once on the whole batch and is not recomputed."""
    inputs = _inputs()
    model = _model(loss, lock, dropout=True, chunk_size=3)
    calls = {"vision": 0, "text": 0}
    model.backbone.vision_model.register_forward_hook(lambda *_: calls.__setitem__("vision", calls["vision"] + 1))
    model.backbone.text_model.register_forward_hook(lambda *_: calls.__setitem__("text", calls["text"] + 1))

    torch.manual_seed(7)
    images = torch.cat([model.get_image_features(part) for part in inputs["pixel_values"].split(3)])
    texts = torch.cat([model.get_text_features(ids, mask) for ids, mask in
                       zip(inputs["input_ids"].split(3), inputs["attention_mask"].split(3))])
    extra = () if model.logit_bias is None else (model.logit_bias,)
    plain_loss = model.criterion(images, texts, model.clipped_logit_scale(), *extra)
    plain = _gradients(model, plain_loss)

    calls.update(vision=0, text=0)
    torch.manual_seed(7)
    cached_loss = model(**inputs).loss
    torch.manual_seed(123)  # the backward replays the forward's random state, whatever the current one
    cached = _gradients(model, cached_loss)
    torch.testing.assert_close(cached_loss, plain_loss)
    _assert_same(cached, plain)
    # 3 chunks forward + 3 again in the backward for a trained tower; 1 call for a locked one.
    assert calls == {"vision": 1 if lock == "image" else 6, "text": 1 if lock == "text" else 6}
    if lock is not None:
        locked = model.backbone.vision_model if lock == "image" else model.backbone.text_model
        assert all(parameter.grad is None for parameter in locked.parameters())
        projection = model.backbone.visual_projection if lock == "image" else model.backbone.text_projection
        assert projection.weight.grad is not None


def test_no_cache_in_evaluation() -> None:
    model = _model("clip", None, dropout=False, chunk_size=3).eval()
    calls = []
    model.backbone.vision_model.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model(**_inputs())
    assert len(calls) == 1


@pytest.mark.parametrize("towers", [{"patch_dropout": 0.5}, {"lock_text_tower": True, "unlock_last_layers_text": 1}])
def test_patch_dropout_and_partly_unlocked_towers_through_the_cache_equal_the_full_batch(towers: dict) -> None:
    """Patch dropout: the noise rows are chunked with the pixels, so the backward recomputes the same
    patches. A locked tower with its last layer unlocked has trainable parameters: it goes through the cache
    (6 calls), and its gradients are the plain forward's."""
    inputs = _inputs()
    if "patch_dropout" in towers:
        inputs["patch_dropout_noise"] = torch.rand(8, 16, generator=torch.Generator().manual_seed(3))
    models = {chunk_size: _model("siglip", None, dropout=False, chunk_size=chunk_size, **towers)
              for chunk_size in (None, 3)}
    calls = []
    models[3].backbone.text_model.register_forward_hook(lambda *_: calls.append(1))
    plain_loss = models[None](**inputs).loss
    cached_loss = models[3](**inputs).loss
    torch.testing.assert_close(cached_loss, plain_loss, rtol=1e-9, atol=1e-11)
    plain, cached = _gradients(models[None], plain_loss), _gradients(models[3], cached_loss)
    _assert_same(cached, plain)
    assert len(calls) == 6
    if "unlock_last_layers_text" in towers:
        assert any("text_model" in name for name in cached)
        assert not any("text_model.embeddings" in name for name in cached)
