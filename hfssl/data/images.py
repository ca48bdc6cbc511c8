"""Image data for every vision method: load a source, decode it once, and hand batches to the engine.

Flow (the ``build_data`` hook of every image method is :func:`build_training_data`):

1. :func:`load_image_splits` loads ``data.train_split`` and ``data.eval_split`` of ``data.source``
   (Hub id, local path or ``builtin:NAME``; see :mod:`hfssl.data.sources`).
2. :func:`prepare_image_dataset` decodes each split *once* into two columns: ``pixels``, uint8
   ``(C, H, W)`` with ``C = data.channels`` and ``H = W = data.image_size``, and ``label``, int64
   (a ``ClassLabel`` when the source names its classes; -1 when it has no labels). Decoding rules
   are in :mod:`hfssl.data.decode`. Sets whose image column is a fixed-shape array (the built-ins)
   are decoded vectorised in memory; everything else with ``Dataset.map(batched=True)``, in
   ``data.num_workers`` processes for large splits and cached by ``datasets`` fingerprinting, so a
   second run reads the decoded Arrow file.
3. Per step, DataLoader workers only fetch and stack (:class:`PixelDataset` reads the decoded
   Arrow buffers without copies; :func:`collate_images` stacks) and the method's view generator
   makes the augmented views on the training device (``make_inputs``).

``data.streaming`` gives a lazily decoded ``datasets.IterableDataset`` for training instead, with
the first ``data.max_eval_samples`` (default 10,000) rows of each split materialised for kNN.

Row order and caps: a prepared split is put in a fixed pseudo-random order (a permutation seeded
with :data:`ORDER_SEED`, independent of ``train.seed``), and ``data.max_train_samples`` /
``data.max_eval_samples`` keep the first N rows of that order. So any first-N subset, here or in
the engine (online kNN takes the first ``train.knn_max_samples`` rows), is a uniform sample even
when the source is sorted by class, as image folders are. Errors name the original row index.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch
from datasets.fingerprint import Hasher

from hfssl.data.builtin import arrays_to_dataset
from hfssl.data.decode import IMAGE_EXTENSIONS, arrays_to_pixels, decode_image
from hfssl.data.training import TrainingData
from hfssl.data.sources import (
    DataSourceError,
    SplitNotFoundError,
    describe_splits,
    list_splits,
    load_split,
    source_base_dir,
    source_kind,
)

if TYPE_CHECKING:
    from accelerate import Accelerator

    from hfssl.data.config import ImageDataConfig as DataConfig

logger = logging.getLogger(__name__)

IMAGE_COLUMN_NAMES = ("image", "img", "pixels", "pixel_values")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "target")
ORDER_SEED = 0
#: Splits with at least this many rows are decoded in ``data.num_workers`` processes. Below it,
#: starting the processes costs more than they save (2,000 PNGs on 2 cores: 0.6 s serial, 1.6 s
#: with 2 processes).
PARALLEL_MIN_ROWS = 10_000
#: Fixed-shape array sets are decoded in memory (vectorised) up to this output size.
VECTORISED_MAX_BYTES = 4 * 2**30
#: Rows of a streamed split materialised for evaluation when ``data.max_eval_samples`` is unset.
STREAMING_EVAL_ROWS = 10_000
_VECTORISED_CHUNK = 8192
_PREPARED_CACHE: collections.OrderedDict[tuple, datasets.Dataset] = collections.OrderedDict()
_PREPARED_CACHE_SIZE = 8


class BadImageError(DataSourceError):
    """An image that cannot be decoded; the message names the row, the column and the fix."""


@dataclass
class ImageSplits:
    """Prepared splits of one image source.

    Attributes:
        train: prepared training split (``pixels`` uint8 ``(C, S, S)``, ``label`` int64), or a
            ``datasets.IterableDataset`` of such rows when ``data.streaming`` is set.
        test: prepared evaluation split, or ``None`` when ``data.eval_split`` is ``None`` or absent.
        label_names: class names of the label ids (``None`` when the source does not name them).
        num_classes: number of classes (``None`` when the source has no labels).
        source: ``data.source``.
    """

    train: datasets.Dataset | datasets.IterableDataset
    test: datasets.Dataset | None
    label_names: list[str] | None
    num_classes: int | None
    source: str


# --------------------------------------------------------------------------------------- columns


def _describe_feature(feature: Any) -> str:
    if isinstance(feature, datasets.ClassLabel):
        return f"ClassLabel ({feature.num_classes} classes)"
    if isinstance(feature, datasets.Value):
        return f"{feature.dtype} values"
    if isinstance(feature, datasets.Image):
        return "images"
    return type(feature).__name__


def _list_depth(feature: Any) -> tuple[int, Any]:
    depth = 0
    while isinstance(feature, (datasets.List, datasets.LargeList)):
        feature, depth = feature.feature, depth + 1
    return depth, feature


def _image_like(feature: Any) -> bool:
    """Whether a column of this feature type can hold images (decoded, encoded, paths or arrays)."""
    if isinstance(feature, (datasets.Image, datasets.Array2D, datasets.Array3D)):
        return True
    if isinstance(feature, datasets.Value):
        return feature.dtype in ("string", "large_string", "binary", "large_binary")
    if isinstance(feature, dict):
        return "bytes" in feature or "path" in feature
    depth, inner = _list_depth(feature)
    return depth >= 2 and isinstance(inner, datasets.Value) and inner.dtype not in ("string", "large_string")


def _column_listing(features: datasets.Features) -> str:
    return ", ".join(f"{name!r} ({_describe_feature(feature)})" for name, feature in features.items())


def dataset_features(dataset: datasets.Dataset | datasets.IterableDataset) -> datasets.Features:
    features = dataset.features
    if features is None:  # some streamed sources only know their columns after a first row
        features = dataset._resolve_features().features
    return features


def resolve_image_column(
    dataset: datasets.Dataset | datasets.IterableDataset, requested: str | None, context: str
) -> str:
    """The image column: ``requested`` (checked) or the first ``Image`` feature, a column named
    image/img/pixels/pixel_values, or the first fixed-shape array column.

    Raises:
        DataSourceError: the column is missing (available columns listed), holds no images
            (labels, numbers or text), or none could be found.
    """
    features = dataset_features(dataset)
    if requested is not None:
        if requested not in features:
            raise DataSourceError(
                f"data.image_column={requested!r} is not a column of {context}; available columns: "
                f"{_column_listing(features)}"
            )
        feature = features[requested]
        if not _image_like(feature):
            candidates = [name for name, value in features.items() if _image_like(value)]
            hint = f"; columns that can hold images: {', '.join(map(repr, candidates))}" if candidates else ""
            raise DataSourceError(
                f"data.image_column={requested!r} of {context} holds {_describe_feature(feature)}, not images "
                f"(expected an Image feature, image arrays, encoded bytes or file paths){hint}"
            )
        if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
            _check_path_column(dataset, requested, context)
        return requested
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            return name
    lowered = {name.lower(): name for name in features}
    for name in IMAGE_COLUMN_NAMES:
        if name in lowered and _image_like(features[lowered[name]]):
            return lowered[name]
    for name, feature in features.items():
        if isinstance(feature, (datasets.Array2D, datasets.Array3D)):
            return name
    raise DataSourceError(
        f"found no image column in {context}: no Image feature and no column named "
        f"{'/'.join(IMAGE_COLUMN_NAMES)}; set data.image_column to one of its columns: {_column_listing(features)}"
    )


def _check_path_column(dataset: datasets.Dataset | datasets.IterableDataset, column: str, context: str) -> None:
    """A text column chosen as the image column must hold file paths, not captions or names."""
    first = next((value for value in _first_values(dataset, column) if value), None)
    if first is None:
        return
    if Path(first).suffix.lower() in IMAGE_EXTENSIONS or "://" in first:
        return
    raise DataSourceError(
        f"data.image_column={column!r} of {context} holds text such as {first[:60]!r}, not image file paths; "
        "set data.image_column to the column with the images or their paths"
    )


def _first_values(dataset: datasets.Dataset | datasets.IterableDataset, column: str, count: int = 5) -> list[Any]:
    if isinstance(dataset, datasets.Dataset):
        return list(dataset.select_columns([column])[: min(count, len(dataset))][column])
    return [row[column] for row in dataset.select_columns([column]).take(count)]


def resolve_label_column(
    dataset: datasets.Dataset | datasets.IterableDataset, requested: str | None, image_column: str, context: str
) -> str | None:
    """The label column: ``requested`` (checked) or the first ``ClassLabel``, or a column named
    label/labels/fine_label/target holding integers or strings; ``None`` when there is none.

    Raises:
        DataSourceError: the requested column is missing, is the image column, or holds values
            that are not class ids or class names.
    """
    features = dataset_features(dataset)
    if requested is not None:
        if requested not in features:
            raise DataSourceError(
                f"data.label_column={requested!r} is not a column of {context}; available columns: "
                f"{_column_listing(features)}"
            )
        if requested == image_column or not _label_like(features[requested]):
            raise DataSourceError(
                f"data.label_column={requested!r} of {context} holds {_describe_feature(features[requested])}, "
                "not class labels (expected a ClassLabel, integer class ids or class-name strings); set "
                "data.label_column to the label column"
            )
        return requested
    for name, feature in features.items():
        if isinstance(feature, datasets.ClassLabel) and name != image_column:
            return name
    lowered = {name.lower(): name for name in features}
    for name in LABEL_COLUMN_NAMES:
        if name in lowered and lowered[name] != image_column and _label_like(features[lowered[name]]):
            return lowered[name]
    return None


def _label_like(feature: Any) -> bool:
    if isinstance(feature, datasets.ClassLabel):
        return True
    return isinstance(feature, datasets.Value) and (
        feature.dtype.startswith(("int", "uint")) or feature.dtype in ("bool", "string", "large_string")
    )


def _is_text_label(feature: Any) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")


def encode_text_labels(splits: list[datasets.Dataset], column: str) -> list[datasets.Dataset]:
    """Turn a class-name string column into one ``ClassLabel`` shared by all ``splits``.

    The class ids are the sorted union of the names in every split, so train and test agree even
    when a class is missing from one of them.
    """
    names: set[str] = set()
    for split in splits:
        names.update(value for value in split.unique(column) if value is not None)
    feature = datasets.ClassLabel(names=sorted(names))
    return [split.cast_column(column, feature) for split in splits]


# -------------------------------------------------------------------------------------- decoding


def _decode_batch(
    batch: dict[str, list[Any]],
    indices: list[int],
    image_column: str,
    label_column: str | None,
    channels: int,
    image_size: int,
    on_bad_image: str,
    base_dir: str | None,
    row_ids: np.ndarray | None,
    context: str,
    text_column: str | None = None,
) -> dict[str, np.ndarray]:
    """``Dataset.map`` function: decode a batch; drop (skip) or report (error) unreadable images.

    With ``text_column`` the row's text is carried along as ``text`` (image-caption pairs)."""
    pixels, labels, texts = [], [], []
    label_values = batch[label_column] if label_column is not None else None
    for position, value in enumerate(batch[image_column]):
        try:
            pixels.append(decode_image(value, channels, image_size, base_dir))
        except Exception as error:  # noqa: BLE001 - any decoder failure is a bad image, reported below
            row = int(row_ids[indices[position]]) if row_ids is not None else int(indices[position])
            if on_bad_image == "skip":
                logger.debug("skipping row %d of %s: %s", row, context, error)
                continue
            raise BadImageError(
                f"cannot read the image in row {row} of column {image_column!r} of {context}: "
                f"{type(error).__name__}: {error}. Fix or remove that row, or set data.on_bad_image=skip "
                "to drop unreadable images"
            ) from error
        label = label_values[position] if label_values is not None else None
        labels.append(-1 if label is None else int(label))
        if text_column is not None:
            texts.append(batch[text_column][position])
    stacked = np.stack(pixels) if pixels else np.zeros((0, channels, image_size, image_size), dtype=np.uint8)
    output = {"pixels": stacked, "label": np.asarray(labels, dtype=np.int64)}
    if text_column is not None:
        output["text"] = texts
    return output


