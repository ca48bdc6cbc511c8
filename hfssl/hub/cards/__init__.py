"""Each card family's part of a model card, one module per family next to the family's template.

A family (``MethodSpec.family``, one of :data:`hfssl.registry.FAMILIES`) has a template
``hfssl/model_cards/<family>.md.j2`` and a module here whose ``family_card(contents)`` returns a
:class:`~hfssl.hub.cards.common.FamilyCard`: pipeline tag, tags, the full model's extra parts, the
family's limitation, picture captions, and the family's template context (pooling snippets and
preprocessing for the vision families, fill-mask examples, the word pair, zero-shot labels).
:mod:`hfssl.hub.card` renders that with the shared parts; a new family adds a template, a module
and a line in :data:`FAMILY_CARDS`.

* :mod:`~hfssl.hub.cards.common`: :class:`~hfssl.hub.cards.common.FamilyCard`, formatting, captions.
* :mod:`~hfssl.hub.cards.modalities`: what depends on the kind of training data, not on the family.
* :mod:`~hfssl.hub.cards.vision`: pooling snippets and preprocessing of the two vision families.
"""

from __future__ import annotations

from collections.abc import Callable

from hfssl.hub.cards import (
    image_text,
    masked_image_modeling,
    masked_language_modeling,
    vision_ssl,
    word_embeddings,
)
from hfssl.hub.cards.common import FamilyCard
from hfssl.hub.run import RunContents

#: Family name -> its ``family_card(contents)``; the keys are :data:`hfssl.registry.FAMILIES`.
FAMILY_CARDS: dict[str, Callable[[RunContents], FamilyCard]] = {
    "vision-ssl": vision_ssl.family_card,
    "masked-image-modeling": masked_image_modeling.family_card,
    "masked-language-modeling": masked_language_modeling.family_card,
    "word-embeddings": word_embeddings.family_card,
    "image-text": image_text.family_card,
}


def family_card(contents: RunContents) -> FamilyCard:
    """The card part of the run's family; ``ValueError`` naming the families that have one."""
    family = contents.spec.family
    if family not in FAMILY_CARDS:
        raise ValueError(f"no model-card module for family {family!r}; known families: {', '.join(FAMILY_CARDS)}")
    return FAMILY_CARDS[family](contents)


__all__ = ["FAMILY_CARDS", "FamilyCard", "family_card"]
