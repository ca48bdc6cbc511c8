"""What the vision families share: pooling snippets, preprocessing text, image-input details, what the views
taught the encoder to ignore.

Used by the image families' modules (:mod:`hfssl.hub.cards.vision_ssl`, :mod:`hfssl.hub.cards.supervised`,
:mod:`hfssl.hub.cards.masked_image_modeling`, ...); the snippets reproduce :func:`hfssl.backbones.pool_features`, the features that kNN and the probes used.
"""

from __future__ import annotations

from typing import Any

from hfssl.hub.cards.common import format_value
from hfssl.hub.cards.modalities import modality_card
from hfssl.hub.run import RunContents
from hfssl.recipe import Recipe

# Backbones whose features are spatial maps (pooled output) vs token sequences (CLS / mean).
CONVOLUTIONAL_TYPES = {"resnet", "convnext", "convnextv2", "regnet", "bit", "efficientnet", "mobilenet_v1",
                       "mobilenet_v2", "van", "poolformer", "textnet"}
SEQUENCE_TYPES = {"vit", "vit_mae", "deit", "beit", "dinov2", "dinov2_with_registers", "vit_msn", "data2vec-vision",
                  "ijepa", "vit_hybrid", "siglip_vision_model", "clip_vision_model"}


def _sequence_pooling(pooling: str) -> dict[str, str]:
    if pooling == "mean":
        return {"pooling_code": "outputs.last_hidden_state[:, 1:].mean(dim=1)",
                "pooling_text": "the mean of the patch tokens of the last layer",
                "pipeline_code": "torch.tensor(extractor(image))[:, 1:].mean(dim=1)",
                "pipeline_text": "the pipeline returns the last hidden state; average its patch tokens"}
    return {"pooling_code": "outputs.last_hidden_state[:, 0]",
            "pooling_text": "the [CLS] token of the last layer",
            "pipeline_code": "torch.tensor(extractor(image))[:, 0]",
            "pipeline_text": "the pipeline returns the last hidden state; take its [CLS] token"}


def _convolutional_pooling(pooling: str) -> dict[str, str]:
    if pooling in ("auto", "pooler"):
        return {"pooling_code": "outputs.pooler_output.flatten(1)",
                "pooling_text": "the model's pooled output, a global average of the last stage",
                "pipeline_code": "torch.tensor(extractor(image, pool=True)).flatten(1)",
                "pipeline_text": "pool=True returns the pooled output"}
    return {"pooling_code": "outputs.last_hidden_state.mean(dim=(2, 3))",
            "pooling_text": "the spatial mean of the last feature map",
            "pipeline_code": "torch.tensor(extractor(image)).mean(dim=(2, 3))",
            "pipeline_text": "the pipeline returns the last feature map; average it over space"}


def pooling_snippets(encoder_config: dict[str, Any], pooling: str) -> dict[str, str]:
    """Code and prose that reproduce hfssl.backbones.pool_features for this backbone and pooling setting."""
    model_type = encoder_config.get("model_type", "")
    if model_type in SEQUENCE_TYPES:
        return _sequence_pooling(pooling)
    if model_type in CONVOLUTIONAL_TYPES:
        return _convolutional_pooling(pooling)
    # Unknown backbone type: the same rule as pool_features, decided on the output's shape.
    return {"pooling_code": ("outputs.last_hidden_state[:, 0] if outputs.last_hidden_state.ndim == 3 "
                             "else outputs.pooler_output.flatten(1)"),
            "pooling_text": "the [CLS] token of sequence models, the pooled output of convolutional ones",
            "pipeline_code": "torch.tensor(extractor(image, pool=True)).flatten(1)",
            "pipeline_text": "pool=True returns the pooled output"}


def backbone_context(contents: RunContents) -> dict[str, Any]:
    """The vision entries of the template's ``backbone``: input channels, a test image, pooling snippets."""
    encoder_config = contents.encoder_config
    channels = int(encoder_config.get("num_channels", 3) or 3)
    context: dict[str, Any] = {
        "num_channels": channels,
        "pil_mode": "RGB" if channels == 3 else "L",
        "pil_color": "(128, 96, 64)" if channels == 3 else "128",
    }
    context.update(pooling_snippets(encoder_config, getattr(contents.config, "pooling", "auto")))
    return context


def preprocessing_context(contents: RunContents) -> dict[str, Any]:
    """The template's ``preprocessing``: input size, channels and normalisation, from the image processor."""
    processor = contents.processor_config or {}
    size = processor.get("size") or {}
    height = size.get("height") or size.get("shortest_edge")
    if height is None and contents.recipe is not None:
        height = modality_card(contents.spec.modality).trained_image_size(contents.recipe)
    height = int(height or contents.encoder_config.get("image_size", 224))
    channels = int(contents.encoder_config.get("num_channels", 3) or 3)
    colour = "RGB" if channels == 3 else ("grey" if channels == 1 else f"{channels}-channel")
    text = f"{height}x{height} px {colour} images"
    if processor.get("do_normalize"):
        text += (f", rescaled to [0, 1] and normalised with mean {format_value(processor.get('image_mean'))} "
                 f"and std {format_value(processor.get('image_std'))} (the image processor does this)")
    return {"size": height, "text": text, "channels": channels}


def invariance_limitation(recipe: Recipe | None,
                          lead: str = "Augmentation-invariance objectives make the features insensitive") -> str:
    """What the recipe's augmentations taught the encoder to ignore (only the augmentations it used); ``lead``
    starts the sentence (the supervised baseline, trained on the same views, is not an invariance objective)."""
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
    return (f"{lead} to what the training views changed: " + "; ".join(changes)
            + ". Tasks that need those cues get less from these features.")
