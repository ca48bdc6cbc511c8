"""BERT's token masking, on the training device, seeded (Devlin et al. 2019, sec. 3.1 and appendix A.1).

Each non-special token (or, with whole-word masking, each word: a WordPiece without the ``##``
continuation prefix and the pieces that follow it) is chosen with probability
``mask_probability``; a chosen token becomes ``[MASK]`` with probability
``mask_replace_probability``, a random non-special token with ``random_replace_probability``, and
stays as it is otherwise. The loss is computed on the chosen tokens only (``labels`` hold their
original ids, ``-100`` elsewhere, as in transformers).

Choices, per token, are independent Bernoulli draws (as transformers' ``DataCollatorForLanguageModeling``),
so the expected share is exact and the share in a row varies; BERT's own data script picks exactly
``round(0.15 n)`` per row. Random replacements are drawn uniformly from the non-special ids.
Every draw comes from the ``generator``, in a fixed order, so the masks of a micro-batch are a
function of its seed: a resumed run draws the same masks.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def continuation_table(tokenizer: object, vocab_size: int) -> torch.Tensor:
    """``(vocab_size,)`` bool: ids that continue a word (WordPiece's ``##`` pieces)."""
    table = torch.zeros(vocab_size, dtype=torch.bool)
    prefix = "##"
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    prefix = getattr(model, "continuing_subword_prefix", None) or prefix
    for token, index in tokenizer.get_vocab().items():
        if index < vocab_size and token.startswith(prefix) and len(token) > len(prefix):
            table[index] = True
    return table


def mask_tokens(
    input_ids: torch.Tensor,
    generator: torch.Generator,
    special: torch.Tensor,
    replacement_ids: torch.Tensor,
    mask_token_id: int,
    mask_probability: float = 0.15,
    mask_replace_probability: float = 0.8,
    random_replace_probability: float = 0.1,
    continuation: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a batch of token rows.

    Args:
        input_ids: ``(B, L)`` int64 token ids (padding included).
        generator: drives every draw, in this order: choice ``(B, L)``, replacement kind ``(B, L)``,
            random ids ``(B, L)``; all on ``input_ids.device``.
        special: ``(V,)`` bool, ids never chosen (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[MASK]``, ``[UNK]``).
        replacement_ids: ``(R,)`` int64, the ids random replacements are drawn from.
        mask_token_id: the ``[MASK]`` id.
        mask_probability / mask_replace_probability / random_replace_probability: see the module docstring.
        continuation: ``(V,)`` bool table of word-continuation ids for whole-word masking, or ``None``.

    Returns:
        the masked ``input_ids`` ``(B, L)`` and the ``labels`` ``(B, L)`` (original id where chosen, -100 elsewhere).
    """
    if input_ids.ndim != 2:
        raise ValueError(f"mask_tokens expects (batch, length) token ids, got shape {tuple(input_ids.shape)}")
    device = input_ids.device
    candidate = ~special[input_ids]
    draws = torch.rand(input_ids.shape, generator=generator, device=device)
    if continuation is not None:
        # Every piece takes the draw of the first piece of its word: the word is chosen as a whole.
        starts = ~continuation[input_ids] | ~candidate
        positions = torch.arange(input_ids.shape[1], device=device).expand_as(input_ids)
        word_start = torch.where(starts, positions, torch.zeros_like(positions)).cummax(dim=1).values
        draws = draws.gather(1, word_start)
    chosen = candidate & (draws < mask_probability)
    kind = torch.rand(input_ids.shape, generator=generator, device=device)
    random_ids = replacement_ids[torch.randint(0, replacement_ids.numel(), input_ids.shape, generator=generator,
                                               device=device)]
    masked = input_ids.clone()
    to_mask = chosen & (kind < mask_replace_probability)
    to_random = chosen & (kind >= mask_replace_probability) & (kind < mask_replace_probability + random_replace_probability)
    masked[to_mask] = mask_token_id
    masked[to_random] = random_ids[to_random]
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return masked, labels
