"""Causal language modelling's tiny config and inputs: a 2-layer, 32-wide GPT-2 over a vocabulary of 100."""

from __future__ import annotations

import torch

from tiny import register_tiny

TINY_GPT2 = {"n_layer": 2, "n_embd": 32, "n_head": 2}


def packed_rows(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Rows of 16 token ids (vocabulary 100, id 0 = end of text), the last row padded after 9 tokens."""
    input_ids = torch.randint(1, 100, (batch_size, 16), generator=generator)
    input_ids[:, 5] = 0  # a document ends inside every row
    attention_mask = torch.ones_like(input_ids)
    attention_mask[-1, 9:] = 0
    input_ids[-1, 9:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


register_tiny("clm", {"decoder_config": TINY_GPT2, "vocab_size": 100, "max_seq_length": 16}, packed_rows)
