"""BERT masking against its formulas on a large sample: the share of chosen tokens, the 80/10/10
split, special tokens never chosen, whole words chosen as a whole, and seeded reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

from hfssl.data.token_masking import IGNORE_INDEX, mask_tokens

VOCAB = 5000
MASK = 4
SPECIAL = torch.zeros(VOCAB, dtype=torch.bool)
SPECIAL[:5] = True
REPLACEMENTS = torch.arange(5, VOCAB)


def _rows(rows: int = 400, length: int = 256, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (rows, length), generator=generator)
    ids[:, 0] = 2  # [CLS]
    ids[:, -1] = 3  # [SEP]
    ids[: rows // 4, length // 2:] = 0  # padding in a quarter of the rows
    return ids


def _within(observed: float, expected: float, trials: int, sigmas: float = 5.0) -> bool:
    return abs(observed - expected) <= sigmas * math.sqrt(expected * (1 - expected) / trials)


@pytest.mark.parametrize("probabilities", [(0.15, 0.8, 0.1), (0.3, 0.5, 0.25)])
def test_chosen_share_and_replacement_split_follow_the_formulas(probabilities):
    p, p_mask, p_random = probabilities
    ids = _rows()
    masked, labels = mask_tokens(ids, torch.Generator().manual_seed(1), SPECIAL, REPLACEMENTS, MASK, p, p_mask, p_random)
    candidates = ~SPECIAL[ids]
    chosen = labels != IGNORE_INDEX
    n_candidates, n_chosen = int(candidates.sum()), int(chosen.sum())
    assert _within(n_chosen / n_candidates, p, n_candidates)
    assert torch.equal(labels[chosen], ids[chosen])
    became_mask = chosen & (masked == MASK)
    kept = chosen & (masked == ids)
    became_random = chosen & (masked != MASK) & (masked != ids)
    assert int(became_mask.sum() + kept.sum() + became_random.sum()) == n_chosen
    # A random replacement equals the original with probability 1 / |replacements|.
    hit = 1.0 / REPLACEMENTS.numel()
    assert _within(float(became_mask.sum()) / n_chosen, p_mask, n_chosen)
    assert _within(float(became_random.sum()) / n_chosen, p_random * (1 - hit), n_chosen)
    assert _within(float(kept.sum()) / n_chosen, 1 - p_mask - p_random + p_random * hit, n_chosen)
    # Tokens that were not chosen are untouched.
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_special_tokens_are_never_chosen_or_changed():
    ids = _rows()
    masked, labels = mask_tokens(ids, torch.Generator().manual_seed(2), SPECIAL, REPLACEMENTS, MASK, 0.9, 0.8, 0.1)
    special = SPECIAL[ids]
    assert (labels[special] == IGNORE_INDEX).all()
    assert torch.equal(masked[special], ids[special])
    # Random replacements are never special tokens.
    assert not SPECIAL[masked[~special & (masked != MASK)]].any()


def test_whole_word_masking_chooses_every_piece_of_a_word():
    continuation = torch.zeros(VOCAB, dtype=torch.bool)
    continuation[2500:] = True  # ids from 2500 on are "##" pieces
    ids = _rows(seed=3)
    masked, labels = mask_tokens(ids, torch.Generator().manual_seed(4), SPECIAL, REPLACEMENTS, MASK, 0.15, 0.8, 0.1,
                                 continuation)
    chosen = labels != IGNORE_INDEX
    is_start = ~continuation[ids] | SPECIAL[ids]
    words, chosen_words, pieces_checked = 0, 0, 0
    for row in range(ids.shape[0]):
        position = 0
        length = ids.shape[1]
        while position < length:
            end = position + 1
            while end < length and not is_start[row, end]:
                end += 1
            if not SPECIAL[ids[row, position]]:
                states = chosen[row, position:end]
                assert states.all() or not states.any(), f"row {row}: word {position}:{end} is partly chosen"
                words += 1
                chosen_words += int(states[0])
                pieces_checked += end - position
            position = end
    assert pieces_checked > words  # the sample really has multi-piece words
    assert _within(chosen_words / words, 0.15, words)


def test_masks_are_a_function_of_the_seed():
    ids = _rows(rows=8, length=64)
    first = mask_tokens(ids, torch.Generator().manual_seed(5), SPECIAL, REPLACEMENTS, MASK)
    again = mask_tokens(ids, torch.Generator().manual_seed(5), SPECIAL, REPLACEMENTS, MASK)
    other = mask_tokens(ids, torch.Generator().manual_seed(6), SPECIAL, REPLACEMENTS, MASK)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[1], other[1])


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="batch, length"):
        mask_tokens(torch.zeros(5, dtype=torch.long), torch.Generator(), SPECIAL, REPLACEMENTS, MASK)
