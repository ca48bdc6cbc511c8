"""Frozen features of a labelled image set, from an hfssl run, an exported encoder or any vision model.

:func:`load_feature_extractor` accepts three kinds of path:

1. an hfssl run directory (``config.json`` with ``model_type: hfssl_<method>``): the full SSL
   model is loaded with ``transformers.AutoModel`` (hfssl registers the Auto classes) and the
   features are ``model.get_embeddings(pixel_values)``; preprocessing comes from the image
   processor in ``PATH/encoder/preprocessor_config.json``, written by the export;
2. an exported encoder directory (``PATH/encoder``: a plain transformers model with its
   ``preprocessor_config.json``): ``AutoModel`` + ``AutoImageProcessor``, pooled with
   :func:`hfssl.backbones.pool_features` (CLS token for ViT-like models, the pooler output for
   convolutional ones). When the parent directory is an hfssl run, its ``pooling`` setting is used
   so that the encoder gives the same features as the run;
3. any other transformers vision model path or Hub id: the same as 2. A model saved without an
   image processor is rejected with the fix (save one next to it, or pass ``image_processor``);
4. a CLIP-like dual encoder (``CLIPModel``, ``SiglipModel``, ``VisionTextDualEncoderModel`` folder or
   Hub id; :data:`~hfssl.evaluation.image_text.DUAL_ENCODER_TYPES`): its image tower, taken out as a
   standalone vision model (:func:`hfssl.backbones.dual_encoder_tower`) with the checkpoint's image
   processor, gives the same features as that tower saved alone.

Pooling (2-4): CLIP and SigLIP towers give their ``pooler_output``, the features before the projection
(CLIP's [CLS] after its final LayerNorm, SigLIP's attention pooling; :func:`hfssl.backbones.pool_tower_features`),
other encoders :func:`hfssl.backbones.pool_features`: an image tower is scored as SSL encoders are, before any
projection head.

Images arrive as the prepared uint8 ``(C, H, W)`` arrays of :mod:`hfssl.data` and go through the
model's own image processor (resize, rescale, normalise), under ``torch.no_grad`` and
``model.eval()``, on the model's device. :func:`extract_features_with` is the lower-level loop
online kNN and the evaluation context use with ``model.get_embeddings`` and
:func:`hfssl.views.build_eval_transform`.

Per-layer features (the capability ``layer-features``): :attr:`FeatureExtractor.embed_layers` gives
the pooled output of every stage / block (:func:`hfssl.backbones.pool_hidden_states`), from the
full hfssl model's ``get_layer_embeddings`` or from any transformers vision model's
``output_hidden_states``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoModel, PreTrainedModel

from hfssl.backbones import dual_encoder_tower, pool_tower_features, tower_layer_features
from hfssl.data.images import label_values, read_pixels
from hfssl.errors import NonFiniteError
from hfssl.evaluation.image_text import DUAL_ENCODER_TYPES
from hfssl.registry import discover_methods, is_hfssl_run, read_hfssl_config

logger = logging.getLogger(__name__)

PIXELS_COLUMN = "pixels"
LABEL_COLUMNS = ("label", "labels")


@dataclass
class FeatureExtractor:
    """A frozen model, its preprocessing and its pooling.

    Attributes:
        model: the loaded model (full hfssl model or plain transformers encoder), in eval mode.
        image_processor: the transformers image processor that turns uint8 images into ``pixel_values``.
        embed: ``pixel_values (B, C, H, W) float -> (B, D)`` features.
        embed_layers: ``pixel_values -> [(B, D_i)]``, the pooled features of every stage / block
            (``model.get_layer_embeddings`` for an hfssl run, :func:`hfssl.backbones.layer_features`
            with the same pooling for an encoder); the last entry equals ``embed``'s.
        kind: ``"hfssl_run"`` or ``"encoder"``.
        path: where the model was loaded from.
        num_channels: channels the model expects; grey images are repeated to 3 channels (and
            colour images averaged to 1) before preprocessing.
    """

    model: PreTrainedModel
    image_processor: Any
    embed: Callable[[torch.Tensor], torch.Tensor]
    kind: str
    path: str
    num_channels: int = 3
    embed_layers: Callable[[torch.Tensor], list[torch.Tensor]] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def transform(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 images ``(B, C, H, W)`` -> processed ``pixel_values`` ``(B, num_channels, S, S)`` float32 (CPU).

        A grey hfssl model's exported processor takes RGB (grey encoders are exported for RGB input,
        with the mean/std repeated): its three equal output channels are averaged back to the one
        the full model expects, which is exact.
        """
        processor_channels = len(getattr(self.image_processor, "image_mean", None) or ()) or self.num_channels
        arrays = match_channels(pixels, processor_channels).cpu().numpy()
        processed = self.image_processor(images=list(arrays), return_tensors="pt", input_data_format="channels_first")
        values = processed["pixel_values"]
        if values.shape[1] != self.num_channels:
            if self.num_channels != 1:
                raise ValueError(f"the image processor of {self.path!r} gives {values.shape[1]} channels but the model "
                                 f"expects {self.num_channels}")
            values = values.mean(dim=1, keepdim=True)
        return values


