"""The ``image-text`` modality: image-caption pairs from any ``datasets`` source.

An image column and a caption column of one source (Hub id, local folder with ``metadata.csv`` /
``metadata.jsonl``, parquet, Arrow, CSV/JSON with image paths) load through the same column checks,
decoding and errors as images (:mod:`hfssl.data.images`): the image column is detected or checked
like any image column, the caption column must hold non-empty strings (an empty or missing caption
is an error naming its row and column), and each prepared split has the columns ``pixels`` (uint8
``(C, S, S)``), ``label`` (int64, -1 when the source has no labels) and ``text`` (the caption), in
the fixed pseudo-random order of prepared image splits.

Batches for the engine are ``{"pixels": uint8 (B, C, S, S), "labels": int64 (B,), "texts": list[str]}``;
an image-text method's input builder tokenises the texts and makes the image views on the device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch

from hfssl.data.images import (
    STREAMING_EVAL_ROWS,
    dataset_features,
    load_raw_splits,
    materialize,
    prepare_image_dataset,
    resolve_image_column,
)
from hfssl.data.sources import DataSourceError
from hfssl.data.training import TrainingData

if TYPE_CHECKING:
    from accelerate import Accelerator

    from hfssl.data.config import ImageTextDataConfig

logger = logging.getLogger(__name__)

#: Caption columns tried, in order, when ``data.text_column`` is not set.
CAPTION_COLUMN_NAMES = ("caption", "captions", "text", "sentence", "name", "title")


@dataclass
class ImageTextSplits:
    """Prepared image-caption splits (``pixels``, ``label``, ``text``); ``test`` is ``None`` without an eval split."""

    train: datasets.Dataset | datasets.IterableDataset
    test: datasets.Dataset | None
    label_names: list[str] | None
    text_column: str
    source: str


def _is_string(feature: Any) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")


def resolve_caption_column(dataset: datasets.Dataset | datasets.IterableDataset, requested: str | None,
                           image_column: str, context: str) -> str:
    """The caption column: ``requested`` (checked to hold strings) or the first string column named
    like a caption (:data:`CAPTION_COLUMN_NAMES`)."""
    features = dataset_features(dataset)
    listing = ", ".join(f"{name} ({feature})" for name, feature in features.items())
    if requested is not None:
        if requested not in features:
            raise DataSourceError(f"data.text_column={requested!r} is not a column of {context}; available columns: "
                                  f"{listing}")
        if requested == image_column or not _is_string(features[requested]):
            raise DataSourceError(f"data.text_column={requested!r} of {context} holds {features[requested]}, not "
                                  "caption strings; set data.text_column to the caption column")
        return requested
    lowered = {name.lower(): name for name in features}
    for name in CAPTION_COLUMN_NAMES:
        if name in lowered and lowered[name] != image_column and _is_string(features[lowered[name]]):
            return lowered[name]
    raise DataSourceError(f"{context} has no caption column (tried {', '.join(CAPTION_COLUMN_NAMES)}); available "
                          f"columns: {listing}. Set data.text_column to the column that holds the captions")


def check_captions(dataset: datasets.Dataset, column: str, context: str) -> None:
    """Every caption is a non-empty string; the error names the first bad row."""
    values = dataset.with_format("arrow", columns=[column])[:].column(column).to_pylist()
    for row, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise DataSourceError(f"row {row} of column {column!r} of {context} has an empty caption ({value!r}); "
                                  "fix or drop that row (every image needs a caption)")


def _prepare(raw: datasets.Dataset | datasets.IterableDataset, data: ImageTextDataConfig, split: str
             ) -> tuple[datasets.Dataset | datasets.IterableDataset, str]:
    context = f"dataset {data.source!r} split {split!r}"
    image_column = resolve_image_column(raw, data.image_column, context)
    caption = resolve_caption_column(raw, data.text_column, image_column, context)
    if isinstance(raw, datasets.Dataset):
        check_captions(raw, caption, context)
    return prepare_image_dataset(raw, data, split, text_column=caption), caption


def load_image_text_splits(data: ImageTextDataConfig) -> ImageTextSplits:
    """Load and prepare the train and (when there is one) eval split of an image-caption source."""
    raw_train, raw_test = load_raw_splits(data)
    train, caption = _prepare(raw_train, data, data.train_split)
    test = None
    if raw_test is not None:
        test, _ = _prepare(raw_test, data, data.eval_split)
        if isinstance(test, datasets.IterableDataset):
            test = materialize(test, data.max_eval_samples or STREAMING_EVAL_ROWS)
    label = train.features["label"]
    names = list(label.names) if isinstance(label, datasets.ClassLabel) else None
    logger.info("image-text data %s: train %s pairs, test %s pairs, captions from %r", data.source,
                len(train) if isinstance(train, datasets.Dataset) else "streamed",
                len(test) if test is not None else 0, caption)
    return ImageTextSplits(train, test, names, caption, data.source)


def collate_image_text(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows -> ``{"pixels": uint8 (B, C, S, S), "labels": int64 (B,), "texts": list[str]}``."""
    pixels = torch.stack([torch.as_tensor(np.asarray(row["pixels"])) for row in rows]).to(torch.uint8)
    labels = torch.tensor([int(row["label"]) for row in rows], dtype=torch.int64)
    return {"pixels": pixels, "labels": labels, "texts": [str(row["text"]) for row in rows]}


def build_training_data(data: ImageTextDataConfig, accelerator: Accelerator) -> TrainingData:
    """The loader of the ``image-text`` modality: prepared pairs, the eval split for zero-shot and retrieval."""
    with accelerator.main_process_first():
        splits = load_image_text_splits(data)
    return TrainingData(
        train_dataset=splits.train,
        collate_fn=collate_image_text,
        eval_test_dataset=splits.test,
        label_names=splits.label_names,
    )
