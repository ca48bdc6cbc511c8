"""The contract between the data side and the training engine: :class:`TrainingData`.

Each modality has a loader in this package (:mod:`hfssl.data.images`, :mod:`hfssl.data.text`,
:mod:`hfssl.data.image_text`) that turns the recipe's ``data`` section into ``TrainingData``;
:data:`hfssl.registry.MODALITY_LOADERS` picks it. A method that needs more (word2vec's vocabulary) gives its
own ``MethodSpec.build_data`` and builds the same object, usually from the shared pieces of its
modality's module.
"""

from __future__ import annotations

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
        collate_fn: list of rows -> batch (``None``: the DataLoader's default collation). Batches by
            modality: images ``{"pixels": uint8 (B, C, H, W), "labels": int64 (B,)}`` (label -1 when
            unlabelled); text ``{"texts": list[str]}`` or the method's token rows; image-text
            ``{"pixels", "labels", "texts": list[str]}``.
        make_inputs: ``(batch, generator) -> model inputs``, run on the training device with the
            whole batch; set from ``MethodSpec.build_inputs`` when the loader leaves it ``None``.
        eval_train_dataset / eval_test_dataset: labelled prepared splits for online kNN and the
            end-of-run evaluation (or ``None``).
        config_updates: model config values derived from the data (word2vec's ``vocab_size``).
        label_names: class names of the ``labels`` ids, when the data has them.
        num_classes: number of classes of the ``labels`` ids (a ``ClassLabel``'s count, else the largest label
            + 1), or ``None`` for unlabelled data; set by the image loader (the supervised baseline sizes
            its classifier with it).
        save_artifacts: ``run_dir -> None`` that writes data-derived files next to the model
            (a tokenizer or vocabulary), or ``None``.
    """

    train_dataset: torch.utils.data.Dataset | datasets.Dataset | datasets.IterableDataset
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] | None
    make_inputs: Callable[[dict[str, Any], torch.Generator], dict[str, Any]] | None = None
    eval_train_dataset: torch.utils.data.Dataset | datasets.Dataset | None = None
    eval_test_dataset: torch.utils.data.Dataset | datasets.Dataset | None = None
    config_updates: dict[str, Any] = field(default_factory=dict)
    label_names: list[str] | None = None
    num_classes: int | None = None
    save_artifacts: Callable[[Path], None] | None = None

