"""What every family's card part is made of: :class:`FamilyCard`, value formatting, picture captions.

A family module (``hfssl/hub/cards/<family>.py``) builds a :class:`FamilyCard` from a
:class:`~hfssl.hub.run.RunContents`; :mod:`hfssl.hub.card` renders it with the shared parts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: ``(projection name, "N " or "") -> (alt text, caption)`` of the 2-D embedding picture.
Captions = Callable[[str, str], tuple[str, str]]

EMBEDDINGS_PICTURE = "images/embeddings_2d.png"
RECONSTRUCTIONS_PICTURE = "images/reconstructions.png"
ATTENTION_PICTURE = "images/attention_maps.png"  # DINO with a ViT backbone


@dataclass(frozen=True)
class FamilyCard:
    """One family's part of a model card.

    Attributes:
        pipeline_tag: the Hub's ``pipeline_tag`` (``image-feature-extraction``, ``fill-mask``, ...).
        tags: tags after ``hfssl``, the method and ``self-supervised-learning``.
        extra_parts: what the full model holds beyond the encoder (``projection head``).
        limitation: the family's line of the "Limitations" section.
        images: the template's ``images`` context (see :func:`images_context`).
        backbone: entries added to the template's ``backbone`` context (pooling snippets, vocabulary).
        template: further top-level template context (``preprocessing``, ``text``).
    """

    pipeline_tag: str
    tags: tuple[str, ...]
    extra_parts: str
    limitation: str
    images: dict[str, Any]
    backbone: dict[str, Any] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)


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
    if encoder_config.get("projection_dim"):
        return int(encoder_config["projection_dim"])
    return "hidden"


def png_description(path: Path) -> dict[str, str]:
    """The ``key=value`` words of a PNG's ``Description`` (``hfssl projection=pca count=50``, see hfssl.plots)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            text = image.info.get("Description", "")
    except OSError:
        return {}
    return dict(part.split("=", 1) for part in str(text).split() if "=" in part)


def images_context(run_dir: Path, captions: Captions) -> dict[str, Any]:
    """The template's ``images``: the pictures of ``run_dir/images`` that exist, captioned by the family."""
    embeddings = run_dir / EMBEDDINGS_PICTURE
    context: dict[str, Any] = {"embeddings": None, "reconstructions": None}
    if embeddings.is_file():
        info = png_description(embeddings)
        method = {"pca": "PCA", "tsne": "t-SNE"}.get(info.get("projection", ""), "a 2-D projection")
        count = f"{int(info['count']):,} " if info.get("count", "").isdigit() else ""
        context["embeddings"] = EMBEDDINGS_PICTURE
        context["embeddings_alt"], context["embeddings_caption"] = captions(method, count)
    if (run_dir / RECONSTRUCTIONS_PICTURE).is_file():
        context["reconstructions"] = RECONSTRUCTIONS_PICTURE
    context["more"] = evaluation_pictures(run_dir, captions)
    context["attention_maps"] = ATTENTION_PICTURE if (run_dir / ATTENTION_PICTURE).is_file() else None
    context["any"] = bool(context["embeddings"] or context["reconstructions"] or context["more"]
                          or context["attention_maps"])
    return context


# Pictures of hfssl.evaluation.pictures besides the PCA: other projections, then confusion matrices.
MORE_PROJECTIONS = (("images/embeddings_tsne.png", "t-SNE"), ("images/embeddings_umap.png", "UMAP"))


def evaluation_pictures(run_dir: Path, captions: Captions) -> list[dict[str, str]]:
    """``[{"path", "alt", "caption"}]`` of the t-SNE / UMAP projections and the confusion matrices in ``images/``."""
    pictures = []
    for path, method in MORE_PROJECTIONS:
        if (run_dir / path).is_file():
            info = png_description(run_dir / path)
            count = f"{int(info['count']):,} " if info.get("count", "").isdigit() else ""
            alt, caption = captions(method, count)
            pictures.append({"path": path, "alt": alt, "caption": caption})
    for path in sorted((run_dir / "images").glob("confusion_*.png")):
        info = png_description(path)
        probe = info.get("confusion", path.stem.removeprefix("confusion_")).replace("_", " ")
        accuracy = info.get("accuracy")
        share = f" ({100 * float(accuracy):.1f} % correct)" if accuracy else ""
        pictures.append({"path": f"images/{path.name}", "alt": f"confusion matrix of {probe}",
                         "caption": f"Confusion matrix of the {probe} protocol on the test split{share}: rows are the "
                                    "true classes, columns the predicted ones, each row normalised to 100 %."})
    return pictures


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
