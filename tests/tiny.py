"""Tiny configurations of every registered method, for the registry-parametrized tests.

Adding a method: add its tiny config keyword arguments and an input factory here; the shared
tests in tests/models/test_common.py then cover it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

TINY_RESNET = {"model_type": "resnet", "layer_type": "basic", "depths": [1, 1], "hidden_sizes": [16, 32],
               "embedding_size": 16}
TINY_VIT = {"model_type": "vit", "image_size": 16, "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 64}
TINY_CONVNEXT = {"model_type": "convnext", "patch_size": 2, "num_stages": 2, "depths": [1, 1], "hidden_sizes": [16, 32]}
TINY_VIT_MAE = {"model_type": "vit_mae", "image_size": 16, "patch_size": 4, "hidden_size": 32,
                "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
                "decoder_intermediate_size": 64}

IMAGE_SIZE = 16


def two_views(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(batch_size, 2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)}


def one_view(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)}


def word2vec_stream(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """A subsampled token stream of 8 centres per "example", as hfssl.models.word2vec.data builds it."""
    count = 8 * batch_size
    return {"input_ids": torch.randint(1, 100, (count,), generator=generator),
            "window_sizes": torch.randint(1, 3, (count,), generator=generator),
            "segment_ids": torch.arange(count) // 16,
            "negative_ids": torch.randint(1, 100, (batch_size, 4), generator=generator)}


def word2vec_edge_stream(block: int, shared: int, vocab: int, window: int, length: int = 24,
                         seed: int = 0) -> dict[str, torch.Tensor]:
    """A short word2vec stream with the edge cases: three segments, two padding positions, a repeated
    word, and in two blocks a shared negative equal to one of the block's centres."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (length,), generator=generator)
    ids[3] = ids[5]
    windows = torch.randint(1, window + 1, (length,), generator=generator)
    windows[-2:] = 0
    segments = torch.tensor([0] * 7 + [1] * 9 + [2] * (length - 18) + [-1] * 2)
    negatives = torch.randint(1, vocab, (length // block, shared), generator=generator)
    negatives[1, 0] = ids[2 * block - 1]
    negatives[2, shared - 1] = ids[3 * block - 1]
    return {"input_ids": ids, "window_sizes": windows, "segment_ids": segments, "negative_ids": negatives}


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


TINY_BERT = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def multi_crop(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """2 global crops of 16 px and 2 local crops of 8 px per image (DINO, SwAV)."""
    return {"pixel_values": torch.randn(batch_size, 2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
            "local_pixel_values": torch.randn(batch_size, 2, 3, IMAGE_SIZE // 2, IMAGE_SIZE // 2, generator=generator)}


# CLIP's tiny text tower: a full BertConfig over all-MiniLM-L6-v2's WordPiece vocabulary.
TINY_TEXT_TOWER = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}


def image_caption_pairs(batch_size: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One view per image and its tokenised caption (ids of the MiniLM WordPiece vocabulary, 6 tokens)."""
    return {"pixel_values": torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
            "input_ids": torch.randint(1000, 30000, (batch_size, 6), generator=generator),
            "attention_mask": torch.ones(batch_size, 6, dtype=torch.long)}


TINY: dict[str, tuple[dict[str, Any], Callable[..., dict[str, torch.Tensor]]]] = {
    "simclr": ({"backbone_config": TINY_RESNET, "projection_hidden_dim": 32, "projection_dim": 16}, two_views),
    "byol": ({"backbone_config": TINY_RESNET, "projection_hidden_dim": 32, "projection_dim": 16,
              "prediction_hidden_dim": 32}, two_views),
    "mae": ({"backbone_config": TINY_VIT_MAE}, one_view),
    # word2vec's torch kernel: the generic gradient checks apply to it (the default numba kernel updates the
    # weights in place and gives no gradients; tests/word2vec/test_word2vec_kernel.py covers it).
    "word2vec": ({"vocab_size": 100, "vector_size": 32, "window": 2, "negative_block_size": 8, "shared_negatives": 4,
                  "kernel": "torch", "word_counts": [0] + [1000 // rank for rank in range(1, 100)]}, word2vec_stream),
    "simsiam": ({"backbone_config": TINY_RESNET, "projection_hidden_dim": 32, "projection_dim": 16,
                 "prediction_hidden_dim": 8}, two_views),
    "vicreg": ({"backbone_config": TINY_RESNET, "projection_hidden_dim": 32, "projection_dim": 16}, two_views),
    "barlow_twins": ({"backbone_config": TINY_RESNET, "projection_hidden_dim": 32, "projection_dim": 16}, two_views),
    # MoCo v2 with a queue of 64 keys (a few batches), MoCo v3 on the tiny ViT with its frozen patch projection.
    "moco": ({"backbone_config": TINY_RESNET, "projection_hidden_dim": 32, "projection_dim": 16, "queue_size": 64},
             two_views),
    "moco_v3": ({"backbone_config": TINY_VIT, "projection_hidden_dim": 32, "projection_dim": 16,
                 "prediction_hidden_dim": 32}, two_views),
    # BERT masked language modelling: a 2-layer, 32-wide BERT over a vocabulary of 100.
    "mlm": ({"bert_config": TINY_BERT, "vocab_size": 100, "max_seq_length": 16}, masked_tokens),
    # DINO on the tiny ViT (local crops through interpolated position embeddings), SwAV on the tiny
    # ResNet with a queue of 8 rows that starts at once (tests/models/test_multicrop.py uses both backbones).
    "dino": ({"backbone_config": TINY_VIT, "head_hidden_dim": 32, "head_bottleneck_dim": 16, "head_output_dim": 64},
             multi_crop),
    "swav": ({"backbone_config": TINY_RESNET, "projection_hidden_dim": 32, "projection_dim": 16, "num_prototypes": 20,
              "queue_size": 8}, multi_crop),
    # CLIP: a tiny ViT image tower and a tiny BERT text tower over all-MiniLM-L6-v2's WordPiece vocabulary.
    "clip": ({"vision_config": TINY_VIT, "text_config": TINY_TEXT_TOWER, "projection_dim": 16,
              "tokenizer_name_or_path": "builtin:all-MiniLM-L6-v2"}, image_caption_pairs),
}


def tiny_model(method: str, **overrides: Any) -> torch.nn.Module:
    from hfssl.registry import get_method

    spec = get_method(method)
    kwargs, _ = TINY[method]
    torch.manual_seed(0)
    return spec.model_class(spec.config_class(**{**kwargs, **overrides}))


def tiny_inputs(method: str, batch_size: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    _, factory = TINY[method]
    return factory(batch_size, torch.Generator().manual_seed(seed))
