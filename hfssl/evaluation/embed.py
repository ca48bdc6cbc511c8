"""``hfssl embed MODEL_OR_RUN --dataset SOURCE --output FILE``: a model's features for a whole data set, on disk.

The first user of the capability contract outside evaluation: the model is opened as ``hfssl eval``
opens it (:class:`hfssl.evaluation.context.EvaluationContext`: an hfssl run, an exported encoder,
any transformers vision model, text model or image-text dual encoder), what it provides
(``context.capabilities``) picks what is written, and the rows come from the same data modules as
training and evaluation (:mod:`hfssl.data`):

| capability | model | columns besides ``row_id`` (and ``label``) |
|---|---|---|
| ``image-features`` (default for image models) | vision SSL runs, MAE, encoders, vision models | ``embedding``: ``model.get_embeddings`` |
| ``layer-features`` (``--layers``) | the same | ``layer_0`` .. ``layer_{L-1}``: ``model.get_layer_embeddings`` |
| ``text-features`` | MLM runs, BERT-like folders, ``builtin:all-MiniLM-L6-v2`` | ``embedding``: mean (``--pooling mean``) or ``[CLS]`` state |
| ``image-text-embeddings`` | CLIP / LiT runs, dual-encoder folders | ``image_embedding``, ``text_embedding`` (L2-normalised, projected) |

Images of an hfssl run with a ``recipe.yaml`` go through the recipe's evaluation transform at the
recipe's image size and channels, exactly as at the end of training; other models use their own
image processor on images prepared at ``--image-size`` (default 32) and ``--channels`` (default 3).

Rows and order. ``row_id`` is a row's index in the source split and the file is in source order;
``--max-samples N`` takes the split's first N rows (not the random subset the evaluation caps take).
``label`` is the source's label column (a ``ClassLabel`` keeps its names) when it has one
(``--label-column``, else detected as ``hfssl eval`` does; text sources: ``--label-column`` or a
column named ``label``). ``--split`` defaults to ``train``, the split every source has (a single
file or ``save_to_disk`` dataset is ``train``), or to the run's ``data.train_split`` when the source
is the run's own (``--dataset`` defaults to it). Hub ids also take slices (``test[:10%]``), whose
``row_id`` counts from the slice's first row.

File format. Each embedding column is a fixed-length list of float32 (``datasets.List(Value("float32"),
length=D)``, Arrow ``fixed_size_list``), one column per layer because the widths of a ResNet's stages
differ: ``dataset.with_format("numpy")["layer_2"]`` is an ``(N, D_2)`` array. ``FILE`` ending in
``.parquet`` is one Parquet file (``datasets.load_dataset("parquet", data_files=FILE)``, or pandas /
pyarrow); any other ``FILE`` is a folder written by ``Dataset.save_to_disk``
(``datasets.load_from_disk(FILE)``, and a valid ``--dataset`` source for hfssl itself). Both carry
the ``datasets`` features in their metadata.

Safety. The output is written beside its destination and renamed into place (a kill leaves the old
file or nothing, plus a hidden ``.FILE.tmp-*`` folder), with the permissions the umask gives. An
existing output is refused without ``--overwrite``; ``--overwrite`` replaces a file, or a folder
only when it is an earlier ``save_to_disk`` output. An output that is an hfssl run folder, one of
the files or folders hfssl writes in a run (``model.safetensors``, ``config.json``, ``encoder/``,
``checkpoints/``, ... :func:`hfssl.training.run_directory.check_output_path`) or inside one of them, the
model path or the data source is refused with exit code 2 before anything is loaded.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from hfssl.data.config import ImageDataConfig, ImageTextDataConfig, TextDataConfig
from hfssl.data.image_text import check_captions, resolve_caption_column
from hfssl.data.images import (
    prepare_image_dataset,
    prepared_row_ids,
    resolve_image_column,
    resolve_label_column,
    shared_text_labels,
)
from hfssl.data.sources import load_split
from hfssl.data.text import iter_texts, load_text_split, resolve_text_column
from hfssl.errors import RunDirectoryError, UsageError
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.features import iter_image_batches
from hfssl.recipe import EvalConfig
from hfssl.registry import IMAGE_FEATURES, IMAGE_TEXT_EMBEDDINGS, LAYER_FEATURES, TEXT_FEATURES, is_hfssl_run
from hfssl.files import EXPORT, read_manifest, replace_directory
from hfssl.training.run_directory import check_output_path

logger = logging.getLogger(__name__)

#: What ``hfssl embed`` can write, in the order a model's default is chosen (``--layers`` asks for
#: ``layer-features``).
EMBED_CAPABILITIES = (IMAGE_FEATURES, IMAGE_TEXT_EMBEDDINGS, TEXT_FEATURES, LAYER_FEATURES)
TEXT_POOLINGS = ("mean", "cls")
#: Files that mark a folder written by ``Dataset.save_to_disk`` (the only folders --overwrite replaces).
_SAVED_DATASET_FILES = ("state.json", "dataset_info.json")


@dataclass
class EmbedRequest:
    """What ``hfssl embed`` was asked for (its flags); ``None`` means the documented default."""

    model: str
    output: Path
    dataset: str | None = None
    dataset_config: str | None = None
    split: str | None = None
    layers: bool = False
    pooling: str | None = None
    batch_size: int = 256
    max_samples: int | None = None
    max_length: int = 512
    image_column: str | None = None
    label_column: str | None = None
    text_column: str | None = None
    image_size: int | None = None
    channels: int | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.max_samples is not None and self.max_samples < 1:
            raise UsageError(f"--max-samples must be at least 1, got {self.max_samples}")
        if self.max_length < 2:
            raise UsageError(f"--max-length must be at least 2 tokens, got {self.max_length}")
        if self.pooling is not None and self.pooling not in TEXT_POOLINGS:
            raise UsageError(f"--pooling must be one of {', '.join(TEXT_POOLINGS)}, got {self.pooling!r}")


@dataclass
class EmbedResult:
    """What was written: the file, the capability, the number of rows and each column's width."""

    output: Path
    capability: str
    rows: int
    widths: dict[str, int] = field(default_factory=dict)
    labels: bool = False


