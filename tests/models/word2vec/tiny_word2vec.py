"""word2vec's tiny config and token streams."""

from __future__ import annotations

import torch

from tiny import register_tiny


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


# The torch kernel: the generic gradient checks apply to it (the default numba kernel updates the weights in
# place and gives no gradients; tests/models/word2vec/test_word2vec_kernel.py covers it).
register_tiny("word2vec", {"vocab_size": 100, "vector_size": 32, "window": 2, "negative_block_size": 8,
                           "shared_negatives": 4, "kernel": "torch",
                           "word_counts": [0] + [1000 // rank for rank in range(1, 100)]}, word2vec_stream)
