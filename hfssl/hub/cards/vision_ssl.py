"""Card part of the ``vision-ssl`` family (SimCLR, BYOL, ...): template ``hfssl/model_cards/vision-ssl.md.j2``."""

from __future__ import annotations

from hfssl.hub.cards import vision
from hfssl.hub.cards.common import FamilyCard, format_value, images_context, labelled_embeddings_captions, register_family_card
from hfssl.hub.run import RunContents
from hfssl.recipe import Recipe
from hfssl.registry import PRETEXT_TASK


def invariance_limitation(recipe: Recipe | None) -> str:
    """What the recipe's augmentations taught the encoder to ignore (only the augmentations it used)."""
    changes = ["position and scale (random crops)"]
    if recipe is not None:
        views = recipe.views
        if views.color_jitter_prob > 0:
            jittered = [name for name in ("brightness", "contrast", "saturation", "hue") if getattr(views, name) > 0]
            if jittered:
                changes.append(f"{', '.join(jittered)} (colour jitter)")
        if views.grayscale_prob > 0:
            changes.append("colour (random greyscale)")
        if views.flip_prob > 0:
            changes.append("left-right orientation (flips)")
        if views.blur_prob > 0 or views.blur_prob_per_view:
            changes.append("sharpness (blur)")
        if views.rotation_prob > 0:
            changes.append(f"orientation (rotations by {format_value(views.rotation_degrees)} degrees)")
    return ("Augmentation-invariance objectives make the features insensitive to what the training views changed: "
            + "; ".join(changes) + ". Tasks that need those cues get less from these features.")


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
        limitation=pretext_limitation(contents.spec.title) if pretext else invariance_limitation(contents.recipe),
        images=images_context(contents.run_dir, labelled_embeddings_captions("test images")),
        backbone=vision.backbone_context(contents),
        template={"preprocessing": vision.preprocessing_context(contents)},
    )


register_family_card("vision-ssl", family_card)
