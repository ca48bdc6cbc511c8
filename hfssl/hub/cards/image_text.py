"""Card part of the ``image-text`` family (contrastive dual encoders): template ``hfssl/model_cards/image-text.md.j2``."""

from __future__ import annotations

import json

from hfssl.hub.cards.common import (FamilyCard, hidden_size, images_context, labelled_embeddings_captions,
                                     register_family_card)
from hfssl.hub.run import RunContents

LIMITATION = ("Zero-shot scores depend on the wording of the class prompts, and the model knows only the "
              "concepts that its training captions cover.")
#: The card's words for ``model.loss`` (``training_loss.description``), the SigLIP one saying where the bias went.
LOSS_DESCRIPTIONS = {
    "clip": "CLIP's symmetric softmax cross entropy over the batch's image-text similarities, with a learned "
            "scale (`logit_scale`)",
    "siglip": "SigLIP's pairwise sigmoid loss ([Zhai et al. 2023](https://arxiv.org/abs/2303.15343)): "
              "`logits = exp(logit_scale) * cos + b` with a learned bias `b`; the exported dual encoder keeps "
              "`logit_scale` but has no slot for `b`, which adds the same constant to every logit, so the softmax "
              "over candidate labels and the zero-shot pipeline's ranking are unchanged (`b` is in the full "
              "model's `logit_bias`; add it before a sigmoid to get the trained pairwise probabilities)",
}
#: Candidate labels of the zero-shot example when the evaluation recorded no class names.
DEFAULT_LABELS = ["a photo of a cat", "a photo of a dog"]


def text_pooling(encoder_config: dict) -> dict:
    """The text tower's pooling as the card tells it: ``remote_code`` when the exported dual encoder's
    class ships as code beside the weights (an ``auto_map`` in its ``config.json``: a mean/cls-pooled
    text tower, ``model.text_pooling``), whose loading then needs ``trust_remote_code=True``."""
    remote_code = bool(encoder_config.get("auto_map"))
    pooling = encoder_config.get("text_pooling") or "pooler"
    names = {"mean": "the attention-masked mean of its token states", "cls": "its [CLS] token state",
             "pooler": "its pooler output"}
    return {"remote_code": remote_code, "text_pooling": pooling, "pooling_text": names.get(pooling, pooling),
            "code_file": next(iter(encoder_config.get("auto_map", {}).values()), "").split(".")[0] + ".py"}


def candidate_labels(contents: RunContents) -> list[str]:
    """Zero-shot labels for the example: the first three class names of the zero-shot evaluation in its
    first prompt template, else the evaluation's ``label_names``, else :data:`DEFAULT_LABELS`."""
    results = contents.eval_results or {}
    for entry in results.get("results", []):
        if entry.get("protocol") == "zero-shot" and entry.get("class_names") and "dataset" not in entry:
            prompt = str(entry.get("prompt") or "a picture of {}")
            return [prompt.format(name) for name in entry["class_names"][:3]]
    label_names = results.get("label_names") or []
    return [f"a picture of {name}" for name in label_names[:3]] or list(DEFAULT_LABELS)


def family_card(contents: RunContents) -> FamilyCard:
    """Zero-shot classification with candidate labels; the projection heads as the extra part."""
    labels = candidate_labels(contents)
    encoder_config = contents.encoder_config
    return FamilyCard(
        pipeline_tag="zero-shot-image-classification",
        tags=("vision", "zero-shot-image-classification", "contrastive-image-text"),
        extra_parts="projection heads",
        limitation=LIMITATION,
        images=_images(contents),
        backbone={"projection_dim": encoder_config.get("projection_dim", hidden_size(encoder_config))},
        template={"text": {"candidate_labels": json.dumps(labels), "num_candidate_labels": len(labels),
                           **text_pooling(encoder_config)},
                  "training_loss": training_loss(contents)},
    )


def training_loss(contents: RunContents) -> dict[str, str]:
    """``model.loss`` of the run (``clip`` for runs saved before the option existed) and its description."""
    name = str(getattr(contents.config, "loss", "clip"))
    return {"name": name, "description": LOSS_DESCRIPTIONS.get(name, name)}


def _images(contents: RunContents) -> dict:
    """The shared pictures, and the test images with their top predicted captions (CLIP's own picture)."""
    return images_context(contents.run_dir, labelled_embeddings_captions("test images"))


register_family_card("image-text", family_card)
