"""SimCSE's tiny config and inputs: a 2-layer, 32-wide BERT over a vocabulary of 100, unsupervised batches."""

from __future__ import annotations

import torch

from tiny import TINY_BERT, register_tiny

TINY_SIMCSE = {"encoder_config": {**TINY_BERT, "vocab_size": 100}, "max_seq_length": 16}


def sentences(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Rows of up to 12 token ids with padding, and distinct text keys."""
    input_ids = torch.randint(5, 100, (batch_size, 12), generator=generator)
    input_ids[:, 0] = 2  # [CLS]
    attention_mask = torch.ones_like(input_ids)
    attention_mask[::2, 8:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "text_keys": torch.arange(batch_size) * 7 + 1}


register_tiny("simcse", TINY_SIMCSE, sentences)