@dataclass
class _Rows:
    """Computed columns in source order: ``row_id``, optional ``label`` and float32 ``(N, D)`` embeddings."""

    row_ids: np.ndarray
    embeddings: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    label_feature: Any = None


def embed(request: EmbedRequest) -> EmbedResult:
    """Write the chosen capability's output for every row of the source split (see the module docstring)."""
    # The context reads the run's recipe only: the output is checked before any model or data loads.
    context = EvaluationContext.for_path(request.model, None, EvalConfig(batch_size=request.batch_size))
    source = request.dataset or (context.recipe.data.source if context.recipe is not None else None)
    output = check_output(request.output, request.overwrite, request.model, source)
    capability = choose_capability(context, request.layers)
    if request.pooling is not None and capability != TEXT_FEATURES:
        raise UsageError(f"--pooling applies to text models; {context.describe_model()} gives {capability}, "
                         "pooled as its config says")
    logger.info("hfssl embed: %s of %s", capability, context.describe_model())
    compute = {IMAGE_FEATURES: _image_rows, LAYER_FEATURES: _image_rows, TEXT_FEATURES: _text_rows,
               IMAGE_TEXT_EMBEDDINGS: _image_text_rows}[capability]
    rows = compute(context, request, capability)
    dataset = rows_to_dataset(rows)
    write_dataset(dataset, output)
    logger.info("wrote %d rows (%s) to %s", len(dataset), ", ".join(dataset.column_names), output)
    return EmbedResult(output, capability, len(dataset), {name: int(values.shape[1]) for name, values
                                                          in rows.embeddings.items()}, rows.labels is not None)


# ---- what to write ---------------------------------------------------------------------------------


def choose_capability(context: EvaluationContext, layers: bool) -> str:
    """``layer-features`` for ``--layers``, else the first of image-text embeddings, image features and
    text features that the model provides; a model that provides none of them is refused."""
    provided = tuple(context.capabilities)
    if layers:
        if LAYER_FEATURES in provided:
            return LAYER_FEATURES
        raise UsageError(f"--layers writes per-layer image features, which {context.describe_model()} does not "
                         f"provide (it provides {', '.join(provided) or 'nothing'}); drop --layers")
    # A dual encoder also serves its image tower's features: its own projected image-text embeddings come first.
    for capability in (IMAGE_TEXT_EMBEDDINGS, IMAGE_FEATURES, TEXT_FEATURES):
        if capability in provided:
            return capability
    raise UsageError(f"{context.describe_model()} provides {', '.join(provided) or 'nothing hfssl knows'}; "
                     f"hfssl embed writes {', '.join(EMBED_CAPABILITIES)}. Word vectors are already a file: "
                     "`hfssl export` writes vectors.txt")


