"""Card part of the ``masked-image-modeling`` family (MAE): template ``hfssl/model_cards/masked-image-modeling.md.j2``.

The reconstructions picture is drawn by the method's own hook (``MethodSpec.pictures``); the card
links it when ``images/reconstructions.png`` exists.
"""

from __future__ import annotations

from hfssl.hub.cards import vision
from hfssl.hub.cards.common import FamilyCard, images_context, labelled_embeddings_captions, register_family_card
from hfssl.hub.run import RunContents

LIMITATION = ("Masked-autoencoder features are known to do worse under linear probing than after fine-tuning "
              "(He et al. 2022, sec. 4); a frozen probe understates what the encoder gives when fine-tuned.")


def family_card(contents: RunContents) -> FamilyCard:
    """Image features with pooling snippets, the decoder as the extra part, reconstructions when drawn."""
    return FamilyCard(
        pipeline_tag="image-feature-extraction",
        tags=("vision", "image-feature-extraction", "masked-image-modeling"),
        extra_parts="decoder",
        limitation=LIMITATION,
        images=images_context(contents.run_dir, labelled_embeddings_captions("test images")),
        backbone=vision.backbone_context(contents),
        template={"preprocessing": vision.preprocessing_context(contents)},
    )


register_family_card("masked-image-modeling", family_card)
