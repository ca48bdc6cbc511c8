"""Card part of the ``vision-ssl`` family (SimCLR, BYOL, ...): template ``hfssl/model_cards/vision-ssl.md.j2``."""

from __future__ import annotations

from hfssl.hub.cards import vision
from hfssl.hub.cards.common import FamilyCard, images_context, labelled_embeddings_captions, register_family_card
from hfssl.hub.run import RunContents
from hfssl.registry import PRETEXT_TASK


def pretext_limitation(method: str) -> str:
    """The limitation of a hand-crafted pretext task (RotNet, jigsaw): no invariance is trained, and the last
    layers specialise to the task."""
    return (f"{method} trains the encoder to solve a hand-crafted pretext task, not to be invariant to augmentations; "
            "the last stages specialise to that task and intermediate stages often transfer better (Gidaris et al. "
            "2018, sec. 3.1; Noroozi & Favaro 2016): compare the stages with a per-layer probe before using the "
            "last layer's features.")


def family_card(contents: RunContents) -> FamilyCard:
    """Image features with pooling snippets; the limitation names what the augmentations removed, or, for a
    method that serves a pretext task (RotNet), that its classifier is the extra part and the last layers specialise."""
    pretext = PRETEXT_TASK in contents.spec.provides
    return FamilyCard(
        pipeline_tag="image-feature-extraction",
        tags=("vision", "image-feature-extraction", *(("pretext-task",) if pretext else ())),  # as patch-pretext's
        extra_parts="pretext-task classifier" if pretext else "projection head",
        limitation=pretext_limitation(contents.spec.title) if pretext else vision.invariance_limitation(contents.recipe),
        images=images_context(contents.run_dir, labelled_embeddings_captions("test images")),
        backbone=vision.backbone_context(contents),
        template={"preprocessing": vision.preprocessing_context(contents)},
    )


register_family_card("vision-ssl", family_card)
