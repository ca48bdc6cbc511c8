"""The recipe's ``data`` section, one class per modality: a recipe accepts only its modality's keys.

:data:`DATA_CONFIGS` maps a method's modality (``image``, ``text``, ``image-text``) to its class;
:func:`hfssl.recipe.recipe_from_dict` builds the section with the class of the recipe's method, so
``data.image_size`` in a word2vec recipe, or ``data.text_column`` in a SimCLR recipe, is an error
that names the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from hfssl.settings import RecipeError

IMAGE, TEXT, IMAGE_TEXT = "image", "text", "image-text"
#: Modalities whose recipes have a ``views`` section (augmentations of the images).
VIEW_MODALITIES = (IMAGE, IMAGE_TEXT)


@dataclass
class SourceConfig:
    """Keys every modality shares: where the data comes from and how much of it is read.

    ``source`` is a Hub dataset id (``"cifar10"``), a local path (image folder, parquet, Arrow
    ``save_to_disk`` directory, CSV/JSON/text file) or a built-in source (``builtin:NAME``).
    ``max_train_samples`` / ``max_eval_samples`` keep the first N rows (of a fixed random order for
    images); ``streaming`` reads the training split lazily (corpora larger than memory).
    """

    source: str | None = None
    config_name: str | None = None
    train_split: str = "train"
    eval_split: str | None = "test"
    streaming: bool = False
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        if not self.source:
            raise RecipeError("data.source is required: a Hub dataset id, a local path or builtin:NAME")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise RecipeError(f"data.{name} must be at least 1 (or null for no cap), got {value!r}")
        if self.num_workers < 0:
            raise RecipeError(f"data.num_workers must be >= 0, got {self.num_workers!r}")


def _check_image_keys(config: ImageDataConfig | ImageTextDataConfig) -> None:
    if config.on_bad_image not in ("error", "skip"):
        raise RecipeError(f"data.on_bad_image must be 'error' or 'skip', got {config.on_bad_image!r}")
    if config.channels not in (1, 3):
        raise RecipeError(f"data.channels must be 1 or 3, got {config.channels!r}")
    if config.image_size < 8:
        raise RecipeError(f"data.image_size must be at least 8 pixels, got {config.image_size!r}")


@dataclass
class ImageDataConfig(SourceConfig):
    """Images (and optional class labels), decoded once to ``channels x image_size x image_size`` uint8."""

    source: str | None = "builtin:digits"
    image_column: str | None = None
    label_column: str | None = None
    image_size: int = 32
    channels: int = 3
    on_bad_image: str = "error"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_image_keys(self)


@dataclass
class TextDataConfig(SourceConfig):
    """Raw text: one document per row of ``text_column``.

    ``lowercase`` / ``token_pattern`` define words for tokenizers trained on the corpus;
    ``tokenizer_name_or_path`` takes an existing tokenizer (local folder or Hub id) instead.
    Sentence-pair methods (SimCSE) also read ``pair_column`` (each row's positive text) and
    ``negative_column`` (an optional hard negative), and ``split_sentences`` (one training row per
    sentence of each document: lines, then ``.``/``!``/``?`` before white space).
    """

    source: str | None = "builtin:english_corpus"
    text_column: str | None = None
    lowercase: bool = True
    token_pattern: str = r"[\w']+"
    tokenizer_name_or_path: str | None = None
    pair_column: str | None = None
    negative_column: str | None = None
    split_sentences: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.negative_column is not None and self.pair_column is None:
            raise RecipeError("data.negative_column (hard negatives) needs data.pair_column (the positives)")
        if self.split_sentences and self.pair_column is not None:
            raise RecipeError("data.split_sentences splits single documents; it does not apply to pairs "
                              "(data.pair_column): unset one of them")


@dataclass
class ImageTextDataConfig(SourceConfig):
    """Image-caption pairs: an image column and a caption (text) column of one ``datasets`` source."""

    image_column: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    image_size: int = 32
    channels: int = 3
    on_bad_image: str = "error"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_image_keys(self)


DataConfig = ImageDataConfig | TextDataConfig | ImageTextDataConfig

DATA_CONFIGS: dict[str, type[SourceConfig]] = {
    IMAGE: ImageDataConfig,
    TEXT: TextDataConfig,
    IMAGE_TEXT: ImageTextDataConfig,
}


def data_config_class(modality: str) -> type[SourceConfig]:
    """The ``data`` section class of a modality."""
    if modality not in DATA_CONFIGS:
        raise RecipeError(f"unknown modality {modality!r}; known: {', '.join(DATA_CONFIGS)}")
    return DATA_CONFIGS[modality]