def _source(request: EmbedRequest, context: EvaluationContext) -> tuple[str, Any]:
    """The data source and the run's own ``data`` section when it describes the same source."""
    recipe_data = context.recipe.data if context.recipe is not None else None
    source = request.dataset or (recipe_data.source if recipe_data is not None else None)
    if not source:
        raise UsageError(f"give the data to embed with --dataset SOURCE ({context.describe_model()} is not an "
                         "hfssl run whose recipe names one)")
    if recipe_data is not None and recipe_data.source != source:
        recipe_data = None  # another source: its columns and config are not the recipe's
    return source, recipe_data


def _device() -> torch.device:
    """Where the model runs: the GPU when there is one (as :func:`load_feature_extractor` chooses)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _split(request: EmbedRequest, recipe_data: Any) -> str:
    """``--split``, else the run's training split when the source is the run's, else ``train``."""
    return request.split or (recipe_data.train_split if recipe_data is not None else "train")


def _progress(total: int, what: str) -> tqdm:
    return tqdm(total=total, desc=f"hfssl embed {what}", unit="rows", dynamic_ncols=True,
                disable=not PartialState().is_main_process)


# ---- images ----------------------------------------------------------------------------------------


def _image_config(request: EmbedRequest, context: EvaluationContext, config_class: type) -> Any:
    """The ``data`` section to prepare images with: the run's size and channels (what its evaluation
    transform expects) unless the flags say otherwise, the flags' columns, no caps, no eval split."""
    source, recipe_data = _source(request, context)
    recipe = context.recipe
    values: dict[str, Any] = {
        "source": source, "train_split": _split(request, recipe_data), "eval_split": None,
        "config_name": request.dataset_config or (recipe_data.config_name if recipe_data is not None else None),
        "image_column": request.image_column or getattr(recipe_data, "image_column", None),
        "label_column": request.label_column or getattr(recipe_data, "label_column", None),
        "image_size": request.image_size or (getattr(recipe.data, "image_size", 32) if recipe is not None else 32),
        "channels": request.channels or (getattr(recipe.data, "channels", 3) if recipe is not None else 3),
    }
    if config_class is ImageTextDataConfig:
        values["text_column"] = request.text_column or getattr(recipe_data, "text_column", None)
    return config_class(**values)


@dataclass
class _PreparedImages:
    dataset: datasets.Dataset
    row_ids: np.ndarray
    label_feature: Any
    captions: list[str] | None = None


def load_prepared_images(data: ImageDataConfig | ImageTextDataConfig, max_samples: int | None,
                         captions: bool = False) -> _PreparedImages:
    """The split ``data.train_split`` (its first ``max_samples`` rows), decoded as training decodes it,
    with the source row of every prepared row and the label feature (``None`` without labels)."""
    split = data.train_split
    raw = load_split(data.source, split, data.config_name)
    if max_samples is not None and len(raw) > max_samples:
        raw = raw.select(range(max_samples))
    where = f"dataset {data.source!r} split {split!r}"
    image_column = resolve_image_column(raw, data.image_column, where)
    label_column = resolve_label_column(raw, data.label_column, image_column, where)
    raw, _ = shared_text_labels(raw, None, data)
    caption_column = None
    if captions:
        caption_column = resolve_caption_column(raw, getattr(data, "text_column", None), image_column, where)
        check_captions(raw, caption_column, where)
    prepared = prepare_image_dataset(raw, data, split, text_column=caption_column)
    texts = None
    if caption_column is not None:
        texts = prepared.with_format("arrow", columns=["text"])[:].column("text").to_pylist()
    label_feature = prepared.features["label"] if label_column is not None else None
    return _PreparedImages(prepared, prepared_row_ids(len(raw)), label_feature, texts)


def _image_rows(context: EvaluationContext, request: EmbedRequest, capability: str) -> _Rows:
    data = _image_config(request, context, ImageDataConfig)
    images = load_prepared_images(data, request.max_samples)
    embed_pooled, embed_layers, transform, device, _ = context.image_encoder(_device())
    chunks: list[list[np.ndarray]] = []
    labels = []
    with torch.no_grad(), _progress(len(images.dataset), capability) as progress:
        for pixels, batch_labels in iter_image_batches(images.dataset, request.batch_size):
            pixel_values = transform(torch.from_numpy(pixels).to(device)).to(device)
            if capability == LAYER_FEATURES:
                outputs = embed_layers(pixel_values)
            else:
                outputs = [embed_pooled(pixel_values)]
            chunks.append([output.float().cpu().numpy() for output in outputs])
            labels.append(batch_labels)
            progress.update(len(pixels))
    columns = [np.concatenate(parts) for parts in zip(*chunks)]
    names = [f"layer_{index}" for index in range(len(columns))] if capability == LAYER_FEATURES else ["embedding"]
    return _in_source_order(images, dict(zip(names, columns)), np.concatenate(labels))


