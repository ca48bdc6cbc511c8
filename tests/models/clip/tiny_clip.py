"""CLIP's tiny config and inputs: a tiny ViT image tower and a tiny BERT text tower over all-MiniLM-L6-v2's
WordPiece vocabulary."""

from __future__ import annotations

import torch

from tiny import IMAGE_SIZE, TINY_TEXT_TOWER, TINY_VIT, register_tiny


def image_caption_pairs(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One view per image and its tokenised caption (ids of the MiniLM WordPiece vocabulary, 6 tokens)."""
    return {"pixel_values": torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
            "input_ids": torch.randint(1000, 30000, (batch_size, 6), generator=generator),
            "attention_mask": torch.ones(batch_size, 6, dtype=torch.long)}


register_tiny("clip", {"vision_config": TINY_VIT, "text_config": TINY_TEXT_TOWER, "projection_dim": 16,
                       "tokenizer_name_or_path": "builtin:all-MiniLM-L6-v2"}, image_caption_pairs)
