"""BERT masked language modelling's tiny config and inputs: a 2-layer, 32-wide BERT over a vocabulary of 100."""

from __future__ import annotations

import torch

from tiny import TINY_BERT, register_tiny


def masked_tokens(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Rows of 16 token ids (vocabulary 100, ids 0-4 special) with about 25 % of them chosen for prediction."""
    input_ids = torch.randint(5, 100, (batch_size, 16), generator=generator)
    input_ids[:, 0] = 2  # [CLS]
    chosen = torch.rand(batch_size, 16, generator=generator) < 0.25
    chosen[:, 0] = False
    chosen[:, 1] = True  # at least one prediction per row
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    return {"input_ids": torch.where(chosen, torch.full_like(input_ids, 4), input_ids), "labels": labels,
            "attention_mask": torch.ones_like(input_ids)}


register_tiny("mlm", {"bert_config": TINY_BERT, "vocab_size": 100, "max_seq_length": 16}, masked_tokens)
