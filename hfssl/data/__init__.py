"""Data for hfssl: sources (Hub id, local path, built-in), one module per modality, and the engine's contract.

* :mod:`hfssl.data.config`: the recipe's ``data`` section, one class per modality;
* :mod:`hfssl.data.training`: :class:`TrainingData`, what every loader hands the training engine;
* :mod:`hfssl.data.sources` / :mod:`hfssl.data.builtin` / :mod:`hfssl.data.text_corpus`: where data
  come from (Hub ids, local files and folders, the offline built-in sets);
* the modalities: :mod:`hfssl.data.images` (decode once, fast batched reads), :mod:`hfssl.data.text`
  (text columns, word tokenizers), :mod:`hfssl.data.image_text` (image-caption pairs).
"""

from hfssl.data.builtin import BUILTIN_IMAGE_SOURCES, load_builtin
from hfssl.data.config import DATA_CONFIGS, ImageDataConfig, ImageTextDataConfig, TextDataConfig
from hfssl.data.decode import arrays_to_pixels, decode_image
from hfssl.data.image_text import ImageTextSplits, load_image_text_splits
from hfssl.data.images import (
    BadImageError,
    ImageSplits,
    PixelDataset,
    collate_images,
    dataset_mean_std,
    load_image_splits,
    prepare_image_dataset,
    read_labels,
    read_pixels,
    subsample,
)
from hfssl.data.sources import DataSourceError, HubUnavailableError, SplitNotFoundError, list_splits, load_split, source_kind
from hfssl.data.text import load_text_split, resolve_text_column
from hfssl.data.training import TrainingData

__all__ = [
    "BUILTIN_IMAGE_SOURCES", "load_builtin", "DATA_CONFIGS", "ImageDataConfig", "ImageTextDataConfig",
    "TextDataConfig", "arrays_to_pixels", "decode_image", "ImageTextSplits", "load_image_text_splits",
    "BadImageError", "ImageSplits", "PixelDataset", "collate_images", "dataset_mean_std", "load_image_splits",
    "prepare_image_dataset", "read_labels", "read_pixels", "subsample", "DataSourceError", "HubUnavailableError",
    "SplitNotFoundError", "list_splits", "load_split", "source_kind", "load_text_split", "resolve_text_column",
    "TrainingData",
]
