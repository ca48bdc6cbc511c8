"""Card part of the ``supervised`` family (the supervised baseline, ``hfssl/models/supervised``): template
``hfssl/model_cards/supervised.md.j2``.

The encoder is trained on the data's labels, so every place where an SSL card says "without labels" says the
opposite here: the summary, the learning tag (``supervised-learning``), the training-data note, the picture
caption and the first limitation, which also warns that probes on the classes it was trained on favour it.
"""

from __future__ import annotations

from hfssl.hub.cards import vision
from hfssl.hub.cards.common import SUPERVISED, Captions, FamilyCard, images_context, register_family_card
from hfssl.hub.run import RunContents

TRAINING_TEXT = "trained with labels (a supervised baseline, not self-supervised learning)"

LABELS_NOTE = ("The labels were the training targets: this encoder was trained with them (supervised cross-entropy), "
               "as the supervised baseline for the self-supervised methods.")

LIMITATION = ("Trained with labels: this is hfssl's supervised baseline, for comparison with the self-supervised "
              "methods, not a self-supervised model. Its features are shaped by the training classes; kNN and linear "
              "probes on those same classes favour it, and tasks whose classes differ may get less from it.")


def labelled_training_captions() -> Captions:
    """Captions of the projection of test embeddings, for an encoder trained on those classes."""

    def captions(method: str, count: str) -> tuple[str, str]:
        return (f"{method} of test-set embeddings coloured by label",
                f"{method} of the frozen embeddings of {count}test images, coloured by their label. The encoder was "
                "trained to separate these classes (supervised), so separate groups are expected here.")

    return captions


def family_card(contents: RunContents) -> FamilyCard:
    """Image features with pooling snippets; the linear classifier is the extra part; says it used labels."""
    config = contents.config
    return FamilyCard(
        pipeline_tag="image-feature-extraction",
        tags=("vision", "image-feature-extraction", "supervised-baseline"),
        extra_parts="linear classifier",
        limitation=vision.invariance_limitation(contents.recipe, "Training on augmented views makes the features insensitive"),
        images=images_context(contents.run_dir, labelled_training_captions()),
        backbone=vision.backbone_context(contents),
        template={"preprocessing": vision.preprocessing_context(contents),
                  "classifier": {"num_classes": config.num_classes,
                                 "label_smoothing": config.label_smoothing}},
        training_text=TRAINING_TEXT,
        supervision_limitation=LIMITATION,
        learning_tag=SUPERVISED,
        labels_note=LABELS_NOTE,
    )


register_family_card("supervised", family_card)
