"""SimCSELoss against a naive loop (eqs. 1 and 5 of Gao et al. 2021), closed forms, and the duplicate masking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hfssl.losses import SimCSELoss


def naive(anchors, positives, negatives=None, anchor_text=None, candidate_text=None, temperature=0.05):
    """One anchor at a time: -log exp(s(i, i+)/t) / sum over candidates j (positives, then negatives) not
    sharing the anchor's or its positive's text (the positive itself always kept)."""
    candidates = list(positives) + (list(negatives) if negatives is not None else [])
    losses = []
    for i, anchor in enumerate(anchors):
        denominator = 0.0
        for j, candidate in enumerate(candidates):
            if anchor_text is not None and j != i and candidate_text[j] in anchor_text[i]:
                continue
            denominator += math.exp(float(F.cosine_similarity(anchor, candidate, dim=0)) / temperature)
        numerator = math.exp(float(F.cosine_similarity(anchor, positives[i], dim=0)) / temperature)
        losses.append(-math.log(numerator / denominator))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("with_negatives", [False, True])
def test_matches_the_naive_loop(with_negatives):
    generator = torch.Generator().manual_seed(0)
    anchors, positives, negatives = (torch.randn(5, 8, generator=generator, dtype=torch.float64) for _ in range(3))
    loss, accuracy = SimCSELoss(0.5)(anchors, positives, negatives if with_negatives else None)
    assert float(loss) == pytest.approx(naive(anchors, positives, negatives if with_negatives else None, temperature=0.5),
                                        rel=1e-9)
    assert 0.0 <= float(accuracy) <= 1.0


def test_duplicate_texts_are_not_negatives_of_each_other():
    """Rows 0 and 2 are the same sentence (unsupervised: anchor text = positive text); row 3's hard negative is
    row 1's text. Masked as the naive loop says, and a masked candidate changes nothing however close it is."""
    generator = torch.Generator().manual_seed(1)
    anchors, positives, negatives = (torch.randn(4, 6, generator=generator, dtype=torch.float64) for _ in range(3))
    texts = ["a", "b", "a", "c"]
    negative_texts = ["x", "y", "z", "b"]
    keys = {text: index for index, text in enumerate(sorted(set(texts + negative_texts)))}
    text_keys = torch.tensor([keys[text] for text in texts])
    negative_keys = torch.tensor([keys[text] for text in negative_texts])
    anchor_keys = torch.stack([text_keys, text_keys], 1)
    candidate_keys = torch.stack([text_keys, negative_keys], 1)
    loss, _ = SimCSELoss(0.1)(anchors, positives, negatives, anchor_keys, candidate_keys)
    expected = naive(anchors, positives, negatives, [{t} for t in texts], texts + negative_texts, temperature=0.1)
    assert float(loss) == pytest.approx(expected, rel=1e-9)
    moved = negatives.clone()
    moved[3] = anchors[1] * 3  # row 3's negative is row 1's text: masked for row 1, so no effect on its term
    unmasked_change = SimCSELoss(0.1)(anchors, positives, moved)[0] - SimCSELoss(0.1)(anchors, positives, negatives)[0]
    masked_change = (SimCSELoss(0.1)(anchors, positives, moved, anchor_keys, candidate_keys)[0] - loss)
    assert abs(float(unmasked_change)) > 1e-3
    # Only the other anchors' terms move (row 1's does not): compare with the naive loop on the moved negatives.
    assert float(masked_change) == pytest.approx(
        naive(anchors, positives, moved, [{t} for t in texts], texts + negative_texts, temperature=0.1) - expected, abs=1e-9)


def test_closed_forms():
    """Identical embeddings everywhere: log(N) (every candidate ties); orthogonal pairs far apart: ~0."""
    ones = torch.ones(4, 3, dtype=torch.float64)
    assert float(SimCSELoss(0.05)(ones, ones)[0]) == pytest.approx(math.log(4), rel=1e-12)
    eye = torch.eye(4, dtype=torch.float64)
    loss, accuracy = SimCSELoss(0.05)(eye, eye)
    assert float(loss) == pytest.approx(math.log(1 + 3 * math.exp(-1 / 0.05)), rel=1e-9)
    assert float(accuracy) == 1.0


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="one shape"):
        SimCSELoss()(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        SimCSELoss(0.0)
    with pytest.raises(ValueError, match="both anchor_keys"):
        SimCSELoss()(torch.randn(3, 4), torch.randn(3, 4), anchor_keys=torch.zeros(3, 2))
