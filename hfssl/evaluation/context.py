"""What evaluation protocols draw on: one :class:`EvaluationContext`, each piece loaded on first use.

The same context serves the end of training (an in-memory model, the prepared splits training
already loaded, the run's recipe) and ``hfssl eval PATH`` (a run directory, an exported encoder,
any transformers vision model, a word2vec file). A protocol asks for what it needs:

* :meth:`EvaluationContext.image_features` / :meth:`~EvaluationContext.raw_pixel_features`:
  frozen features and labels of the labelled train and test splits (``features ("model" or
  "raw_pixels")``), with :attr:`~EvaluationContext.num_classes` and
  :attr:`~EvaluationContext.label_names`;
* :meth:`EvaluationContext.layer_features`: the same per stage / block of the encoder (``layer-features``);
* :meth:`EvaluationContext.word_vectors`: the words and vectors of a word2vec model or file;
* :meth:`EvaluationContext.image_text_pairs`: the held-out image-caption pairs of an image-text
  source (``pixels``, ``label``, ``text``), for zero-shot and retrieval protocols;
* :meth:`EvaluationContext.tokenizer`: the tokenizer saved with the evaluated model;
* :attr:`EvaluationContext.class_names`: the class names of the labelled data (zero-shot prompts);
* :meth:`EvaluationContext.settings`: the protocol's own settings from the recipe's ``eval``
  section, built with the protocol's settings class.

:attr:`EvaluationContext.capabilities` says what the evaluated model can give (``image-features``,
``word-vectors``, ...; the names of :mod:`hfssl.registry`), so a protocol it cannot serve is refused
with the reason before any work.

For an hfssl run directory with a ``recipe.yaml``, image features are computed exactly as at the end
of training: ``model.get_embeddings`` after the recipe's evaluation transform (grey runs included).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from transformers import AutoConfig, AutoModel

from hfssl.data.config import ImageDataConfig, ImageTextDataConfig, SourceConfig, TextDataConfig
from hfssl.data.image_text import load_image_text_splits
from hfssl.data.images import ImageSplits, load_image_splits, read_labels
from hfssl.evaluation.image_text import DUAL_ENCODER_TYPES, DualEncoder, load_dual_encoder
from hfssl.evaluation.features import (
    check_finite_features,
    extract_features_with,
    iter_image_batches,
    load_feature_extractor,
)
from hfssl.evaluation.word_vectors import WordVectors, load_word_vectors
from hfssl.modeling_utils import TOKENIZER_FILES
from hfssl.recipe import EvalConfig, Recipe, load_recipe
from hfssl.registry import (
    IMAGE_FEATURES,
    IMAGE_TEXT_EMBEDDINGS,
    LAYER_FEATURES,
    CAUSAL_LM,
    MASKED_LM,
    TEXT_FEATURES,
    WORD_VECTORS,
    discover_methods,
    is_hfssl_run,
    method_for_config,
)
from hfssl.settings import build_section
from hfssl.views import build_eval_transform

logger = logging.getLogger(__name__)

WORD_VECTOR_SUFFIXES = (".txt", ".bin", ".vec")


class ImageEncoder(NamedTuple):
    """What image protocols and ``hfssl embed`` run: pooled and per-layer features of ``pixel_values``, the
    transform from uint8 images to ``pixel_values``, the model's device and the model."""

    embed: Callable[[torch.Tensor], torch.Tensor]
    embed_layers: Callable[[torch.Tensor], list[torch.Tensor]] | None
    transform: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    model: torch.nn.Module