def _in_source_order(images: _PreparedImages, embeddings: dict[str, np.ndarray], labels: np.ndarray) -> _Rows:
    order = np.argsort(images.row_ids, kind="stable")
    return _Rows(images.row_ids[order], {name: values[order] for name, values in embeddings.items()},
                 labels[order] if images.label_feature is not None else None, images.label_feature)


# ---- image-text pairs ------------------------------------------------------------------------------


def _image_text_rows(context: EvaluationContext, request: EmbedRequest, capability: str) -> _Rows:
    data = _image_config(request, context, ImageTextDataConfig)
    pairs = load_prepared_images(data, request.max_samples, captions=True)
    encoder = context.dual_encoder()
    encoder.model.to(_device())
    image_parts, text_parts, labels = [], [], []
    start = 0
    with _progress(len(pairs.dataset), capability) as progress:
        for pixels, batch_labels in iter_image_batches(pairs.dataset, request.batch_size):
            image_parts.append(encoder.embed_images(pixels))
            text_parts.append(encoder.embed_texts(pairs.captions[start:start + len(pixels)]))
            labels.append(batch_labels)
            start += len(pixels)
            progress.update(len(pixels))
    embeddings = {"image_embedding": np.concatenate(image_parts), "text_embedding": np.concatenate(text_parts)}
    return _in_source_order(pairs, embeddings, np.concatenate(labels))


# ---- text ------------------------------------------------------------------------------------------


def _text_config(request: EmbedRequest, context: EvaluationContext) -> TextDataConfig:
    source, recipe_data = _source(request, context)
    return TextDataConfig(
        source=source, train_split=_split(request, recipe_data), eval_split=None,
        config_name=request.dataset_config or (recipe_data.config_name if recipe_data is not None else None),
        text_column=request.text_column or getattr(recipe_data, "text_column", None),
        max_train_samples=request.max_samples)


def _text_labels(dataset: datasets.Dataset, requested: str | None, source: str) -> tuple[np.ndarray | None, Any]:
    """The label column of a text source: ``--label-column``, else a column named ``label``, else none."""
    column = requested or ("label" if "label" in dataset.column_names else None)
    if column is None:
        return None, None
    if column not in dataset.column_names:
        raise UsageError(f"--label-column {column!r} is not a column of dataset {source!r}; its columns are "
                         f"{dataset.column_names}")
    feature = dataset.features[column]
    if not (isinstance(feature, datasets.ClassLabel) or
            (isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")))):
        raise UsageError(f"label column {column!r} of dataset {source!r} holds {feature}, not class ids; pass "
                         "--label-column with an integer or ClassLabel column")
    values = dataset.with_format("arrow", columns=[column])[:].column(column)
    return values.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64), feature


def _text_rows(context: EvaluationContext, request: EmbedRequest, capability: str) -> _Rows:
    from hfssl.evaluation.text import text_features

    data = _text_config(request, context)
    dataset = load_text_split(data)
    column = resolve_text_column(dataset, data)
    texts = list(iter_texts(dataset, column, data.source))
    if not texts:
        raise UsageError(f"dataset {data.source!r} split {data.train_split!r} has no rows to embed")
    labels, label_feature = _text_labels(dataset, request.label_column, data.source)
    text_model = context.text_model()
    text_model.encoder.to(_device())
    limit = int(getattr(text_model.encoder.config, "max_position_embeddings", request.max_length))
    max_length = min(request.max_length, limit)
    pooling = request.pooling or "mean"
    parts = []
    # Chunks of several batches: text_features sorts each chunk by length (little padding) and the
    # progress bar moves between chunks.
    chunk = request.batch_size * 8
    with _progress(len(texts), capability) as progress:
        for start in range(0, len(texts), chunk):
            batch = texts[start:start + chunk]
            parts.append(text_features(text_model, batch, max_length, request.batch_size, (pooling,))[pooling])
            progress.update(len(batch))
    return _Rows(np.arange(len(texts), dtype=np.int64), {"embedding": np.concatenate(parts)}, labels, label_feature)


# ---- the file --------------------------------------------------------------------------------------


def rows_to_dataset(rows: _Rows) -> datasets.Dataset:
    """``row_id`` (int64), ``label`` (the source's feature) and one fixed-length float32 list column per
    embedding, built from the numpy buffers without a per-row Python loop."""
    features: dict[str, Any] = {"row_id": datasets.Value("int64")}
    arrays: dict[str, pa.Array] = {"row_id": pa.array(rows.row_ids.astype(np.int64))}
    if rows.labels is not None:
        label_feature = rows.label_feature if rows.label_feature is not None else datasets.Value("int64")
        features["label"] = label_feature
        arrays["label"] = pa.array(rows.labels, type=label_feature.pa_type if hasattr(label_feature, "pa_type")
                                   else pa.int64())
    for name, values in rows.embeddings.items():
        values = np.ascontiguousarray(values, dtype=np.float32)
        features[name] = datasets.List(datasets.Value("float32"), length=int(values.shape[1]))
        arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), int(values.shape[1]))
    features = datasets.Features(features)
    table = pa.table(arrays, schema=features.arrow_schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features))


