"""Card part of the ``masked-language-modeling`` family: template ``hfssl/model_cards/masked-language-modeling.md.j2``."""

from __future__ import annotations

import json

from hfssl.hub.cards.common import FamilyCard, images_context, labelled_embeddings_captions, vocab_size
from hfssl.hub.run import RunContents

LIMITATION = ("Masked-token predictions reflect the word statistics of the training corpus, including its "
              "biases; the tokenizer's vocabulary limits which words the model can predict.")
#: The fill-mask example (``prefix [MASK] suffix``) and the sentences of the embedding example.
MASK_EXAMPLE = ("the capital of france is", ".")
EXAMPLE_SENTENCES = ["the first sentence.", "another, longer sentence to embed."]


def family_card(contents: RunContents) -> FamilyCard:
    """A fill-mask pipeline and sentence embeddings; the template's ``text`` holds the examples."""
    prefix, suffix = MASK_EXAMPLE
    return FamilyCard(
        pipeline_tag="fill-mask",
        tags=("fill-mask", "masked-language-modeling"),
        extra_parts="masked-language-modelling head",
        limitation=LIMITATION,
        images=images_context(contents.run_dir, labelled_embeddings_captions("test texts")),
        backbone={"vocab_size": vocab_size(contents.encoder_config)},
        template={"text": {"mask_example_prefix": prefix, "mask_example_suffix": suffix,
                           "examples": json.dumps(EXAMPLE_SENTENCES)}},
    )