def _fixed_array_values(dataset: datasets.Dataset, column: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a fixed-shape ``Array2D``/``Array3D`` column as one ``(n, *shape)`` array.

    Read from Arrow directly: datasets' numpy formatter would upcast uint8 to int64.
    """
    feature = dataset.features[column]
    table = dataset.with_format("arrow", columns=[column])[start:stop]
    chunks = []
    for chunk in table.column(column).chunks:
        if chunk.null_count:
            raise DataSourceError(f"column {column!r} has missing images (null rows); drop them before training")
        values = chunk.storage
        for _ in feature.shape:
            values = values.flatten()
        chunks.append(values.to_numpy(zero_copy_only=False).reshape((len(chunk), *feature.shape)))
    return np.concatenate(chunks) if chunks else np.zeros((0, *feature.shape), dtype=feature.dtype)


def read_pixels(dataset: datasets.Dataset, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rows ``start:stop`` of a prepared split's ``pixels`` as one uint8 ``(N, C, H, W)`` array.

    Reads the Arrow buffers directly: about 1,000x faster than
    ``np.asarray(dataset.with_format("numpy")["pixels"])`` (10,000 rows of 3x32x32: 0.01 s against
    13 s here), which also upcasts to int64. Honours ``select()`` views.
    """
    stop = len(dataset) if stop is None else min(stop, len(dataset))
    return _fixed_array_values(dataset, "pixels", start, stop)


def read_labels(dataset: datasets.Dataset) -> np.ndarray:
    """A prepared split's ``label`` column as int64 ``(N,)`` (-1 where unlabelled)."""
    return label_values(dataset, "label")


def label_values(dataset: datasets.Dataset, column: str | None) -> np.ndarray:
    if column is None:
        return np.full(len(dataset), -1, dtype=np.int64)
    values = dataset.with_format("arrow", columns=[column])[:].column(column)
    return values.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _output_features(label_feature: Any, channels: int, image_size: int, text: bool = False) -> datasets.Features:
    label = label_feature if isinstance(label_feature, datasets.ClassLabel) else datasets.Value("int64")
    features = {"pixels": datasets.Array3D(shape=(channels, image_size, image_size), dtype="uint8"), "label": label}
    if text:
        features["text"] = datasets.Value("string")
    return datasets.Features(features)


def _prepare_vectorised(
    dataset: datasets.Dataset, order: np.ndarray, image_column: str, label_column: str | None, data: DataConfig,
    text_column: str | None = None,
) -> datasets.Dataset:
    """Decode a fixed-shape array column in memory; row ``i`` of the result is source row ``order[i]``
    (with ``text_column``, its captions are carried along as ``text``)."""
    key = (dataset._fingerprint, Hasher.hash(order), image_column, label_column, data.channels, data.image_size,
           text_column)
    if key in _PREPARED_CACHE:
        _PREPARED_CACHE.move_to_end(key)
        return _PREPARED_CACHE[key]
    # Read the source contiguously and reorder with numpy: gathering through datasets would slice
    # the Arrow table into one chunk per row (seconds for 60,000 rows instead of milliseconds).
    values = _fixed_array_values(dataset, image_column, 0, len(dataset))[order]
    pixels = np.concatenate([
        arrays_to_pixels(values[start: start + _VECTORISED_CHUNK], data.channels, data.image_size)
        for start in range(0, len(values), _VECTORISED_CHUNK)
    ])
    label_feature = dataset.features[label_column] if label_column else None
    columns = {"pixels": pixels, "label": label_values(dataset, label_column)[order]}
    if text_column is not None:
        texts = dataset.with_format("arrow", columns=[text_column])[:].column(text_column).to_pylist()
        columns["text"] = np.asarray(texts, dtype=object)[order]
    prepared = arrays_to_dataset(
        columns,
        _output_features(label_feature, data.channels, data.image_size, text=text_column is not None),
        fingerprint=Hasher.hash(("hfssl-prepared", *key)),
    )
    _PREPARED_CACHE[key] = prepared
    if len(_PREPARED_CACHE) > _PREPARED_CACHE_SIZE:
        _PREPARED_CACHE.popitem(last=False)
    return prepared


def _use_vectorised(dataset: datasets.Dataset, num_rows: int, image_column: str, data: DataConfig) -> bool:
    feature = dataset.features[image_column]
    if not isinstance(feature, (datasets.Array2D, datasets.Array3D)) or any(size is None for size in feature.shape):
        return False
    return num_rows * data.channels * data.image_size**2 <= VECTORISED_MAX_BYTES


def _order(num_rows: int, limit: int | None) -> np.ndarray:
    """The fixed pseudo-random row order of a split, cut to its first ``limit`` rows."""
    order = np.random.default_rng(ORDER_SEED).permutation(num_rows)
    return order if limit is None else order[:limit]


def prepared_row_ids(num_rows: int, limit: int | None = None) -> np.ndarray:
    """The source row of every row of a prepared (not streamed) split: row ``i`` of
    :func:`prepare_image_dataset`'s output for a split of ``num_rows`` rows capped at ``limit`` is
    source row ``prepared_row_ids(num_rows, limit)[i]`` (when no bad image is skipped). ``hfssl embed``
    writes its rows with these ids, in source order."""
    return _order(num_rows, limit)


def _limit_for(data: DataConfig, split: str) -> int | None:
    limit = data.max_train_samples if split == data.train_split else data.max_eval_samples
    if limit is not None and limit < 1:
        key = "max_train_samples" if split == data.train_split else "max_eval_samples"
        raise DataSourceError(f"data.{key} must be at least 1 (or null for no cap), got {limit}")
    return limit


def _torch_format(dataset: datasets.Dataset) -> datasets.Dataset:
    # datasets' torch formatter turns every integer array into int64; asking for uint8 on the
    # pixels column keeps rows 8x smaller (labels stay Python ints; collate_images makes them int64).
    return dataset.with_format("torch", columns=["pixels"], dtype=torch.uint8, output_all_columns=True)


def prepare_image_dataset(
    dataset: datasets.Dataset | datasets.IterableDataset, data: DataConfig, split: str, text_column: str | None = None
) -> datasets.Dataset | datasets.IterableDataset:
    """Decode one split into ``pixels`` (uint8 ``(C, S, S)``) and ``label`` (int64, -1 unlabelled),
    plus ``text`` (the row's ``text_column``) for image-caption pairs.

    Args:
        dataset: the raw split (any image column type, see :mod:`hfssl.data.decode`).
        data: the recipe's data section: ``image_column``/``label_column`` (auto-detected when
            ``None``), ``channels`` (C), ``image_size`` (S), ``on_bad_image``, ``num_workers`` and
            the caps ``max_train_samples`` (for ``split == data.train_split``) / ``max_eval_samples``.
        split: the split's name, used for the cap and in messages.

    Returns:
        A torch-formatted ``datasets.Dataset`` in the fixed pseudo-random order described in the
        module docstring (a lazily decoded ``IterableDataset`` for streamed input, capped with
        ``take`` and in source order).

    Raises:
        DataSourceError: empty split, missing or non-image/non-label column.
        BadImageError: an unreadable image while ``data.on_bad_image == "error"``; with ``"skip"``
            bad rows are dropped and their number is logged (an error if every row is bad).
    """
    context = f"dataset {data.source!r} split {split!r}"
    if isinstance(dataset, datasets.IterableDataset):
        return _prepare_streaming(dataset, data, split, context, text_column)
    if len(dataset) == 0:
        raise DataSourceError(f"{context} is empty (0 rows); choose another split or source")
    image_column = resolve_image_column(dataset, data.image_column, context)
    label_column = resolve_label_column(dataset, data.label_column, image_column, context)
    if label_column is not None and _is_text_label(dataset.features[label_column]):
        (dataset,) = encode_text_labels([dataset], label_column)
    order = _order(len(dataset), _limit_for(data, split))
    if _use_vectorised(dataset, len(order), image_column, data):
        return _torch_format(_prepare_vectorised(dataset, order, image_column, label_column, data, text_column))
    selected = dataset.select(order)
    return _torch_format(_prepare_with_map(selected, order, image_column, label_column, data, split, context,
                                           text_column))


def _prepare_with_map(
    dataset: datasets.Dataset, row_ids: np.ndarray, image_column: str, label_column: str | None, data: DataConfig,
    split: str, context: str, text_column: str | None = None,
) -> datasets.Dataset:
    """Decode with ``Dataset.map``; ``row_ids[i]`` is the source row of ``dataset[i]`` (for messages)."""
    if isinstance(dataset.features[image_column], datasets.Image):
        # Decode ourselves, so an unreadable image is reported with its row (datasets would raise
        # while formatting the whole batch, without saying which row).
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    base_dir = source_base_dir(data.source) if source_kind(data.source) == "local" else None
    label_feature = dataset.features[label_column] if label_column else None
    num_proc = data.num_workers if data.num_workers > 0 and len(dataset) >= PARALLEL_MIN_ROWS else None
    prepared = dataset.map(
        _decode_batch,
        batched=True,
        batch_size=256,
        with_indices=True,
        remove_columns=dataset.column_names,
        features=_output_features(label_feature, data.channels, data.image_size, text=text_column is not None),
        num_proc=num_proc,
        desc=f"Decoding {data.source} [{split}]",
        fn_kwargs={
            "image_column": image_column,
            "label_column": label_column,
            "channels": data.channels,
            "image_size": data.image_size,
            "on_bad_image": data.on_bad_image,
            "base_dir": None if base_dir is None else str(base_dir),
            "row_ids": row_ids,
            "context": context,
            "text_column": text_column,
        },
    )
    skipped = len(dataset) - len(prepared)
    if skipped and len(prepared) == 0:
        raise BadImageError(
            f"every one of the {len(dataset)} images in column {image_column!r} of {context} is unreadable; "
            "check data.image_column and the files"
        )
    if skipped:
        logger.warning(
            "skipped %d of %d unreadable images in column %r of %s (data.on_bad_image=skip)",
            skipped, len(dataset), image_column, context,
        )
    return prepared


def _prepare_streaming(
    dataset: datasets.IterableDataset, data: DataConfig, split: str, context: str, text_column: str | None = None
) -> datasets.IterableDataset:
    """Lazily decoded streamed split, in source order, capped with ``take``.

    Nothing is known about a stream before it is read, so the fixed random order does not apply and
    rows skipped under ``data.on_bad_image=skip`` are only logged at debug level, not counted.
    """
    image_column = resolve_image_column(dataset, data.image_column, context)
    label_column = resolve_label_column(dataset, data.label_column, image_column, context)
    features = dataset_features(dataset)
    if label_column is not None and _is_text_label(features[label_column]):
        raise DataSourceError(
            f"data.label_column={label_column!r} of {context} holds class names; streamed sources need integer "
            "or ClassLabel labels (or set data.streaming=false)"
        )
    if isinstance(features[image_column], datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    limit = _limit_for(data, split)
    if limit is not None:
        dataset = dataset.take(limit)
    base_dir = source_base_dir(data.source) if source_kind(data.source) == "local" else None
    prepared = dataset.map(
        _decode_batch,
        batched=True,
        batch_size=256,
        with_indices=True,
        remove_columns=list(features),
        features=_output_features(features[label_column] if label_column else None, data.channels, data.image_size,
                                  text=text_column is not None),
        fn_kwargs={
            "image_column": image_column, "label_column": label_column, "channels": data.channels,
            "image_size": data.image_size, "on_bad_image": data.on_bad_image,
            "base_dir": None if base_dir is None else str(base_dir), "row_ids": None, "context": context,
            "text_column": text_column,
        },
    )
    return prepared.with_format("numpy")


def materialize(dataset: datasets.IterableDataset, limit: int) -> datasets.Dataset:
    """The first ``limit`` rows of a prepared streamed split as an in-memory, torch-formatted Dataset."""
    pixels, labels, texts = [], [], []
    count = 0
    for batch in dataset.iter(batch_size=1024):
        pixels.append(np.asarray(batch["pixels"], dtype=np.uint8))
        labels.append(np.asarray(batch["label"], dtype=np.int64))
        texts.extend(batch.get("text", []))
        count += len(labels[-1])
        if count >= limit:
            break
    if not pixels:
        raise DataSourceError("the streamed split produced no rows")
    features = dataset.features
    columns = {"pixels": np.concatenate(pixels)[:limit], "label": np.concatenate(labels)[:limit]}
    if "text" in features:
        columns["text"] = texts[:limit]
    table = arrays_to_dataset(columns, features)
    return _torch_format(table)


# ---------------------------------------------------------------------------------------- splits


def check_not_empty(raw: datasets.Dataset | datasets.IterableDataset, data: DataConfig, split: str) -> None:
    if isinstance(raw, datasets.Dataset) and len(raw) == 0:
        try:
            available = describe_splits(list_splits(data.source, data.config_name))
        except DataSourceError:
            available = "(unknown)"
        raise DataSourceError(
            f"split {split!r} of dataset {data.source!r} is empty (0 rows); available splits: {available}. "
            "Set data.train_split / data.eval_split to a split with rows"
        )


def load_raw_splits(data: DataConfig) -> tuple[datasets.Dataset | datasets.IterableDataset,
                                               datasets.Dataset | datasets.IterableDataset | None]:
    """The raw train split and the raw eval split (``None`` when absent or not asked for) of an image
    (or image-caption) source, both checked to be non-empty, with class-name labels encoded by one
    class list for both splits. Shared by the image and image-text modalities."""
    raw_train = load_split(data.source, data.train_split, data.config_name, streaming=data.streaming)
    check_not_empty(raw_train, data, data.train_split)
    raw_test = None
    if data.eval_split is not None:
        try:
            raw_test = load_split(data.source, data.eval_split, data.config_name, streaming=data.streaming)
        except SplitNotFoundError as error:
            logger.warning("no evaluation split: %s", error)
    if raw_test is not None:
        check_not_empty(raw_test, data, data.eval_split)
        if data.eval_split == data.train_split:
            logger.warning("data.eval_split equals data.train_split (%r): evaluation reuses the training rows",
                           data.train_split)
    if not data.streaming:
        raw_train, raw_test = shared_text_labels(raw_train, raw_test, data)
    return raw_train, raw_test


def load_image_splits(data: DataConfig) -> ImageSplits:
    """Load and prepare ``data.train_split`` and ``data.eval_split`` of ``data.source``.

    The evaluation split is ``None`` when ``data.eval_split`` is ``None`` or the source has no such
    split (logged). Class names are taken from a ``ClassLabel`` column, or from class-name strings
    (sorted union over both splits); ``num_classes`` is their number, or ``max(label) + 1`` for
    plain integer labels, or ``None`` for unlabelled data.
    """
    raw_train, raw_test = load_raw_splits(data)
    train = prepare_image_dataset(raw_train, data, data.train_split)
    test = None
    if raw_test is not None:
        test = prepare_image_dataset(raw_test, data, data.eval_split)
        if isinstance(test, datasets.IterableDataset):
            test = materialize(test, data.max_eval_samples or STREAMING_EVAL_ROWS)
    label_names, num_classes = _classes(train, test)
    logger.info(
        "image data %s: train %s rows, test %s rows, %s classes, pixels (%d, %d, %d)",
        data.source, len(train) if isinstance(train, datasets.Dataset) else "streamed",
        len(test) if test is not None else 0, num_classes, data.channels, data.image_size, data.image_size,
    )
    return ImageSplits(train=train, test=test, label_names=label_names, num_classes=num_classes, source=data.source)


def shared_text_labels(
    train: datasets.Dataset, test: datasets.Dataset | None, data: DataConfig
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """Encode class-name label strings with one class list for both splits."""
    context = f"dataset {data.source!r} split {data.train_split!r}"
    image_column = resolve_image_column(train, data.image_column, context)
    column = resolve_label_column(train, data.label_column, image_column, context)
    if column is None or not _is_text_label(train.features[column]):
        return train, test
    if test is None or column not in test.features or not _is_text_label(test.features[column]):
        return encode_text_labels([train], column)[0], test
    train, test = encode_text_labels([train, test], column)
    return train, test


def _classes(
    train: datasets.Dataset | datasets.IterableDataset, test: datasets.Dataset | None
) -> tuple[list[str] | None, int | None]:
    feature = train.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names), feature.num_classes
    maxima = [int(np.max(label_values(split, "label"), initial=-1)) for split in (train, test)
              if isinstance(split, datasets.Dataset)]
    top = max(maxima, default=-1)
    return None, (top + 1 if top >= 0 else None)


def dataset_mean_std(
    dataset: datasets.Dataset, batch_size: int = _VECTORISED_CHUNK
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of a prepared set, in [0, 1] units.

    Exact over every pixel: per-channel histograms of the 256 uint8 levels, so the sums never
    round and a 60,000-image set takes a fraction of a second.
    """
    if not isinstance(dataset, datasets.Dataset) or "pixels" not in dataset.column_names:
        raise DataSourceError("dataset_mean_std needs a prepared datasets.Dataset with a 'pixels' column "
                              "(the output of prepare_image_dataset / load_image_splits)")
    if len(dataset) == 0:
        raise DataSourceError("dataset_mean_std got an empty dataset")
    channels = dataset.features["pixels"].shape[0]
    histograms = np.zeros((channels, 256), dtype=np.int64)
    for start in range(0, len(dataset), batch_size):
        values = _fixed_array_values(dataset, "pixels", start, start + batch_size)
        for channel in range(channels):
            histograms[channel] += np.bincount(values[:, channel].reshape(-1), minlength=256)
    levels = np.arange(256, dtype=np.float64) / 255.0
    counts = histograms.sum(axis=1)
    mean = (histograms * levels).sum(axis=1) / counts
    std = np.sqrt(np.maximum((histograms * levels**2).sum(axis=1) / counts - mean**2, 0.0))
    return tuple(float(value) for value in mean), tuple(float(value) for value in std)


# ---------------------------------------------------------------------------------------- engine


def collate_images(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack prepared rows into ``{"pixels": uint8 (B, C, H, W), "labels": int64 (B,)}``."""
    pixels = torch.stack([torch.as_tensor(np.asarray(row["pixels"])) for row in rows]).to(torch.uint8)
    labels = torch.tensor([int(row["label"]) for row in rows], dtype=torch.int64)
    return {"pixels": pixels, "labels": labels}


class PixelDataset(torch.utils.data.Dataset):
    """Fast row access to a prepared split through zero-copy numpy views of its Arrow buffers.

    ``datasets``' own row access deserialises the ``Array3D`` extension type once per row and, for
    shuffled indices, slices the table into one chunk per row: about 2,000 rows/s on a busy 2-core
    machine, well below what a GPU consumes. Here each Arrow chunk of ``pixels`` is viewed as one
    ``(rows, C, H, W)`` uint8 array (memory-mapped for on-disk caches, nothing copied) and a batch
    is gathered with numpy. Rows are ``{"pixels": uint8 tensor (C, H, W), "label": int}``, the same
    as the torch-formatted split, so :func:`collate_images` serves both.

    The views are built lazily in each process, so DataLoader workers (fork or spawn) pickle only
    the ``datasets.Dataset``, which ``datasets`` pickles by reference to its cache files.
    """

    def __init__(self, dataset: datasets.Dataset) -> None:
        if "pixels" not in dataset.column_names or not isinstance(dataset.features["pixels"], datasets.Array3D):
            raise DataSourceError("PixelDataset needs a prepared split with an Array3D 'pixels' column "
                                  "(the output of prepare_image_dataset / load_image_splits)")
        self.dataset = dataset
        self._chunks: list[np.ndarray] | None = None
        self._starts: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getstate__(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "_chunks": None, "_starts": None, "_labels": None, "_rows": None}

    def _views(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        if self._chunks is None:
            shape = tuple(self.dataset.features["pixels"].shape)
            table = self.dataset.data  # the whole underlying table, also under a select() view
            chunks = []
            for chunk in table.column("pixels").chunks:
                values = chunk.storage
                for _ in shape:
                    values = values.flatten()
                chunks.append(values.to_numpy(zero_copy_only=True).reshape((len(chunk), *shape)))
            self._chunks = chunks
            self._starts = np.cumsum([0] + [len(chunk) for chunk in chunks])
            self._labels = table.column("label").fill_null(-1).to_numpy().astype(np.int64)
            # A select()ed view (the engine's kNN subsets) maps its rows to table rows.
            indices = self.dataset._indices
            self._rows = None if indices is None else indices.column("indices").to_numpy()
        return self._chunks, self._starts, self._labels

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        chunks, starts, labels = self._views()
        positions = np.asarray(indices, dtype=np.int64)
        positions = np.where(positions < 0, positions + len(self), positions)
        if positions.size and (positions.min() < 0 or positions.max() >= len(self)):
            raise IndexError(f"index out of range for a split of {len(self)} rows")
        rows = positions if self._rows is None else self._rows[positions]
        chunk_ids = np.searchsorted(starts, rows, side="right") - 1
        return [
            {"pixels": torch.from_numpy(np.array(chunks[chunk][row - starts[chunk]])), "label": int(labels[row])}
            for chunk, row in zip(chunk_ids.tolist(), rows.tolist())
        ]


def subsample(dataset: datasets.Dataset, max_samples: int | None) -> datasets.Dataset:
    """The first ``max_samples`` rows of a prepared split: a uniform sample, given its fixed random order."""
    if max_samples is None or len(dataset) <= max_samples:
        return dataset
    return dataset.select(range(max_samples))


def build_training_data(data: DataConfig, accelerator: Accelerator) -> TrainingData:
    """The loader of the ``image`` modality: prepared splits for training and evaluation.

    Loads and decodes the data on the main process first (``accelerator.main_process_first``), so
    the ``datasets`` cache is written once and the other processes read it.

    Returns:
        :class:`~hfssl.data.training.TrainingData` with the prepared train split as
        ``train_dataset`` (wrapped in :class:`PixelDataset` for fast batched reads),
        :func:`collate_images`, no ``make_inputs`` (the method's ``build_inputs`` makes the views),
        the class names and count (``label_names``, ``num_classes``),
        and the full prepared train / test splits as ``eval_train_dataset`` / ``eval_test_dataset``
        (``None`` for unlabelled data or without a test split; the engine's online kNN takes their
        first ``train.knn_max_samples`` rows, a uniform sample). For streamed data the kNN memory
        bank is the first ``data.max_eval_samples`` (default 10,000) training rows.
    """
    with accelerator.main_process_first():
        splits = load_image_splits(data)
    labelled = splits.num_classes is not None
    eval_train = splits.train
    if isinstance(eval_train, datasets.IterableDataset) and labelled and splits.test is not None:
        eval_train = materialize(eval_train, data.max_eval_samples or STREAMING_EVAL_ROWS)
    if not labelled:
        logger.info("%s has no labels: no kNN monitoring or evaluation", data.source)
    train_dataset = splits.train
    if isinstance(train_dataset, datasets.Dataset):
        train_dataset = PixelDataset(train_dataset)
    return TrainingData(
        train_dataset=train_dataset,
        collate_fn=collate_images,
        eval_train_dataset=eval_train if labelled and splits.test is not None else None,
        eval_test_dataset=splits.test if labelled else None,
        label_names=splits.label_names,
        num_classes=splits.num_classes,
    )
