"""Card part of the ``word-embeddings`` family (word2vec): template ``hfssl/model_cards/word-embeddings.md.j2``."""

from __future__ import annotations

from hfssl.hub.cards.common import FamilyCard, images_context, register_family_card, vocab_size
from hfssl.hub.run import RunContents

LIMITATION = ("One vector per word: no context (every sense of a word shares a vector), no vector for words "
              "outside the vocabulary, and noisy vectors for rare words.")
#: The two words of the similarity example.
WORD_PAIR = '"king", "queen"'


def word_captions(method: str, count: str) -> tuple[str, str]:
    """Alt text and caption of the projection of frequent words' vectors (drawn with their words)."""
    return (f"{method} of the vectors of frequent words",
            f"{method} of the vectors of {count}frequent words, each drawn with its label: words used in "
            "similar contexts land close together.")


def family_card(contents: RunContents) -> FamilyCard:
    """Word vectors: the similarity example's word pair, the output vectors as the extra part."""
    return FamilyCard(
        pipeline_tag="feature-extraction",
        tags=("word-embeddings", "feature-extraction"),
        extra_parts="output vectors",
        limitation=LIMITATION,
        images=images_context(contents.run_dir, word_captions),
        backbone={"vocab_size": vocab_size(contents.encoder_config)},
        template={"text": {"word_pair": WORD_PAIR}},
    )


register_family_card("word-embeddings", family_card)