def is_parquet(output: Path) -> bool:
    """A ``.parquet`` output is one Parquet file; anything else is a ``save_to_disk`` folder."""
    return output.suffix.lower() == ".parquet"


def check_output(output: Path, overwrite: bool, model: str | None = None, source: str | None = None) -> Path:
    """Refuse an output that exists (without ``overwrite``), that ``overwrite`` may not replace, that is an
    hfssl run or one of the files hfssl writes in a run, or that is (or holds) the model or the data.

    Raises:
        RunDirectoryError: the output is a run folder or one of its outputs (exit code 2).
        UsageError: any other refused output (exit code 2).
    """
    output = Path(output)
    resolved = output.resolve()
    _check_not_a_run_output(resolved, output)
    for what, path in (("the model", model), ("the data source", source)):
        if path is None or not Path(path).expanduser().exists():
            continue
        other = Path(path).expanduser().resolve()
        if resolved == other or resolved in other.parents:
            raise UsageError(f"--output {str(output)!r} is {what} or a folder that holds it ({path}); choose "
                             "another output")
    if not output.exists() and not output.is_symlink():
        return output
    if not overwrite:
        raise UsageError(f"--output {str(output)!r} exists; pass --overwrite to replace it, or choose another output")
    if is_parquet(output) and not output.is_file():
        raise UsageError(f"--output {str(output)!r} exists and is not a file; --overwrite replaces only a file with "
                         "a .parquet output")
    if not is_parquet(output) and not (output.is_dir() and all((output / name).is_file()
                                                                for name in _SAVED_DATASET_FILES)):
        raise UsageError(f"--output {str(output)!r} exists and is not a folder written by save_to_disk (no "
                         f"{' / '.join(_SAVED_DATASET_FILES)}); --overwrite replaces only an earlier output. Choose "
                         "another output, or end it with .parquet for one file")
    return output


def _check_not_a_run_output(resolved: Path, output: Path) -> None:
    """Refuse the run folder itself, and any path that would replace a file of an hfssl run or export or
    lie inside what hfssl wrote there (:func:`hfssl.training.run_directory.check_output_path`)."""
    if is_hfssl_run(resolved):
        raise RunDirectoryError(f"--output {str(output)!r} is an hfssl run folder; write the embeddings to a new "
                                "file (for example RUN/embeddings.parquet) or another folder")
    for folder in resolved.parents:  # an exported model's folder holds the model only (export replaces it whole)
        manifest = read_manifest(folder)
        if manifest is not None and manifest.kind == EXPORT:
            raise RunDirectoryError(f"--output {str(output)!r} is inside the hfssl export {str(folder)!r}, which holds "
                                    "the exported model only; write the embeddings to another folder")
    check_output_path(output, "--output", is_file=is_parquet(output) or output.is_file())


def write_dataset(dataset: datasets.Dataset, output: Path) -> None:
    """Write ``dataset`` to ``output`` (Parquet or a ``save_to_disk`` folder) through a staging folder
    beside it, then rename it into place: readers see the old output or the whole new one. Files get
    the permissions the umask gives (the staging folder, ``mkdtemp``'s 0700, is removed)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    # One progress bar (hfssl's) per command: datasets' own bars for a write of seconds stay off.
    bars_were_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        target = staging / output.name
        if is_parquet(output):
            dataset.to_parquet(str(target))
            os.replace(target, output)
        else:
            dataset.save_to_disk(str(target))
            replace_directory(target, output)
    finally:
        if not bars_were_disabled:
            datasets.utils.enable_progress_bars()
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["EMBED_CAPABILITIES", "LAYER_FEATURES", "EmbedRequest", "EmbedResult", "check_output", "choose_capability",
           "embed", "load_prepared_images", "rows_to_dataset", "write_dataset"]
