"""Card part of the ``masked-language-modeling`` family: template ``hfssl/model_cards/masked-language-modeling.md.j2``.

Besides the snippets' text, the card shows fill-mask predictions that were computed when the card
was written (``pipeline("fill-mask")`` on ``RUN/encoder``, exactly as a user would run it), the
training curve drawn from the run's logs (``images/training_curve.png``), and, for continued
pre-training from a checkpoint without an MLM head, which parameters were newly initialised.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hfssl.hub.cards.common import (FamilyCard, images_context, labelled_embeddings_captions, register_family_card,
                                     vocab_size)
from hfssl.hub.run import RunContents

logger = logging.getLogger(__name__)

LIMITATION = ("Masked-token predictions reflect the word statistics of the training corpus, including its "
              "biases; the tokenizer's vocabulary limits which words the model can predict.")
#: The fill-mask example of the snippet (``prefix [MASK] suffix``) and the sentences of the embedding example.
MASK_EXAMPLE = ("the capital of france is", ".")
EXAMPLE_SENTENCES = ["the first sentence.", "another, longer sentence to embed."]
#: Sentences run through the fill-mask pipeline when the card is written (``{mask}`` = the mask token).
FILL_MASK_SENTENCES = (
    "the capital of france is {mask}.",
    "the prime minister said the {mask} would be announced next week.",
    "the film won an award for best {mask}.",
    "shares in the company {mask} after the results were published.",
)


def fill_mask_examples(encoder_dir: Path, top_k: int = 5) -> list[dict[str, Any]]:
    """Run ``pipeline("fill-mask")`` on the exported encoder: ``[{"text", "predictions": [{"token", "score"}]}]``
    (empty when the encoder cannot be loaded: the card then says nothing it did not run)."""
    if not (encoder_dir / "config.json").is_file():
        return []
    try:
        from transformers import pipeline

        fill_mask = pipeline("fill-mask", model=str(encoder_dir), tokenizer=str(encoder_dir), device="cpu")
        mask = fill_mask.tokenizer.mask_token
        examples = []
        for sentence in FILL_MASK_SENTENCES:
            text = sentence.format(mask=mask)
            predictions = fill_mask(text, top_k=top_k)
            examples.append({"text": text, "predictions": [
                {"token": str(item["token_str"]).strip().replace("|", "\\|"), "score": f"{item['score']:.3f}"}
                for item in predictions]})
        return examples
    except Exception as error:  # the card is still written; it only leaves out what did not run
        logger.warning("fill-mask examples for the card failed on %s: %s", encoder_dir, error)
        return []


def family_card(contents: RunContents) -> FamilyCard:
    """A fill-mask pipeline and sentence embeddings; ``text`` holds the examples that ran, the curve and the head note."""
    prefix, suffix = MASK_EXAMPLE
    config = contents.config
    initialised = list(getattr(config, "initialised_head_parameters", None) or [])
    start = getattr(config, "backbone_name_or_path", None)
    head_note = None
    if start and initialised:
        head_note = (f"Continued pre-training of `{start}`, which has no masked-language-modelling head: the head "
                     f"({', '.join(f'`{name}`' for name in initialised)}) was newly initialised at the start of training.")
    elif start:
        head_note = f"Continued pre-training of `{start}`, starting from its own masked-language-modelling head."
    limitation = LIMITATION + (" The MLM head was trained only in this run (it was newly initialised)." if head_note and
                               initialised else "")
    images = images_context(contents.run_dir, labelled_embeddings_captions("test texts"))
    return FamilyCard(
        pipeline_tag="fill-mask",
        tags=("fill-mask", "masked-language-modeling"),
        extra_parts="next-sentence head" if getattr(config, "next_sentence_prediction", False) else "nothing more",
        limitation=limitation,
        images=images,
        backbone={"vocab_size": vocab_size(contents.encoder_config)},
        template={"text": {"mask_example_prefix": prefix, "mask_example_suffix": suffix,
                           "examples": json.dumps(EXAMPLE_SENTENCES),
                           "fill_mask_examples": fill_mask_examples(contents.run_dir / "encoder"),
                           "head_note": head_note,
                           "next_sentence_prediction": bool(getattr(config, "next_sentence_prediction", False)),
                           "whole_word_masking": bool(getattr(config, "whole_word_masking", False))}},
    )


register_family_card("masked-language-modeling", family_card)
