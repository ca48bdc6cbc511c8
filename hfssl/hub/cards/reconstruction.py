"""Card part of the ``reconstruction`` family (autoencoders, colorization, context-encoder inpainting): template
``hfssl/model_cards/reconstruction.md.j2``.

The input / corrupted input / reconstruction triplets are drawn by each method's own picture hook
(``MethodSpec.pictures`` calling :func:`hfssl.reconstruction.draw_reconstruction_triplets`); the card shows
them when ``images/reconstruction_triplets.png`` exists, with every other declared picture (a VAE's prior samples).
"""

from __future__ import annotations

from hfssl.hub.cards import vision
from hfssl.hub.cards.common import FamilyCard, images_context, labelled_embeddings_captions, register_family_card
from hfssl.hub.run import RunContents
from hfssl.views.lab import LAB_INPUT, LAB_LIGHTNESS_INPUT

LIMITATION = ("A reconstruction objective makes the encoder keep what the decoder needs to redraw the pixels "
              "(position, brightness, fine texture), not what separates classes: under a frozen linear or kNN "
              "probe such encoders usually trail the joint-embedding methods (SimCLR, BYOL) on the same backbone "
              "(compare the evaluation above with the raw-pixel baseline). The decoder is part of the full model "
              "only; the exported encoder never saw the decoder's output.")


def lab_input_context(contents: RunContents) -> dict[str, object] | None:
    """The Lab preparation step of an encoder that takes CIE Lab instead of RGB (the full model config's
    ``encoder_input``: colorization's lightness, split-brain's Lab; see :mod:`hfssl.color_prediction`),
    else ``None``."""
    kind = getattr(contents.config, "encoder_input", None)
    if kind not in (LAB_INPUT, LAB_LIGHTNESS_INPUT):
        return None
    size = getattr(contents.config, "image_size", None)
    return {"lightness_only": kind == LAB_LIGHTNESS_INPUT, "size": size,
            "what": "the CIE Lab lightness only" if kind == LAB_LIGHTNESS_INPUT else "CIE Lab"}


def family_card(contents: RunContents) -> FamilyCard:
    """Image features with pooling snippets, the decoder as the extra part, the triplets when drawn."""
    preprocessing, lab_input = vision.preprocessing_context(contents), lab_input_context(contents)
    if lab_input is not None:  # the input row names the Lab preparation, not RGB
        size = preprocessing["size"]
        preprocessing["text"] = (f"{size}x{size} px images in {lab_input['what']}, prepared as in \"How to use\" "
                                 "(8-bit Lab: L * 255 / 100, a + 128, b + 128), then rescaled and normalised by "
                                 "the image processor")
    return FamilyCard(
        pipeline_tag="image-feature-extraction",
        tags=("vision", "image-feature-extraction", "reconstruction"),
        extra_parts="decoder",
        limitation=LIMITATION,
        images=images_context(contents.run_dir, labelled_embeddings_captions("test images")),
        backbone=vision.backbone_context(contents),
        template={"preprocessing": preprocessing, "lab_input": lab_input},
    )


register_family_card("reconstruction", family_card)
