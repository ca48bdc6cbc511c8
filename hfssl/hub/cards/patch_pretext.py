"""Card part of the ``patch-pretext`` family (jigsaw, relative patch position): the ``vision-ssl`` template,
with a limitation that says the encoder was trained on tiles or patches, not on whole images."""

from __future__ import annotations

from hfssl.hub.cards import vision
from hfssl.hub.cards.common import FamilyCard, images_context, labelled_embeddings_captions, register_family_card
from hfssl.hub.run import RunContents


def training_inputs_limitation(contents: RunContents) -> str:
    """What the encoder saw in training, and that the probes and the export apply it to whole images."""
    return (f"The encoder was trained on {contents.config.task_summary()}, never on whole images; the evaluation "
            "here, `get_embeddings` and the exported encoder apply it to whole images, as the paper's transfer "
            "experiments do. Hand-crafted pretext tasks are expected to give weaker frozen features than the "
            "joint-embedding methods (SimCLR, BYOL, DINO) on the same backbone.")


def family_card(contents: RunContents) -> FamilyCard:
    """Image features with pooling snippets; the classifier of the pretext task is the extra part."""
    return FamilyCard(
        pipeline_tag="image-feature-extraction",
        tags=("vision", "image-feature-extraction", "pretext-task"),
        extra_parts="pretext classifier (fc6 per tile or patch, fc7, fc8)",
        limitation=training_inputs_limitation(contents),
        images=images_context(contents.run_dir, labelled_embeddings_captions("test images")),
        backbone=vision.backbone_context(contents),
        template={"preprocessing": vision.preprocessing_context(contents)},
    )


register_family_card("patch-pretext", family_card)
