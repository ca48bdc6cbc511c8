"""``zero-shot``: class names x prompt templates, ensembled (CLIP, Radford et al. 2021, sec. 3.1.4)."""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.image_text import DualEncoder, class_text_embeddings, pairs_arrays, zero_shot_scores
from hfssl.evaluation.protocols import IMAGE_TEXT, Protocol, ProtocolCard, Rows, register_protocol
from hfssl.registry import IMAGE_TEXT_EMBEDDINGS
from hfssl.settings import RecipeError


@dataclass
class ZeroShotSettings:
    """``eval.zero-shot``: prompt templates (``{}`` takes the class name), averaged over (CLIP sec. 3.1.4);
    ``class_names`` replaces the data's label names (same order); ``datasets`` adds rows measured on the
    held-out split of other sources with the same layout (``builtin:emoji_twitter``: a style shift)."""

    templates: tuple[str, ...] = ("a photo of a {}.", "a picture of {}.", "{}")
    class_names: tuple[str, ...] | None = None
    datasets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.templates or any(_template_fields(template) != [""] for template in self.templates):
            bad = [template for template in self.templates if _template_fields(template) != [""]]
            raise RecipeError(f"eval.zero-shot.templates must be prompts that each hold '{{}}' exactly once for the "
                              f"class name (write a literal brace as '{{{{' or '}}}}'), got {(bad or self.templates)!r}")
        if self.class_names is not None and (not self.class_names or not all(str(n).strip() for n in self.class_names)):
            raise RecipeError(f"eval.zero-shot.class_names must be non-empty names, got {self.class_names!r}")


def _template_fields(template: str) -> list[str] | None:
    """The replacement fields of a ``str.format`` template (``""`` for ``{}``), ``None`` when it does not parse."""
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError:  # a single '{' or '}'
        return None


def zero_shot_rows(encoder: DualEncoder, test_pairs: Callable[[str | None], Any], settings: ZeroShotSettings) -> Rows:
    """The protocol's rows for ``encoder``: one on the evaluation data's held-out pairs, then one per source of
    ``settings.datasets`` (with its ``dataset``). ``test_pairs(source)`` gives the prepared held-out pairs of a
    source (``None``: the evaluation data), as :meth:`EvaluationContext.image_text_test` does; the online
    zero-shot callback (:class:`hfssl.evaluation.online.OnlineZeroShot`) and ``hfssl wise-ft`` score through here."""
    rows: Rows = []
    for source in (None, *settings.datasets):
        pairs = test_pairs(source)
        names = list(settings.class_names) if settings.class_names is not None else pairs.label_names
        if not names:
            raise ValueError(f"zero-shot classification needs class names: {pairs.source!r} has no class labels "
                             "(set data.label_column) and eval.zero-shot.class_names is not set")
        pixels, labels, _ = pairs_arrays(pairs.test)
        if (labels < 0).any() or labels.max() >= len(names):
            raise ValueError(f"zero-shot classification needs every test image of {pairs.source!r} labelled with one "
                             f"of its {len(names)} class names; found labels {sorted(set(labels.tolist()))[:10]}")
        classes = class_text_embeddings(encoder, names, settings.templates)
        row: dict[str, Any] = {"templates": len(settings.templates), "num_classes": len(names), "class_names": names,
                               "prompt": settings.templates[0],
                               **zero_shot_scores(encoder.embed_images(pixels), labels, classes)}
        if source is not None:
            row = {"dataset": source, **row}
        rows.append(row)
    return rows


def run_zero_shot(context: EvaluationContext, settings: ZeroShotSettings) -> Rows:
    return zero_shot_rows(context.dual_encoder(), context.image_text_test, settings)


ZERO_SHOT = register_protocol(Protocol(
    "zero-shot", (IMAGE_TEXT_EMBEDDINGS,), run_zero_shot, ZeroShotSettings,
    "zero-shot classification: class names x prompt templates (ensembled), top-1/top-5 (image-text models)",
    data=IMAGE_TEXT, held_out=True,
    card=ProtocolCard("Zero-shot", "**Zero-shot**: every class name is put into each prompt template, the text embeddings "
                      "of a class are averaged over the templates, and each image gets the class of highest cosine "
                      "similarity (CLIP, Radford et al. 2021, sec. 3.1.4); no labelled training data is used.",
                      "zero-shot-image-classification", "zero-shot-image-classification")))
