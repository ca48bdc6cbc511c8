"""The supervised baseline's data and inputs: the image loader's labelled splits, the SSL methods' views, the labels.

:func:`load_data` (``MethodSpec.build_data``) loads the data with the image loader and refuses, before the model is
built and before anything is written, a source without labels, a training split with unlabelled rows (label -1)
and a recipe whose ``model.num_classes`` disagrees with the data; it hands the number of classes to the model
config (``TrainingData.config_updates``). A streamed split cannot be read ahead, so :class:`SupervisedInputs` checks
every batch too. The views are the ``multi_view`` generator of the self-supervised methods (:mod:`hfssl.views`),
made from the recipe's ``views`` section exactly as for them.
"""

from __future__ import annotations

from typing import Any

import torch

from hfssl.data import images
from hfssl.data.sources import DataSourceError
from hfssl.data.training import TrainingData
from hfssl.settings import RecipeError
from hfssl.views import ViewInputs, build_views

#: What the supervised baseline needs from the data, and the way out when the data has no labels.
FIX = ("set data.label_column to the column that holds the class labels (a ClassLabel, integer class ids or class "
       "names), or train a self-supervised method on unlabelled data")


def label_column_text(data: Any) -> str:
    """The recipe's label column as an error message names it."""
    if data.label_column is not None:
        return f"data.label_column={data.label_column!r}"
    names = ", ".join(images.LABEL_COLUMN_NAMES)
    return f"the label column (data.label_column is unset: hfssl looks for a ClassLabel column or one named {names})"


def _source_text(data: Any) -> str:
    return f"dataset {data.source!r} split {data.train_split!r}"


def check_labelled(data: Any, training: TrainingData) -> int:
    """The number of classes of a labelled training set; ``DataSourceError`` for a source without labels or a
    (map-style) training split with unlabelled rows, naming the source, the label column and the fix."""
    if training.num_classes is None:
        raise DataSourceError(
            f"method supervised trains a classifier on the labels, but {_source_text(data)} has no labels in "
            f"{label_column_text(data)}; {FIX}")
    dataset = training.train_dataset
    if isinstance(dataset, images.PixelDataset):  # a streamed split is checked batch by batch (SupervisedInputs)
        labels = images.read_labels(dataset.dataset)
        unlabelled = int((labels < 0).sum())
        if unlabelled:
            raise DataSourceError(
                f"method supervised trains on labelled images only, but {unlabelled} of the {len(labels)} rows of "
                f"{_source_text(data)} have no label (null or -1 in {label_column_text(data)}); keep the labelled rows "
                "(for example datasets' Dataset.filter, saved with save_to_disk and given as data.source), use a "
                "semi-supervised protocol on the encoder (fixmatch, mean-teacher, pseudo-label), or " + FIX)
    return int(training.num_classes)


def load_data(recipe: Any, accelerator: Any) -> TrainingData:
    """``MethodSpec.build_data``: the image loader's data, checked to be labelled (:func:`check_labelled`), and
    ``num_classes`` for the model config. A recipe's ``model.num_classes`` must equal the data's."""
    training = images.build_training_data(recipe.data, accelerator)
    num_classes = check_labelled(recipe.data, training)
    requested = recipe.model.get("num_classes")
    if requested is not None and requested != num_classes:
        names = f" ({', '.join(training.label_names)})" if training.label_names else ""
        raise RecipeError(
            f"model.num_classes={requested} but {_source_text(recipe.data)} has {num_classes} classes{names} in "
            f"{label_column_text(recipe.data)}; remove model.num_classes (it is taken from the data) or set it to "
            f"{num_classes}")
    training.config_updates = {**training.config_updates, "num_classes": num_classes}
    return training


class SupervisedInputs:
    """``make_inputs(batch, generator)``: the ``multi_view`` views of the batch's images and their labels.

    Returns ``{"pixel_values": (B, V, C, S, S), "labels": (B,)}`` on the generator's device. A batch with an
    unlabelled row (label -1: a streamed split, which :func:`load_data` cannot read ahead) is refused with the
    data source, the label column and the fix.
    """

    def __init__(self, views: Any, data: Any) -> None:
        self.view_inputs = ViewInputs(build_views("multi_view", views, data.image_size, data.channels))
        self.data = data

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        if "labels" not in batch:
            raise ValueError(f"method supervised needs batches with 'labels' (int64 (B,)); got keys {sorted(batch)}")
        labels = batch["labels"]
        unlabelled = int((labels < 0).sum())
        if unlabelled:
            raise DataSourceError(
                f"method supervised trains on labelled images only, but a training batch of {_source_text(self.data)} "
                f"has {unlabelled} of {labels.shape[0]} rows without a label (-1 in {label_column_text(self.data)}); "
                + FIX)
        inputs = self.view_inputs(batch, generator)
        return {**inputs, "labels": labels.to(inputs["pixel_values"].device, non_blocking=True)}


def supervised_inputs(recipe: Any, data: TrainingData) -> SupervisedInputs:
    """``MethodSpec.build_inputs`` of the supervised baseline."""
    return SupervisedInputs(recipe.views, recipe.data)


def check_recipe(recipe: Any) -> None:
    """Refuse multi-crop local views: the classifier is trained on the global views (``views.num_views``)."""
    if recipe.views.num_local_views > 0:
        raise RecipeError(
            f"method supervised classifies the views of views.num_views, not multi-crop local views: "
            f"views.num_local_views is {recipe.views.num_local_views}; set views.num_local_views=0")
