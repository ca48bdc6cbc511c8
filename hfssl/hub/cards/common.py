"""What every family's card part is made of: :class:`FamilyCard`, value formatting, the pictures' context.

A family module (``hfssl/hub/cards/<family>.py``) builds a :class:`FamilyCard` from a
:class:`~hfssl.hub.run.RunContents`; :mod:`hfssl.hub.card` renders it with the shared parts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfssl.plots import card_pictures, png_description

#: ``(projection name, "N " or "") -> (alt text, caption)`` of the 2-D embedding picture.
Captions = Callable[[str, str], tuple[str, str]]

EMBEDDINGS_PICTURE = "images/embeddings_2d.png"

SELF_SUPERVISED, SUPERVISED = "self-supervised-learning", "supervised-learning"
#: The tags that say how a model learnt; every card carries one (``hfssl.hub.card.validate_card`` checks it).
LEARNING_TAGS = (SELF_SUPERVISED, SUPERVISED)

SELF_SUPERVISED_LIMITATION = ("Pre-trained without labels: the features need a probe or fine-tuning for a downstream "
                              "task, and the evaluation here measures frozen features with simple probes only.")


@dataclass(frozen=True)
class FamilyCard:
    """One family's part of a model card.

    Attributes:
        pipeline_tag: the Hub's ``pipeline_tag`` (``image-feature-extraction``, ``fill-mask``, ...).
        tags: tags after ``hfssl``, the method and the learning tag (``learning_tag``).
        extra_parts: what the full model holds beyond the encoder (``projection head``).
        limitation: the family's line of the "Limitations" section.
        images: the template's ``images`` context (see :func:`images_context`).
        backbone: entries added to the template's ``backbone`` context (pooling snippets, vocabulary).
        template: further top-level template context (``preprocessing``, ``text``).
        encoder_library: the ``library_name`` of a separate encoder repo's card: the library that loads it at
            its root (``sentence-transformers`` for a folder with ``modules.json``, so the Hub offers its snippet).
        training_text: how the encoder was trained, in the card's summary (``pre-trained without labels``).
        supervision_limitation: the first line of "Limitations": what the training signal means for its use.
        learning_tag: the tag for the kind of learning, one of :data:`LEARNING_TAGS`.
        labels_note: the card's sentence on how the training data's labels were used; ``None`` keeps the data
            description's own (:attr:`hfssl.hub.run.DatasetDescription.labels_note`: "The labels were not used
            for pre-training."). A family trained on the labels says so here.
    """

    pipeline_tag: str
    tags: tuple[str, ...]
    extra_parts: str
    limitation: str
    images: dict[str, Any]
    backbone: dict[str, Any] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)
    encoder_library: str = "transformers"
    training_text: str = "pre-trained without labels"
    supervision_limitation: str = SELF_SUPERVISED_LIMITATION
    learning_tag: str = SELF_SUPERVISED
    labels_note: str | None = None

    def __post_init__(self) -> None:
        if self.learning_tag not in LEARNING_TAGS:
            raise ValueError(f"FamilyCard.learning_tag must be one of {', '.join(LEARNING_TAGS)}, got {self.learning_tag!r}")


#: Family name -> its ``family_card(contents)``, registered by each family's module.
FAMILY_CARDS: dict[str, Callable[[Any], FamilyCard]] = {}


def register_family_card(family: str, builder: Callable[[Any], FamilyCard]) -> Callable[[Any], FamilyCard]:
    """Register the card part of a family (its name in :data:`hfssl.registry.FAMILIES`); returns ``builder``."""
    FAMILY_CARDS[family] = builder
    return builder


def format_value(value: Any) -> str:
    """A config or recipe value as a markdown table cell (floats with ``:g``, lists in brackets)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    if value is None:
        return "none"
    return str(value).replace("|", "\\|")


def format_count(count: int | None) -> str:
    """A parameter count for prose (``1.2 M (1,234,567)``)."""
    if count is None:
        return "an unknown number of"
    if count >= 1_000_000:
        return f"{count / 1e6:.1f} M ({count:,})"
    return f"{count:,}"


def hidden_size(encoder_config: dict[str, Any]) -> int | str:
    """The width of the encoder's features, read from its config (``"hidden"`` when it says none)."""
    if encoder_config.get("hidden_sizes"):
        return int(encoder_config["hidden_sizes"][-1])
    if encoder_config.get("hidden_size"):
        return int(encoder_config["hidden_size"])
    if encoder_config.get("n_embd"):  # GPT-2's name for it
        return int(encoder_config["n_embd"])
    if encoder_config.get("projection_dim"):
        return int(encoder_config["projection_dim"])
    return "hidden"


def images_context(run_dir: Path, captions: Captions) -> dict[str, Any]:
    """The template's ``images``: the main projection (``images/embeddings_2d.png``), captioned by the family,
    and every declared picture the run holds (:func:`hfssl.plots.card_pictures`): ``before`` the projection
    (order below 50) and ``after`` it."""
    embeddings = run_dir / EMBEDDINGS_PICTURE
    context: dict[str, Any] = {"embeddings": None}
    if embeddings.is_file():
        info = png_description(embeddings)
        method = {"pca": "PCA", "tsne": "t-SNE"}.get(info.get("projection", ""), "a 2-D projection")
        count = f"{int(info['count']):,} " if info.get("count", "").isdigit() else ""
        context["embeddings"] = EMBEDDINGS_PICTURE
        context["embeddings_alt"], context["embeddings_caption"] = captions(method, count)
    declared = [picture for picture in card_pictures(run_dir) if picture["path"] != EMBEDDINGS_PICTURE]
    context["before"] = [picture for picture in declared if picture["order"] < 50]
    context["after"] = [picture for picture in declared if picture["order"] >= 50]
    context["any"] = bool(context["embeddings"] or declared)
    return context


def labelled_embeddings_captions(thing: str) -> Captions:
    """Captions of a projection of labelled test examples (``thing``: ``"test images"``, ``"test texts"``)."""

    def captions(method: str, count: str) -> tuple[str, str]:
        return (f"{method} of test-set embeddings coloured by label",
                f"{method} of the frozen embeddings of {count}{thing}, coloured by their label (labels were not "
                "used in pre-training). Classes that form separate groups here are easy for the kNN and linear probes.")

    return captions


def vocab_size(encoder_config: dict[str, Any]) -> int | None:
    """The vocabulary size of a text encoder (or of the text tower of a dual encoder), if its config says."""
    return encoder_config.get("vocab_size") or (encoder_config.get("text_config") or {}).get("vocab_size")
