"""Data for hfssl: sources (Hub id, local path, built-in), image decoding, and the engine's contract.

:class:`TrainingData` is what a method's ``MethodSpec.build_data(recipe, accelerator)`` hook returns
to the training engine (see ``ARCHITECTURE.md``). The image pipeline lives in
:mod:`hfssl.data.images` (``build_training_data`` is the hook of every image method), the sources in
:mod:`hfssl.data.sources` and the offline built-in sets in :mod:`hfssl.data.builtin`.

The image API is re-exported lazily (PEP 562 ``__getattr__``) so that importing
``hfssl.data.TrainingData`` (the text pipeline does) neither imports the image stack nor creates an
import cycle with :mod:`hfssl.data.images`, which itself imports :class:`TrainingData` from here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets
    import torch


@dataclass
class TrainingData:
    """Everything the training engine needs from the data side of one method.

    Attributes:
        train_dataset: the training set, indexable (``datasets.Dataset`` or a torch ``Dataset``) or
            iterable (``datasets.IterableDataset`` when ``data.streaming`` is set). Rows are already
            decoded to fixed-size arrays: DataLoader workers only fetch and stack.
        collate_fn: list of rows -> batch. For images the batch is
            ``{"pixels": uint8 (B, C, H, W), "labels": int64 (B,)}`` (label -1 when unlabelled).
            ``None`` means the DataLoader's default collation.
        make_inputs: ``(batch, generator) -> model inputs``, run on the training device after the
            batch has been moved there: the method's view generator (augmentation) or input builder.
            Seeded by the ``torch.Generator`` so the same seed gives the same inputs.
        eval_train_dataset: labelled prepared images used as the kNN memory bank (or ``None``).
        eval_test_dataset: labelled prepared images used as kNN queries (or ``None``).
        config_updates: model config values derived from the data (word2vec's ``vocab_size``).
        label_names: class names of the ``labels`` ids, when the data has them.
        save_artifacts: ``run_dir -> None`` that writes data-derived files next to the model
            (a tokenizer or vocabulary), or ``None``.
    """

    train_dataset: torch.utils.data.Dataset | datasets.Dataset | datasets.IterableDataset
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] | None
    make_inputs: Callable[[dict[str, Any], torch.Generator], dict[str, torch.Tensor]]
    eval_train_dataset: torch.utils.data.Dataset | datasets.Dataset | None = None
    eval_test_dataset: torch.utils.data.Dataset | datasets.Dataset | None = None
    config_updates: dict[str, Any] = field(default_factory=dict)
    label_names: list[str] | None = None
    save_artifacts: Callable[[Path], None] | None = None


# Public name -> submodule that defines it; resolved on first attribute access.
_LAZY_EXPORTS = {
    "DataSourceError": "hfssl.data.sources",
    "HubUnavailableError": "hfssl.data.sources",
    "SplitNotFoundError": "hfssl.data.sources",
    "load_split": "hfssl.data.sources",
    "list_splits": "hfssl.data.sources",
    "source_kind": "hfssl.data.sources",
    "BUILTIN_IMAGE_SOURCES": "hfssl.data.builtin",
    "load_builtin": "hfssl.data.builtin",
    "BadImageError": "hfssl.data.images",
    "ImageSplits": "hfssl.data.images",
    "PixelDataset": "hfssl.data.images",
    "build_training_data": "hfssl.data.images",
    "collate_images": "hfssl.data.images",
    "dataset_mean_std": "hfssl.data.images",
    "arrays_to_pixels": "hfssl.data.decode",
    "decode_image": "hfssl.data.decode",
    "load_image_splits": "hfssl.data.images",
    "prepare_image_dataset": "hfssl.data.images",
    "read_labels": "hfssl.data.images",
    "read_pixels": "hfssl.data.images",
    "subsample": "hfssl.data.images",
}

__all__ = ["TrainingData", *_LAZY_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _LAZY_EXPORTS:
        value = getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hfssl.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
