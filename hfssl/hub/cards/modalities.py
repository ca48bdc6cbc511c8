"""What a card says about the training data, by the data's kind (``MethodSpec.modality``).

Some card text depends on what the model was trained on rather than on its card family: the
recipe's image and view settings, the data line of the limitations, whether test examples are
"images", and the model-index task of an evaluation. A new modality adds one :data:`MODALITY_CARDS`
entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hfssl.data.config import IMAGE, IMAGE_TEXT, TEXT
from hfssl.hub.cards.common import format_value
from hfssl.hub.run import DatasetDescription
from hfssl.recipe import Recipe

Rows = list[tuple[str, str]]


def _no_rows(recipe: Recipe) -> Rows:
    return []


def _image_data_rows(recipe: Recipe) -> Rows:
    return [("data.image_size", str(recipe.data.image_size)), ("data.channels", str(recipe.data.channels))]


def _views_rows(recipe: Recipe) -> Rows:
    views = recipe.views
    rows = [("views.num_views", str(views.num_views)), ("views.crop_scale", format_value(views.crop_scale))]
    if views.num_local_views:
        rows += [("views.num_local_views", str(views.num_local_views)),
                 ("views.local_crop_size", str(views.local_crop_size))]
    for name in ("flip_prob", "color_jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
        rows.append((f"views.{name}", format_value(getattr(views, name))))
    if views.rotation_prob > 0:
        rows += [("views.rotation_prob", format_value(views.rotation_prob)),
                 ("views.rotation_degrees", format_value(views.rotation_degrees))]
    return rows + [("views.mean", format_value(views.mean)), ("views.std", format_value(views.std))]


def _trained_image_size(recipe: Recipe) -> int | None:
    return recipe.views.crop_size or recipe.data.image_size


def _no_image_size(recipe: Recipe) -> int | None:
    return None


def _image_data_limitation(recipe: Recipe, data: DatasetDescription) -> str:
    kind = "grey" if recipe.data.channels == 1 else "colour"
    return (f"Trained only on {data.name} ({_trained_image_size(recipe)} px {kind} images): expect the features to "
            "transfer poorly to images unlike these (other domains, resolutions or colour statistics).")


def _text_data_limitation(recipe: Recipe, data: DatasetDescription) -> str:
    return (f"Trained only on {data.name}: expect weaker representations for text unlike it "
            "(other domains, registers or languages).")


@dataclass(frozen=True)
class ModalityCard:
    """The card's words for one kind of training data.

    Attributes:
        unit: what the test and training examples of the evaluation are called (``images``).
        image_tasks: the model-index task of an evaluation is the image one of the protocol
            (``image-classification``), else the text one (``text-classification``).
        data_rows: recipe-table rows of the ``data`` section beyond source and split.
        views_rows: recipe-table rows of the ``views`` section (none where there is none).
        data_limitation: ``(recipe, data) -> str``, the limitations line about the training data.
        trained_image_size: ``recipe -> int | None``, the side of the training images, if any.
    """

    unit: str
    image_tasks: bool
    data_rows: Callable[[Recipe], Rows]
    views_rows: Callable[[Recipe], Rows]
    data_limitation: Callable[[Recipe, DatasetDescription], str]
    trained_image_size: Callable[[Recipe], int | None]


MODALITY_CARDS: dict[str, ModalityCard] = {
    IMAGE: ModalityCard("images", True, _image_data_rows, _views_rows, _image_data_limitation, _trained_image_size),
    TEXT: ModalityCard("examples", False, _no_rows, _no_rows, _text_data_limitation, _no_image_size),
    IMAGE_TEXT: ModalityCard("examples", False, _no_rows, _no_rows, _text_data_limitation, _trained_image_size),
}


def modality_card(modality: str) -> ModalityCard:
    """The :class:`ModalityCard` of a modality; ``ValueError`` naming the known ones."""
    if modality not in MODALITY_CARDS:
        raise ValueError(f"no model-card words for modality {modality!r}; known: {', '.join(MODALITY_CARDS)}")
    return MODALITY_CARDS[modality]