@dataclass
class FeatureSet:
    """Frozen features ``(N, D)`` / ``(M, D)`` float32 and labels ``(N,)`` / ``(M,)`` int64 of the two splits."""

    train_features: np.ndarray
    train_labels: np.ndarray
    test_features: np.ndarray
    test_labels: np.ndarray

    def as_tuple(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.train_features, self.train_labels, self.test_features, self.test_labels


def run_recipe_path(path: str | Path) -> Path | None:
    """The ``recipe.yaml`` of a run directory, or of the run holding an exported ``encoder/``."""
    path = Path(path)
    if (path / "recipe.yaml").is_file():
        return path / "recipe.yaml"
    if path.name == "encoder" and is_hfssl_run(path.parent) and (path.parent / "recipe.yaml").is_file():
        return path.parent / "recipe.yaml"
    return None


def _smaller(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _capped(dataset: Any, limit: int | None) -> Any:
    if dataset is None or limit is None or len(dataset) <= limit:
        return dataset
    return dataset.select(range(limit))


@dataclass
class EvaluationContext:
    """Everything an evaluation protocol may need, loaded lazily and cached.

    Attributes:
        eval_config: the recipe's ``eval`` section (protocol list, sample caps, baselines, settings).
        data_config: where labelled evaluation data come from (image protocols), or ``None``.
        model_path: the evaluated path, when evaluating from disk.
        model: an in-memory hfssl model (end of training), instead of ``model_path``.
        recipe: the run's recipe, which fixes the evaluation transform of an hfssl model.
        train_split / test_split: prepared labelled splits already in memory (training's), used
            instead of loading ``data_config`` again.
        label_names: class names of those splits.
        run_dir: the hfssl run directory at the end of training (its ``encoder/`` is fine-tuned,
            fine-tuning runs go under it).
    """

    eval_config: EvalConfig
    data_config: SourceConfig | None = None
    model_path: str | None = None
    model: Any = None
    recipe: Recipe | None = None
    train_split: Any = None
    test_split: Any = None
    label_names: list[str] | None = None
    run_dir: Path | None = None
    #: The protocols :func:`hfssl.evaluation.runner.evaluate` ran on this context, in order.
    protocols_run: list[str] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def for_path(cls, path: str, data_config: SourceConfig | None, eval_config: EvalConfig) -> EvaluationContext:
        """The context of ``hfssl eval PATH``; a run's own recipe fixes its evaluation transform."""
        recipe_file = run_recipe_path(path) if is_hfssl_run(path) else None
        recipe = load_recipe(recipe_file) if recipe_file is not None else None
        return cls(eval_config=eval_config, data_config=data_config, model_path=str(path), recipe=recipe)

    # ---- what the model can give ---------------------------------------------------------------

    @property
    def capabilities(self) -> tuple[str, ...]:
        """What the evaluated model provides to protocols (``MethodSpec.provides`` for hfssl models)."""
        if "capabilities" not in self._cache:
            self._cache["capabilities"] = self._capabilities()
        return self._cache["capabilities"]

    def _capabilities(self) -> tuple[str, ...]:
        discover_methods()
        if self.model is not None:
            return method_for_config(self.model.config).provides
        path = Path(str(self.model_path))
        if path.is_file():
            return (WORD_VECTORS,) if path.suffix in WORD_VECTOR_SUFFIXES else ()
        if is_hfssl_run(path):
            return method_for_config(AutoConfig.from_pretrained(path)).provides
        if is_dual_encoder(path):  # and its image tower's features (load_feature_extractor takes the tower out)
            return (IMAGE_TEXT_EMBEDDINGS, IMAGE_FEATURES, LAYER_FEATURES)
        if is_text_model(str(self.model_path)):
            from hfssl.evaluation.text import is_causal_lm

            return (TEXT_FEATURES, CAUSAL_LM) if is_causal_lm(str(self.model_path)) else (TEXT_FEATURES, MASKED_LM)
        # Any other transformers model (folder or Hub id) is taken as a vision encoder; loading it
        # checks that it really takes pixel_values.
        return (IMAGE_FEATURES, LAYER_FEATURES)

    def describe_model(self) -> str:
        if self.model is not None:
            return f"the {method_for_config(self.model.config).name} model"
        return repr(str(self.model_path))

    # ---- settings --------------------------------------------------------------------------------

    def settings(self, protocol: Any) -> Any:
        """The protocol's settings object built from ``eval.<protocol name>`` (defaults when absent)."""
        if protocol.settings is None:
            return None
        return build_section(protocol.settings, f"eval.{protocol.name}", self.eval_config.protocol_settings(protocol.name))

    # ---- labelled images -------------------------------------------------------------------------

    def image_splits(self) -> ImageSplits:
        """The labelled train / test splits, capped by ``eval.max_train_samples`` / ``max_test_samples``."""
        if "splits" in self._cache:
            return self._cache["splits"]
        if self.train_split is not None and self.test_split is not None:
            train, test, names = self.train_split, self.test_split, self.label_names
            source = self.data_config.source if self.data_config is not None else "training data"
        else:
            if not isinstance(self.data_config, (ImageDataConfig, ImageTextDataConfig)):
                raise ValueError(f"image protocols need labelled image data; {self.describe_model()} was given none "
                                 "(pass --dataset SOURCE)")
            data = dataclasses.replace(
                self.data_config,
                max_train_samples=_smaller(self.data_config.max_train_samples, self.eval_config.max_train_samples),
                max_eval_samples=_smaller(self.data_config.max_eval_samples, self.eval_config.max_test_samples),
            )
            # Labelled image-caption data (a CLIP run's own) serve as labelled images: their pixels and labels.
            loaded = load_image_splits(data) if isinstance(data, ImageDataConfig) else _labelled_pairs(data)
            if loaded.test is None:
                raise ValueError(f"dataset {data.source!r} has no test split to evaluate on; set the test split "
                                 "(data.eval_split / --test-split)")
            if loaded.num_classes is None:
                raise ValueError(f"dataset {data.source!r} has no labels: kNN and linear probes need a label "
                                 "column (--label-column)")
            train, test, names, source = loaded.train, loaded.test, loaded.label_names, data.source
        train = _capped(train, self.eval_config.max_train_samples)
        test = _capped(test, self.eval_config.max_test_samples)
        classes = len(names) if names else int(max(read_labels(train).max(), read_labels(test).max())) + 1
        self._cache["splits"] = ImageSplits(train, test, names, classes, source)
        return self._cache["splits"]

    @property
    def num_classes(self) -> int:
        return int(self.image_splits().num_classes or 0)

    def image_features(self) -> FeatureSet:
        """Frozen features of the evaluated model on both splits (cached)."""
        if "features" not in self._cache:
            splits = self.image_splits()
            embed, _, transform, device, model = self.image_encoder()
            batch = self.eval_config.batch_size
            train_f, train_y = extract_features_with(embed, transform, splits.train, batch, device=device, model=model)
            test_f, test_y = extract_features_with(embed, transform, splits.test, batch, device=device, model=model)
            check_finite_features(train_f, self.describe_model(), "training")
            check_finite_features(test_f, self.describe_model(), "test")
            logger.info("features: %d train and %d test rows of width %d from %s", len(train_y), len(test_y),
                        train_f.shape[1], self.describe_model())
            self._cache["features"] = FeatureSet(train_f, train_y, test_f, test_y)
        return self._cache["features"]

    def layer_features(self) -> list[FeatureSet]:
        """Frozen features of every stage / block of the evaluated model on both splits (cached): one
        :class:`FeatureSet` per layer, first to last, each ``(N, width_i)``; the last is :meth:`image_features`'
        (the ``layer-features`` capability: ``get_layer_embeddings``, or ``FeatureExtractor.embed_layers``)."""
        if "layer_features" not in self._cache:
            splits = self.image_splits()
            _, embed_layers, transform, device, model = self.image_encoder()
            if embed_layers is None:
                raise ValueError(f"{self.describe_model()} gives no per-layer features (the layer-features capability)")
            widths: list[int] = []

            def embed_all(pixel_values: torch.Tensor) -> torch.Tensor:
                layers = embed_layers(pixel_values)  # [(B, width_i)]
                widths[:] = [layer.shape[1] for layer in layers]
                return torch.cat(layers, dim=1)  # (B, sum of the widths): one pass per batch

            batch = self.eval_config.batch_size
            train_f, train_y = extract_features_with(embed_all, transform, splits.train, batch, device=device, model=model)
            test_f, test_y = extract_features_with(embed_all, transform, splits.test, batch, device=device, model=model)
            check_finite_features(train_f, self.describe_model(), "training")
            check_finite_features(test_f, self.describe_model(), "test")
            bounds = np.cumsum([0, *widths])
            self._cache["layer_features"] = [
                FeatureSet(np.ascontiguousarray(train_f[:, start:stop]), train_y, np.ascontiguousarray(test_f[:, start:stop]), test_y)
                for start, stop in zip(bounds[:-1], bounds[1:])]
            logger.info("layer features: %d layers of widths %s from %s", len(widths), widths, self.describe_model())
        return self._cache["layer_features"]

    def raw_pixel_features(self) -> FeatureSet:
        """Flattened pixels in [0, 1] of both splits: the baseline every feature protocol is compared with."""
        if "raw_pixels" not in self._cache:
            splits = self.image_splits()
            train_f, train_y = raw_pixel_features(splits.train)
            test_f, test_y = raw_pixel_features(splits.test)
            self._cache["raw_pixels"] = FeatureSet(train_f, train_y, test_f, test_y)
        return self._cache["raw_pixels"]

    def image_encoder(self, device: torch.device | str | None = None) -> ImageEncoder:
        """The evaluated model's image functions: an in-memory model or an hfssl run with its recipe as at the
        end of training (``get_embeddings`` / ``get_layer_embeddings`` after the recipe's evaluation
        transform), any other path through :func:`~hfssl.evaluation.features.load_feature_extractor`.
        ``device``: where a model loaded from disk goes (default: the CPU)."""
        model = self.model
        if model is None and self.recipe is not None:  # an hfssl run: the training evaluation transform
            discover_methods()
            model = AutoModel.from_pretrained(str(self.model_path)).to(device or "cpu").eval()
        if model is not None:
            recipe = self.recipe
            if recipe is None:
                raise ValueError(f"{self.describe_model()} has no recipe, which fixes its evaluation transform")
            transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
            return ImageEncoder(model.get_embeddings, model.get_layer_embeddings, transform,
                                next(model.parameters()).device, model)
        extractor = load_feature_extractor(str(self.model_path), device=device)
        return ImageEncoder(extractor.embed, extractor.embed_layers, extractor.transform, extractor.device,
                            extractor.model)

    @property
    def class_names(self) -> list[str] | None:
        """Class names of the labelled evaluation data (``None`` when the source does not name them)."""
        if self.label_names is not None:
            return list(self.label_names)
        if isinstance(self.data_config, ImageTextDataConfig):
            return self.image_text_pairs().label_names
        return self.image_splits().label_names

    # ---- the encoder on disk (fine-tuning) --------------------------------------------------------

    def encoder_path(self) -> str:
        """The transformers encoder folder (or Hub id) of the evaluated model: ``RUN/encoder`` for an
        hfssl run (in memory at the end of training, or a run directory), else the path itself."""
        if self.model is not None or (self.model_path is not None and is_hfssl_run(self.model_path)):
            run = self.run_dir if self.model is not None else Path(str(self.model_path))
            if run is None or not (Path(run) / "encoder" / "config.json").is_file():
                raise ValueError(f"{self.describe_model()} has no exported encoder (RUN/encoder) to fine-tune; "
                                 "run `hfssl export RUN` first")
            return str(Path(run) / "encoder")
        return str(self.model_path)

    def record_predictions(self, label: str, predictions: np.ndarray, labels: np.ndarray) -> None:
        """Keep a protocol's test predictions (for confusion matrices): ``label`` names the probe."""
        self._cache.setdefault("predictions", []).append((label, np.asarray(predictions), np.asarray(labels)))

    @property
    def predictions(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(label, predicted (M,), true (M,))`` of every probe that recorded its test predictions."""
        return list(self._cache.get("predictions", []))

    def keep(self, key: str, value: Any) -> None:
        """Keep something a protocol computed for its own pictures (its ``draw`` hook reads it with :meth:`kept`)."""
        self._cache.setdefault(f"kept:{key}", []).append(value)

    def kept(self, key: str) -> list[Any]:
        """Everything kept under ``key`` by :meth:`keep`, in order."""
        return list(self._cache.get(f"kept:{key}", []))

    # ---- image-text pairs ------------------------------------------------------------------------

    def image_text_pairs(self) -> Any:
        """The held-out image-caption pairs (``data.eval_split`` of an image-text source), capped by
        ``eval.max_test_samples``: :class:`hfssl.data.image_text.ImageTextSplits` whose ``test`` rows
        hold ``pixels``, ``label`` and ``text``."""
        if "pairs" not in self._cache:
            if not isinstance(self.data_config, ImageTextDataConfig):
                raise ValueError(f"image-text protocols need an image-caption source; {self.describe_model()} was "
                                 "given none (an image-text recipe's data section, or --dataset with captions)")
            data = dataclasses.replace(
                self.data_config,
                max_eval_samples=_smaller(self.data_config.max_eval_samples, self.eval_config.max_test_samples))
            pairs = load_image_text_splits(data)
            self._cache["pairs_config"] = data
            if pairs.test is None:
                raise ValueError(f"dataset {data.source!r} has no held-out split of pairs; set data.eval_split")
            self._cache["pairs"] = pairs
        return self._cache["pairs"]

    def image_text_test(self, source: str | None = None) -> Any:
        """The held-out pairs of the evaluation data, or of another source with the same layout
        (``builtin:emoji_twitter`` beside ``builtin:emoji``: a style shift), cached per source."""
        pairs = self.image_text_pairs()
        if source is None or source == pairs.source:
            return pairs
        key = f"pairs:{source}"
        if key not in self._cache:
            data = dataclasses.replace(self._cache["pairs_config"], source=source, config_name=None)
            other = load_image_text_splits(data)
            if other.test is None:
                raise ValueError(f"dataset {source!r} has no held-out split {data.eval_split!r} of pairs")
            self._cache[key] = other
        return self._cache[key]

    # ---- dual encoders ---------------------------------------------------------------------------

    def dual_encoder(self) -> DualEncoder:
        """The evaluated model as a transformers dual encoder with its processor (see
        :mod:`hfssl.evaluation.image_text`): the in-memory model's transferable part, an hfssl run's
        ``encoder/`` folder, or any dual-encoder folder or Hub id."""
        if "dual_encoder" not in self._cache:
            batch = self.eval_config.batch_size
            path = Path(str(self.model_path)) if self.model_path is not None else None
            if self.model is None and path is not None and is_hfssl_run(path) and (path / "encoder" / "config.json").is_file():
                encoder = load_dual_encoder(str(path / "encoder"), batch)
            elif self.model is not None or (path is not None and is_hfssl_run(path)):
                model = self.model
                if model is None:
                    discover_methods()
                    model = AutoModel.from_pretrained(str(path)).eval()
                if IMAGE_TEXT_EMBEDDINGS not in self.capabilities:
                    raise ValueError(f"{self.describe_model()} is not an image-text model (it has no dual encoder)")
                if self.recipe is None:
                    raise ValueError(f"{self.describe_model()} has no recipe, which fixes its image transform")
                encoder = recipe_dual_encoder(model, self.recipe, batch, name=self.describe_model())
            else:
                encoder = load_dual_encoder(str(self.model_path), batch)
            self._cache["dual_encoder"] = encoder
        return self._cache["dual_encoder"]

    # ---- the model's tokenizer -------------------------------------------------------------------

    def tokenizer(self) -> Any:
        """The tokenizer saved with the evaluated model: an in-memory model's ``get_tokenizer`` (its run
        directory), or the tokenizer in the evaluated folder or its ``encoder/``."""
        if "tokenizer" not in self._cache:
            from transformers import AutoTokenizer

            tokenizer = None
            if self.model is not None:
                tokenizer = self.model.get_tokenizer(self.run_dir)
            elif Path(str(self.model_path)).is_dir():
                path = Path(str(self.model_path))
                found = next((folder for folder in (path, path / "encoder")
                              if any((folder / name).is_file() for name in TOKENIZER_FILES)), None)
                tokenizer = AutoTokenizer.from_pretrained(found) if found is not None else None
            if tokenizer is None:
                raise ValueError(f"{self.describe_model()} has no tokenizer saved with it (tokenizer.json); text "
                                 "protocols need the tokenizer the model was trained with")
            self._cache["tokenizer"] = tokenizer
        return self._cache["tokenizer"]

    # ---- text models -----------------------------------------------------------------------------

    def text_model(self) -> Any:
        """The evaluated masked language model with its tokenizer (:class:`hfssl.evaluation.text.TextModel`)."""
        if "text_model" not in self._cache:
            from hfssl.evaluation.text import load_text_model

            self._cache["text_model"] = load_text_model(self.model, self.model_path, self.run_dir)
        return self._cache["text_model"]

    def text_data(self) -> TextDataConfig:
        """The text ``data`` section whose held-out documents text protocols read (default ``builtin:english_corpus``)."""
        if isinstance(self.data_config, TextDataConfig):
            return self.data_config
        if self.data_config is None:
            return TextDataConfig()
        raise ValueError(f"text protocols need text data; {self.describe_model()} was given {self.data_config.source!r} "
                         "(pass --dataset with a text source, for example builtin:english_corpus)")

    # ---- words -----------------------------------------------------------------------------------

    def word_vectors(self) -> WordVectors:
        """Words and vectors of the evaluated word2vec model or word2vec-format file (cached)."""
        if "word_vectors" not in self._cache:
            if self.model is not None:
                self._cache["word_vectors"] = WordVectors.from_model(self.model)  # its get_word_vectors()
            else:
                self._cache["word_vectors"] = load_word_vectors(str(self.model_path))
        return self._cache["word_vectors"]


def _labelled_pairs(data: ImageTextDataConfig) -> ImageSplits:
    """The image-caption splits of ``data`` as labelled image splits (``pixels``, ``label``; captions unused)."""
    pairs = load_image_text_splits(data)
    classes = len(pairs.label_names) if pairs.label_names else None
    if classes is None and pairs.test is not None:  # integer labels without names
        largest = int(read_labels(pairs.test).max(initial=-1))
        classes = largest + 1 if largest >= 0 else None
    return ImageSplits(pairs.train, pairs.test, pairs.label_names, classes, data.source)


def recipe_dual_encoder(model: Any, recipe: Recipe, batch_size: int, name: str = "model") -> DualEncoder:
    """An hfssl model's ``image-text-embeddings`` capability as a :class:`DualEncoder`: its transferable dual
    encoder and processor (what ``RUN/encoder`` holds, a copy of the weights), with the image transform of the
    run's recipe (crop or image size, mean, std, channels)."""
    dual, processor = model.get_dual_encoder(recipe.views.crop_size or recipe.data.image_size, tuple(recipe.views.mean),
                                             tuple(recipe.views.std), recipe.data.channels)
    return DualEncoder(dual, processor, batch_size, name=name)


def is_text_model(name_or_path: str) -> bool:
    """Whether a transformers model folder, Hub id or ``builtin:`` weight name holds a text model
    (a config with a vocabulary and no image or audio part)."""
    from hfssl.backbones import resolve_pretrained_path

    try:
        config = AutoConfig.from_pretrained(resolve_pretrained_path(name_or_path))
    except (OSError, ValueError):
        return False
    image_parts = ("num_channels", "vision_config", "image_size", "num_mel_bins")
    return bool(getattr(config, "vocab_size", None)) and not any(hasattr(config, name) for name in image_parts)


def is_dual_encoder(path: Path) -> bool:
    """Whether a folder (or Hub id, when reachable) holds a transformers image-text dual encoder."""
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError):
        return False
    return config.model_type in DUAL_ENCODER_TYPES


def raw_pixel_features(dataset: Any, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Flattened uint8 pixels scaled to [0, 1]: ``(N, C*H*W)`` float32 and the ``(N,)`` labels."""
    pixels, labels = [], []
    for batch, batch_labels in iter_image_batches(dataset, batch_size):
        pixels.append(batch.reshape(len(batch), -1).astype(np.float32) / 255.0)
        labels.append(batch_labels)
    return np.concatenate(pixels), np.concatenate(labels)


__all__ = ["EvaluationContext", "FeatureSet", "raw_pixel_features", "recipe_dual_encoder", "run_recipe_path"]
