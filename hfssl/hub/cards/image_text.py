"""Card part of the ``image-text`` family (contrastive dual encoders): template ``hfssl/model_cards/image-text.md.j2``."""

from __future__ import annotations

import json

from hfssl.hub.cards.common import FamilyCard, hidden_size, images_context, labelled_embeddings_captions
from hfssl.hub.run import RunContents

LIMITATION = ("Zero-shot scores depend on the wording of the class prompts, and the model knows only the "
              "concepts that its training captions cover.")
#: Candidate labels of the zero-shot example when the evaluation recorded no class names.
DEFAULT_LABELS = ["a photo of a cat", "a photo of a dog"]


def candidate_labels(contents: RunContents) -> list[str]:
    """Zero-shot labels for the example: the first three class names of the evaluation, else :data:`DEFAULT_LABELS`."""
    label_names = (contents.eval_results or {}).get("label_names") or []
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
        images=images_context(contents.run_dir, labelled_embeddings_captions("test images")),
        backbone={"projection_dim": encoder_config.get("projection_dim", hidden_size(encoder_config))},
        template={"text": {"candidate_labels": json.dumps(labels), "num_candidate_labels": len(labels)}},
    )