def match_channels(pixels: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Repeat grey ``(B, 1, H, W)`` images to 3 channels, or average colour ones to 1, as the model expects."""
    channels = pixels.shape[1]
    if channels == num_channels:
        return pixels
    if channels == 1:
        return pixels.expand(-1, num_channels, -1, -1)
    if num_channels == 1:
        return pixels.float().mean(dim=1, keepdim=True).round().to(pixels.dtype)
    raise ValueError(f"images have {channels} channels but the model expects {num_channels}; prepare the data with data.channels={num_channels}")


def _load_image_processor(path: str, what: str) -> Any:
    try:
        return AutoImageProcessor.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"could not load an image processor for {what} from {path!r} ({error}). Save the model's image "
            "processor next to it (for example ViTImageProcessor(size=..., image_mean=..., image_std=...)"
            ".save_pretrained(PATH)), or pass image_processor= to load_feature_extractor"
        ) from error


def _num_channels(config: Any) -> int:
    backbone_config = getattr(config, "backbone_config", None) or config
    return int(getattr(backbone_config, "num_channels", 3))


def _load_hfssl_run(path: Path, image_processor: Any | None) -> FeatureExtractor:
    discover_methods()  # registers the hfssl_* model types with the Auto classes
    model = AutoModel.from_pretrained(str(path))
    if image_processor is None:
        encoder_dir = path / "encoder"
        if not (encoder_dir / "preprocessor_config.json").is_file():
            raise ValueError(
                f"hfssl run {str(path)!r} has no encoder/preprocessor_config.json, which holds the evaluation "
                f"preprocessing; run `hfssl export {path}` first, or pass image_processor= to load_feature_extractor"
            )
        image_processor = _load_image_processor(str(encoder_dir), f"the hfssl run {str(path)!r}")
    return FeatureExtractor(model, image_processor, model.get_embeddings, "hfssl_run", str(path),
                            _num_channels(model.config), model.get_layer_embeddings)


def _parent_pooling(path: str) -> str:
    """The ``pooling`` of the hfssl run that holds an exported ``encoder/`` directory, else ``auto``."""
    parent = read_hfssl_config(Path(path).resolve().parent) if Path(path).is_dir() else None
    if parent is not None:
        return str(parent.get("pooling", "auto"))
    return "auto"


def _load_encoder(path: str, image_processor: Any | None, pooling: str | None) -> FeatureExtractor:
    try:
        model = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"could not load a transformers model from {path!r} ({error}); give an hfssl run directory, an "
            "exported encoder directory, or a transformers vision model (local folder or Hub id with HF_HUB_OFFLINE unset)"
        ) from error
    if getattr(model.config, "model_type", None) in DUAL_ENCODER_TYPES:
        # A CLIP-like checkpoint (CLIPModel, SiglipModel, VisionTextDualEncoderModel): its image tower alone,
        # as a standalone transformers vision model, preprocessed by the checkpoint's own image processor.
        model = dual_encoder_tower(model, "vision")
    if getattr(model, "main_input_name", None) != "pixel_values":
        raise ValueError(
            f"{path!r} loads as {type(model).__name__}, whose input is {model.main_input_name!r}, not an image encoder; "
            "image feature protocols (knn, linear) need a vision model"
        )
    if image_processor is None:
        image_processor = _load_image_processor(path, "the encoder")
    pooling = pooling or _parent_pooling(path)

    model_type = model.config.model_type

    def embed(pixel_values: torch.Tensor) -> torch.Tensor:
        return pool_tower_features(model(pixel_values=pixel_values), model_type, pooling)

    def embed_layers(pixel_values: torch.Tensor) -> list[torch.Tensor]:
        return tower_layer_features(model, pixel_values, model_type, pooling)

    return FeatureExtractor(model, image_processor, embed, "encoder", path, _num_channels(model.config), embed_layers)


def load_feature_extractor(
    path: str,
    image_processor: Any | None = None,
    pooling: str | None = None,
    device: torch.device | str | None = None,
) -> FeatureExtractor:
    """Load a frozen feature extractor from an hfssl run, an exported encoder or a vision model.

    Args:
        path: hfssl run directory, exported encoder directory, or transformers model folder / Hub id.
        image_processor: preprocessing to use instead of the saved one.
        pooling: for plain encoders, ``auto``/``cls``/``mean``/``pooler`` (see
            :func:`hfssl.backbones.pool_features`); defaults to the parent run's setting or ``auto``.
            hfssl runs pool as their config says.
        device: defaults to CUDA when available.

    Returns:
        a :class:`FeatureExtractor` whose model is in eval mode on ``device``.
    """
    if is_hfssl_run(path):
        extractor = _load_hfssl_run(Path(path), image_processor)
    else:
        extractor = _load_encoder(path, image_processor, pooling)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    extractor.model.to(device).eval()
    logger.info("loaded %s %s (%s) on %s", extractor.kind, path, type(extractor.model).__name__, device)
    return extractor


def check_finite_features(features: np.ndarray, model: str, split: str) -> None:
    """Raise :class:`hfssl.errors.NonFiniteError` (exit code 3) when ``features`` ``(N, D)`` hold NaN or
    infinity: a diverged model is never scored (a kNN vote over NaN similarities still "classifies")."""
    bad = ~np.isfinite(features).all(axis=tuple(range(1, features.ndim))) if features.size else np.zeros(0, bool)
    if bad.any():
        raise NonFiniteError(
            f"{model} gives non-finite features (NaN or infinity) for {int(bad.sum())} of {len(features)} {split} "
            "images: its weights have diverged, so nothing was scored. Fix: train again with a lower optim.lr, "
            "optim.max_grad_norm (for example 1.0) or a longer warm-up (optim.warmup_ratio), or evaluate an earlier "
            "checkpoint; do not publish this model")


def _label_column(columns: list[str], where: str) -> str:
    if PIXELS_COLUMN not in columns:
        raise ValueError(
            f"{where} has no {PIXELS_COLUMN!r} column (columns: {', '.join(columns)}); prepare image data with "
            "hfssl.data.load_image_splits, which decodes images to uint8 (C, H, W) arrays in 'pixels'"
        )
    for name in LABEL_COLUMNS:
        if name in columns:
            return name
    raise ValueError(f"{where} has no 'label' column (columns: {', '.join(columns)}); feature evaluation needs labelled images")


def _check_batch(pixels: Any, labels: Any, start: int) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.asarray(pixels)
    if pixels.dtype == object:  # ragged rows come back as an object array of (C, H, W) arrays
        pixels = np.stack([np.asarray(row) for row in pixels])
    if np.issubdtype(pixels.dtype, np.integer) and pixels.dtype != np.uint8 and pixels.size and 0 <= pixels.min() and pixels.max() <= 255:
        # datasets' numpy formatter widens a List(uint8) column to int64; the values are still bytes.
        pixels = pixels.astype(np.uint8)
    if pixels.ndim != 4 or pixels.dtype != np.uint8:
        raise ValueError(
            f"rows {start}..{start + len(pixels) - 1}: 'pixels' must be uint8 images of shape (C, H, W), got "
            f"dtype {pixels.dtype} and batch shape {pixels.shape}; prepare the data with hfssl.data.load_image_splits"
        )
    return pixels, np.asarray(labels, dtype=np.int64)


def iter_image_batches(dataset: Any, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(pixels uint8 (B, C, H, W), labels int64 (B,))`` from a prepared image set.

    ``dataset`` is a ``datasets.Dataset`` with ``pixels`` and ``label`` columns, or a map-style
    torch dataset whose items are dicts with ``pixels`` and ``label`` (or ``labels``).
    """
    import datasets

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(dataset, datasets.Dataset) and isinstance(dataset.features.get(PIXELS_COLUMN), datasets.Array3D):
        label = _label_column(dataset.column_names, "the dataset")
        # Arrow buffers read directly (hfssl.data.read_pixels): the numpy formatter is ~1000x slower.
        labels = label_values(dataset, label)
        for start in range(0, len(dataset), batch_size):
            stop = min(start + batch_size, len(dataset))
            yield _check_batch(read_pixels(dataset, start, stop), labels[start:stop], start)
        return
    if isinstance(dataset, datasets.Dataset):
        label = _label_column(dataset.column_names, "the dataset")
        formatted = dataset.with_format("numpy", columns=[PIXELS_COLUMN, label])
        for start in range(0, len(formatted), batch_size):
            batch = formatted[start : start + batch_size]
            yield _check_batch(batch[PIXELS_COLUMN], batch[label], start)
        return
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    start = 0
    for batch in loader:
        if not isinstance(batch, dict):
            raise ValueError(f"dataset items must be dicts with 'pixels' and 'label', got {type(batch).__name__}")
        label = _label_column(list(batch), "the dataset")
        pixels, labels = _check_batch(torch.as_tensor(batch[PIXELS_COLUMN]).numpy(), torch.as_tensor(batch[label]).numpy(), start)
        start += len(pixels)
        yield pixels, labels


def _infer_device(fn: Callable[..., Any], model: torch.nn.Module | None) -> torch.device:
    """The device of ``model``, or of the module ``fn`` is bound to (``model.get_embeddings``), else CPU."""
    owner = model if model is not None else getattr(fn, "__self__", None)
    if isinstance(owner, torch.nn.Module):
        parameter = next(owner.parameters(), None)
        if parameter is not None:
            return parameter.device
    return torch.device("cpu")


@torch.no_grad()
def extract_features_with(
    fn: Callable[[torch.Tensor], torch.Tensor],
    transform: Callable[[torch.Tensor], torch.Tensor],
    dataset: Any,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    model: torch.nn.Module | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``fn(transform(pixels))`` over a labelled image set, without gradients.

    Args:
        fn: float ``pixel_values`` -> ``(B, D)`` features, e.g. ``model.get_embeddings``.
        transform: uint8 ``(B, C, H, W)`` tensor on ``device`` -> float ``pixel_values``, e.g.
            ``hfssl.views.build_eval_transform(...)`` or :meth:`FeatureExtractor.transform`.
        dataset: prepared image set (see :func:`iter_image_batches`).
        batch_size: images per forward pass.
        device: where the uint8 batch, the transform output and ``fn`` run; defaults to the device
            of ``model``, or of the module ``fn`` is a method of, else the CPU.
        model: when given, it is put in eval mode for the pass (BatchNorm statistics, dropout)
            and put back in its previous mode afterwards. Without it the caller sets eval mode.

    Returns:
        features ``(N, D)`` float32 and labels ``(N,)`` int64, as numpy arrays in dataset order.
    """
    device = torch.device(device) if device is not None else _infer_device(fn, model)
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    features, labels = [], []
    try:
        for pixels, batch_labels in iter_image_batches(dataset, batch_size):
            pixel_values = transform(torch.from_numpy(pixels).to(device))
            embeddings = fn(pixel_values.to(device))
            features.append(embeddings.float().cpu().numpy())
            labels.append(batch_labels)
    finally:
        if model is not None:
            model.train(was_training)
    if not features:
        raise ValueError("the dataset is empty: no images to extract features from")
    return np.concatenate(features).astype(np.float32, copy=False), np.concatenate(labels)


def extract_features(extractor: FeatureExtractor, dataset: Any, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features of a prepared, labelled image set.

    Args:
        extractor: from :func:`load_feature_extractor`.
        dataset: ``datasets.Dataset`` with ``pixels`` (uint8 ``(C, H, W)``) and ``label`` columns.
        batch_size: images per forward pass.

    Returns:
        features ``(N, D)`` float32 and labels ``(N,)`` int64.
    """
    return extract_features_with(
        extractor.embed, extractor.transform, dataset, batch_size, device=extractor.device, model=extractor.model
    )
