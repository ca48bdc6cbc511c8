"""The gradient cache (hfssl/losses/gradient_cache.py) gives the full-batch gradients of an in-batch-negative loss."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertModel

from hfssl.losses import SimCSELoss
from hfssl.losses.gradient_cache import cached_embeddings


def _encoder(dropout: float) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertModel(config, add_pooling_layer=False).train()


def _inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 100, (8, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[::3, 6:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _encode(encoder: BertModel):
    def encode(rows):
        hidden = encoder(**rows).last_hidden_state
        mask = rows["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1)
    return encode


def _gradients(encoder: BertModel, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
    loss, _ = SimCSELoss(0.05)(embeddings[:4], embeddings[4:])
    encoder.zero_grad(set_to_none=True)
    loss.backward()
    return {name: parameter.grad.clone() for name, parameter in encoder.named_parameters()}, loss.detach()


def test_cached_gradients_equal_the_full_batch():
    encoder = _encoder(dropout=0.0)
    inputs = _inputs()
    full, full_loss = _gradients(encoder, _encode(encoder)(inputs))
    for chunk_size in (3,):
        cached, loss = _gradients(encoder, cached_embeddings(_encode(encoder), inputs, chunk_size, encoder.parameters()))
        torch.testing.assert_close(loss, full_loss)
        for name in full:
            torch.testing.assert_close(cached[name], full[name], rtol=1e-5, atol=1e-5, msg=name)


def test_the_backward_replays_each_chunks_dropout():
    """With dropout, the cache equals a plain forward of the same chunks from the same random state."""
    encoder = _encoder(dropout=0.1)
    inputs = _inputs()
    rows = [{name: value[start:start + 3] for name, value in inputs.items()} for start in (0, 3, 6)]
    torch.manual_seed(7)
    plain, plain_loss = _gradients(encoder, torch.cat([_encode(encoder)(chunk) for chunk in rows]))
    torch.manual_seed(7)
    embeddings = cached_embeddings(_encode(encoder), inputs, 3, encoder.parameters())
    torch.manual_seed(123)  # the backward does not depend on the random state it runs in
    cached, loss = _gradients(encoder, embeddings)
    torch.testing.assert_close(loss, plain_loss)
    for name in plain:
        torch.testing.assert_close(cached[name], plain[name], rtol=1e-5, atol=1e-5, msg=name)


def test_no_cache_without_gradients_or_chunks():
    encoder = _encoder(dropout=0.0).eval()
    inputs = _inputs()
    with torch.no_grad():
        expected = _encode(encoder)(inputs)
        torch.testing.assert_close(cached_embeddings(_encode(encoder), inputs, 4, encoder.parameters()), expected)
    torch.testing.assert_close(cached_embeddings(_encode(encoder), inputs, None, encoder.parameters()).detach(), expected)
