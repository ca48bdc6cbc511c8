"""Each card family's part of a model card, one module per family next to the family's template.

A family (``MethodSpec.family``, registered in :data:`hfssl.registry.FAMILIES` with its template) has its
card part registered with :func:`~hfssl.hub.cards.common.register_family_card`: a
``family_card(contents)`` returning a :class:`~hfssl.hub.cards.common.FamilyCard` (pipeline tag, tags,
the full model's extra parts, the family's limitation, the main picture's caption, and the family's
template context: pooling snippets and preprocessing for the vision families, fill-mask examples, the
word pair, zero-shot labels). :mod:`hfssl.hub.card` renders that with the shared parts. The modules of
this package register themselves when it is imported; a family from another package registers its
template (:func:`hfssl.registry.register_family`) and its card part the same way.

* :mod:`~hfssl.hub.cards.common`: :class:`~hfssl.hub.cards.common.FamilyCard`, the registry, formatting.
* :mod:`~hfssl.hub.cards.modalities`: what depends on the kind of training data, not on the family.
* :mod:`~hfssl.hub.cards.vision`: pooling snippets and preprocessing of the two vision families.
"""

from __future__ import annotations

import importlib
import pkgutil

from hfssl.hub.cards.common import FAMILY_CARDS, FamilyCard, register_family_card
from hfssl.hub.run import RunContents

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda item: item.name):
    importlib.import_module(f"{__name__}.{_module.name}")


def family_card(contents: RunContents) -> FamilyCard:
    """The card part of the run's family; ``ValueError`` naming the families that have one."""
    family = contents.spec.family
    if family not in FAMILY_CARDS:
        raise ValueError(f"no model-card part registered for family {family!r}; families with one: "
                         f"{', '.join(FAMILY_CARDS)} (hfssl.hub.cards.common.register_family_card adds one)")
    return FAMILY_CARDS[family](contents)


__all__ = ["FAMILY_CARDS", "FamilyCard", "family_card", "register_family_card"]
