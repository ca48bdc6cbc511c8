"""Evaluation of causal (next-token) language models: held-out perplexity and next-token accuracy.

:func:`next_token_scores` (protocol ``next-token``): held-out documents, each ended by the end-of-text
token, are packed into rows of ``max_seq_length`` tokens exactly as causal-LM training rows
(:func:`hfssl.data.token_rows.pack_documents` with one token shared by consecutive rows and an end-of-text
token before the first document), so the rows are fixed by the texts and the tokenizer alone (no
randomness); every token after the first is predicted once from the tokens before it in its row.
Reported: perplexity ``exp(mean cross-entropy)``, the mean cross-entropy (``loss``, nats per token) and
the share of tokens that are the model's top prediction (``accuracy``), over ``tokens`` predictions.
Perplexities are comparable between models that share a tokenizer only.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hfssl.data.token_rows import encode_documents, pack_documents
from hfssl.evaluation.text import TextModel
from hfssl.losses.causal_lm import linear_cross_entropy


def causal_rows(tokenizer: Any, texts: list[str], max_seq_length: int) -> tuple[list[list[int]], list[int]]:
    """The fixed evaluation rows of ``texts`` and their numbers of real tokens."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token: next-token evaluation ends every document with it")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return pack_documents(encode_documents(texts, tokenizer), None, eos, pad, max_seq_length, overlap=1, lead_id=eos)


@torch.no_grad()
def next_token_scores(text_model: TextModel, texts: list[str], max_seq_length: int = 128, batch_size: int = 16
                      ) -> dict[str, float | int]:
    """Perplexity, mean cross-entropy and next-token accuracy of a causal LM on ``texts`` (see the module docstring)."""
    model = text_model.masked_lm
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if limit is not None and max_seq_length > limit:
        raise ValueError(f"eval.next-token.max_seq_length {max_seq_length} is above the model's {limit} positions")
    rows, lengths = causal_rows(text_model.tokenizer, texts, max_seq_length)
    if not rows:
        raise ValueError("the held-out texts hold no tokens")
    device = text_model.device
    output_layer = model.get_output_embeddings()
    total, correct, count = 0.0, 0, 0
    for start in range(0, len(rows), batch_size):
        input_ids = torch.tensor(rows[start:start + batch_size], dtype=torch.int64, device=device)
        real = torch.arange(max_seq_length, device=device) < torch.tensor(lengths[start:start + batch_size],
                                                                          device=device)[:, None]
        hidden = model.base_model(input_ids=input_ids).last_hidden_state  # (B, L, H); right padding, causal attention
        chosen = real[:, 1:]
        loss, hits = linear_cross_entropy(hidden[:, :-1][chosen], output_layer.weight, output_layer.bias,
                                          input_ids[:, 1:][chosen], chunk_size=1024)
        total += float(loss)
        correct += int(hits)
        count += int(chosen.sum())
    loss = total / max(count, 1)
    return {"perplexity": math.exp(min(loss, 50.0)), "loss": loss, "accuracy": correct / max(count, 1), "tokens": count}
