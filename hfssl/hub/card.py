"""Model cards for hfssl runs, rendered from ``model_cards/<family>.md.j2`` with huggingface_hub.

:func:`write_model_card` reads a run directory (``config.json``, ``recipe.yaml``,
``eval_results.json``, ``encoder/``, ``images/``; see ARCHITECTURE.md) and writes ``README.md``
with ``huggingface_hub.ModelCard.from_template`` and ``ModelCardData``. Missing optional parts
(no recipe, no evaluation, no pictures) leave their sections out or say what is missing; nothing
is invented.

Metadata decisions:

* ``library_name: hfssl`` on a run's repo. Its root ``config.json`` has ``model_type:
  hfssl_<method>``, which loads only with hfssl imported; declaring ``transformers`` would make the
  Hub offer an ``AutoModel.from_pretrained(repo)`` snippet that fails without hfssl. The plain
  transformers path (``subfolder="encoder"``) is the first snippet of the card body, and the
  ``transformers`` tag keeps the repo discoverable. A separate encoder repo (``push_run(...,
  encoder_repo_id=...)``) loads at its root with plain transformers, so its card declares
  ``library_name: transformers``.
* ``datasets``: the training source when it is a Hub dataset id; ``builtin:fashion_mnist`` is
  reported as the Hub's copy of Fashion-MNIST (``zalando-datasets/fashion_mnist``); built-in
  sources with no Hub copy (``builtin:digits``) and local paths are described in the body only.
* ``model-index``: one ``EvalResult`` per metric of every ``results`` entry of
  ``eval_results.json`` (``top1`` -> ``accuracy``, ``top5`` -> ``top_5_accuracy``, ...), values as
  fractions as in the file. Raw-pixel baselines appear only in the body's table.
* ``pipeline_tag`` by family: ``image-feature-extraction`` (vision SSL, masked image modelling),
  ``fill-mask``, ``feature-extraction`` (word embeddings), ``zero-shot-image-classification``.
* ``base_model`` only when the config's ``backbone_name_or_path`` is a Hub id.

Pictures are drawn by :mod:`hfssl.plots` and the methods' picture hooks; the card links only those
that exist.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.repocard_data import model_index_to_eval_results
from huggingface_hub.utils import validate_repo_id
from transformers import AutoConfig, PretrainedConfig

from hfssl.registry import MethodSpec, method_for_config
from hfssl.model_cards import template_path as packaged_template_path
from hfssl.recipe import Recipe, load_recipe

logger = logging.getLogger(__name__)

LIBRARY_NAME = "hfssl"
REQUIRED_TAGS = ("hfssl", "self-supervised-learning")
DEFAULT_ENDPOINT = "https://huggingface.co"

PIPELINE_TAGS = {
    "vision-ssl": "image-feature-extraction",
    "masked-image-modeling": "image-feature-extraction",
    "masked-language-modeling": "fill-mask",
    "word-embeddings": "feature-extraction",
    "image-text": "zero-shot-image-classification",
}
FAMILY_TAGS = {
    "vision-ssl": ["vision", "image-feature-extraction"],
    "masked-image-modeling": ["vision", "image-feature-extraction", "masked-image-modeling"],
    "masked-language-modeling": ["fill-mask", "masked-language-modeling"],
    "word-embeddings": ["word-embeddings", "feature-extraction"],
    "image-text": ["vision", "zero-shot-image-classification", "contrastive-image-text"],
}
FAMILY_EXTRA_PARTS = {
    "vision-ssl": "projection head",
    "masked-image-modeling": "decoder",
    "masked-language-modeling": "masked-language-modelling head",
    "word-embeddings": "output vectors",
    "image-text": "projection heads",
}
# Built-in sources (hfssl.data): a display name, the Hub copy where one exists, and a description.
BUILTIN_DATASETS: dict[str, dict[str, str | None]] = {
    "builtin:digits": {
        "name": "scikit-learn digits",
        "short": "digits",
        "hub_id": None,
        "type": "digits",
        "url": "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
        "description": (
            "scikit-learn's copy of the UCI optical recognition of handwritten digits data (Alpaydin & Kaynak, "
            "1998): 1,797 grey 8x8 images of the digits 0-9, split by hfssl into 1,437 training and 360 test "
            "images (stratified, fixed seed). The labels were not used for pre-training."
        ),
    },
    "builtin:fashion_mnist": {
        "name": "Fashion-MNIST",
        "short": "Fashion-MNIST",
        "hub_id": "zalando-datasets/fashion_mnist",
        "type": "zalando-datasets/fashion_mnist",
        "url": "https://github.com/zalandoresearch/fashion-mnist",
        "description": (
            "Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 60,000 training and 10,000 test grey 28x28 images of "
            "10 clothing classes (MIT licence), read from Debian's dataset-fashion-mnist package, the same data "
            "as the Hub's zalando-datasets/fashion_mnist. The labels were not used for pre-training."
        ),
    },
    "builtin:english_corpus": {
        "name": "hfssl English corpus",
        "short": "English corpus",
        "hub_id": None,
        "type": "english_corpus",
        "url": None,
        "description": (
            "hfssl's offline English corpus of about 2.15M words: 10,033 Wikipedia lead sections (CC BY-SA), "
            "2,225 BBC News articles, gensim's Lee corpus and gensim's shortened English Wikipedia dump."
        ),
    },
}

# eval_results.json metric keys -> (model-index metric type, readable name, shown as a percentage).
METRICS: dict[str, tuple[str, str, bool]] = {
    "top1": ("accuracy", "top-1 accuracy", True),
    "top5": ("top_5_accuracy", "top-5 accuracy", True),
    "accuracy": ("accuracy", "accuracy", True),
    "f1": ("f1", "F1", True),
    "spearman": ("spearmanr", "Spearman correlation", False),
    "pearson": ("pearsonr", "Pearson correlation", False),
    "recall_at_1": ("recall", "recall@1", True),
    "recall_at_5": ("recall", "recall@5", True),
}
# protocol -> (readable name, model-index task type for image data, for text data, explanation).
PROTOCOLS: dict[str, tuple[str, str, str, str]] = {
    "knn": ("kNN", "image-classification", "text-classification",
            "**kNN**: cosine similarity between L2-normalised frozen features; the k nearest training examples "
            "vote with weights exp(similarity / T) (Wu et al. 2018, as in DINO and solo-learn)."),
    "linear": ("Linear probe", "image-classification", "text-classification",
               "**Linear probe**: logistic regression on standardised frozen features, its regularisation C "
               "chosen on a held-out part of the training split."),
    "few_shot": ("Few-shot probe", "image-classification", "text-classification",
                 "**Few-shot probe**: a linear classifier trained on a few labelled examples per class."),
    "zero_shot": ("Zero-shot", "zero-shot-image-classification", "zero-shot-classification",
                  "**Zero-shot**: each image is matched to the text embedding of every class name."),
    "word-similarity": ("Word similarity", "feature-extraction", "feature-extraction",
                        "**Word similarity**: Spearman correlation between cosine similarities of word vectors "
                        "and human similarity judgements."),
    "analogy": ("Analogy", "feature-extraction", "feature-extraction",
                "**Analogies**: a : b :: c : ? answered by the nearest vector to b - a + c (3CosAdd)."),
}
_ENTRY_NON_SETTINGS = {"protocol", "features", "dataset", "split"}
_SETTING_LABELS = {"k": "k", "temperature": "T", "C": "C", "shots": "shots"}

# Files of a run directory that the card describes by name (word vectors, tokenizers).
KNOWN_EXTRA_FILES = {
    "vectors.txt": "the word vectors in word2vec text format (gensim: `KeyedVectors.load_word2vec_format`)",
    "vectors.bin": "the word vectors in word2vec binary format (gensim: `KeyedVectors.load_word2vec_format(binary=True)`)",
    "vocab.txt": "the vocabulary, one token a line",
    "tokenizer.json": "the tokenizer (🤗 tokenizers)",
}
_STANDARD_FILES = {"config.json", "model.safetensors", "model.safetensors.index.json", "recipe.yaml",
                   "eval_results.json", "README.md", "generation_config.json"}

# Backbones whose features are spatial maps (pooled output) vs token sequences (CLS / mean).
_CONVOLUTIONAL_TYPES = {"resnet", "convnext", "convnextv2", "regnet", "bit", "efficientnet", "mobilenet_v1",
                        "mobilenet_v2", "van", "poolformer", "textnet"}
_SEQUENCE_TYPES = {"vit", "vit_mae", "deit", "beit", "dinov2", "dinov2_with_registers", "vit_msn", "data2vec-vision",
                   "ijepa", "vit_hybrid", "siglip_vision_model", "clip_vision_model"}


@dataclass
class DatasetDescription:
    """How a data source is named in a card.

    Attributes:
        name: readable name (``"Fashion-MNIST"``).
        short: short name for titles.
        dataset_type: the model-index ``dataset.type`` (a Hub id where there is one).
        hub_id: the Hub dataset id for the ``datasets`` metadata, or ``None``.
        url: a link for the body, or ``None``.
        description: a paragraph for the "Training data" section.
        config_name: the dataset configuration, when one was used.
    """

    name: str
    short: str
    dataset_type: str
    hub_id: str | None
    url: str | None
    description: str
    config_name: str | None = None


@dataclass
class RunContents:
    """What a run directory holds, read once; every part except ``config`` may be missing."""

    run_dir: Path
    config: PretrainedConfig
    spec: MethodSpec
    recipe: Recipe | None
    recipe_yaml: str | None
    eval_results: dict[str, Any] | None
    encoder_config: dict[str, Any]
    processor_config: dict[str, Any] | None
    steps: int | None


def is_hub_id(value: str) -> bool:
    """True when ``value`` reads as an ``OWNER/NAME`` (or legacy ``NAME``) Hub id and not as a local path."""
    if not value or value.startswith(("/", ".", "~", "builtin:")) or "\\" in value or Path(value).exists():
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return value.count("/") <= 1


def describe_data_source(source: str, config_name: str | None = None) -> DatasetDescription:
    """Name a recipe's ``data.source`` for a card: built-in, Hub id or local path (only its last part is shown)."""
    if source in BUILTIN_DATASETS:
        known = BUILTIN_DATASETS[source]
        return DatasetDescription(str(known["name"]), str(known["short"]), str(known["type"]), known["hub_id"],
                                  known["url"], str(known["description"]), config_name)
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        return DatasetDescription(name, name, name, None, None, f"hfssl's built-in source `{source}`.", config_name)
    if is_hub_id(source):
        shown = f"{source} ({config_name})" if config_name else source
        return DatasetDescription(
            shown, source.split("/")[-1], source, source, f"https://huggingface.co/datasets/{source}",
            f"The Hub dataset [{shown}](https://huggingface.co/datasets/{source}).", config_name,
        )
    # A local path: name it by its last component, so no user folder names end up in a public card.
    name = Path(source.rstrip("/\\")).name or "local data"
    return DatasetDescription(name, name, name, None, None,
                              f"A local dataset (`{name}`), not published with this model.", config_name)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); fix or delete it and run `hfssl card` again") from error


def _check_eval_results(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError(f"{path} must be a JSON object with a 'results' list (see ARCHITECTURE.md, eval_results.json)")
    for group in ("results", "baselines"):
        entries = data.get(group) or []
        if not isinstance(entries, list):
            raise ValueError(f"{path}: {group!r} must be a list of result objects")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("protocol"), str):
                raise ValueError(f"{path}: {group}[{index}] must be an object with a 'protocol' name, got {entry!r}")
    return data


def _latest_step(run_dir: Path) -> int | None:
    states = sorted((run_dir / "checkpoints").glob("step-*/trainer_state.json"))
    if not states:
        return None
    try:
        return int(json.loads(states[-1].read_text())["state"]["global_step"])
    except (KeyError, ValueError, TypeError, json.JSONDecodeError):
        logger.warning("could not read the step count from %s", states[-1])
        return None


def read_run(run_dir: str | Path) -> RunContents:
    """Read the parts of a run directory that the card describes.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json`` (not an hfssl run directory).
        ValueError: ``config.json`` is not an hfssl model, or ``eval_results.json`` is malformed.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{run_dir} has no config.json: pass an hfssl run directory (the --output-dir of `hfssl train`)"
        )
    config = AutoConfig.from_pretrained(run_dir)
    spec = method_for_config(config)
    recipe = recipe_yaml = None
    if (run_dir / "recipe.yaml").is_file():
        recipe = load_recipe(run_dir / "recipe.yaml")
        recipe_yaml = recipe.to_yaml().rstrip()
    eval_results = None
    if (run_dir / "eval_results.json").is_file():
        eval_results = _check_eval_results(_read_json(run_dir / "eval_results.json"), run_dir / "eval_results.json")
    encoder_dir = run_dir / "encoder"
    if (encoder_dir / "config.json").is_file():
        encoder_config = _read_json(encoder_dir / "config.json")
    else:
        backbone = getattr(config, "backbone_config", None)
        encoder_config = backbone.to_dict() if backbone is not None else {}
    processor_config = None
    if (encoder_dir / "preprocessor_config.json").is_file():
        processor_config = _read_json(encoder_dir / "preprocessor_config.json")
    return RunContents(run_dir, config, spec, recipe, recipe_yaml, eval_results, encoder_config,
                       processor_config, _latest_step(run_dir))


_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def count_parameters(folder: Path) -> int | None:
    """Number of parameters stored in ``folder/model.safetensors`` (or its shards), ``None`` if absent.

    Normalisation statistics (BatchNorm's running mean/variance and batch counter) are buffers, not
    parameters, and are not counted.
    """
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({folder / name for name in _read_json(index)["weight_map"].values()})
    elif (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    else:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="numpy") as handle:
            for key in handle.keys():
                if key.endswith(_BUFFER_SUFFIXES):
                    continue
                total += int(np.prod(handle.get_slice(key).get_shape(), dtype=np.int64))
    return total


def _format_count(count: int | None) -> str:
    if count is None:
        return "an unknown number of"
    if count >= 1_000_000:
        return f"{count / 1e6:.1f} M ({count:,})"
    return f"{count:,}"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(item) for item in value) + "]"
    if value is None:
        return "none"
    return str(value).replace("|", "\\|")


def _architecture(encoder_config: dict[str, Any]) -> str:
    architectures = encoder_config.get("architectures") or []
    if architectures:
        return str(architectures[0])
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    model_type = encoder_config.get("model_type", "")
    return MODEL_MAPPING_NAMES.get(model_type, model_type or "unknown")


def describe_backbone(encoder_config: dict[str, Any]) -> str:
    """A one-line description of an encoder from its config (``ResNet, depths [2, 2], widths [64, 128]``)."""
    parts = []
    keys = (("layer_type", "{} blocks"), ("depths", "depths {}"), ("hidden_sizes", "widths {}"),
            ("patch_size", "{} px patches"), ("hidden_size", "width {}"), ("num_hidden_layers", "{} layers"),
            ("num_attention_heads", "{} heads"), ("vocab_size", "vocabulary {}"))
    for key, pattern in keys:
        value = encoder_config.get(key)
        if value is None or (key == "hidden_size" and "hidden_sizes" in encoder_config):
            continue
        parts.append(pattern.format(_format_value(value)))
    model_type = encoder_config.get("model_type", "unknown")
    return f"{model_type}" + (f" ({', '.join(parts)})" if parts else "")


def _hidden_size(encoder_config: dict[str, Any]) -> int | str:
    if encoder_config.get("hidden_sizes"):
        return int(encoder_config["hidden_sizes"][-1])
    if encoder_config.get("hidden_size"):
        return int(encoder_config["hidden_size"])
    if encoder_config.get("projection_dim"):
        return int(encoder_config["projection_dim"])
    return "hidden"


def _vision_pooling(encoder_config: dict[str, Any], pooling: str) -> dict[str, str]:
    """Code that reproduces hfssl.backbones.pool_features (the features kNN and probes used)."""
    model_type = encoder_config.get("model_type", "")
    if model_type in _SEQUENCE_TYPES:
        if pooling == "mean":
            return {"pooling_code": "outputs.last_hidden_state[:, 1:].mean(dim=1)",
                    "pooling_text": "the mean of the patch tokens of the last layer",
                    "pipeline_code": "torch.tensor(extractor(image))[:, 1:].mean(dim=1)",
                    "pipeline_text": "the pipeline returns the last hidden state; average its patch tokens"}
        return {"pooling_code": "outputs.last_hidden_state[:, 0]",
                "pooling_text": "the [CLS] token of the last layer",
                "pipeline_code": "torch.tensor(extractor(image))[:, 0]",
                "pipeline_text": "the pipeline returns the last hidden state; take its [CLS] token"}
    if model_type in _CONVOLUTIONAL_TYPES:
        if pooling in ("auto", "pooler"):
            return {"pooling_code": "outputs.pooler_output.flatten(1)",
                    "pooling_text": "the model's pooled output, a global average of the last stage",
                    "pipeline_code": "torch.tensor(extractor(image, pool=True)).flatten(1)",
                    "pipeline_text": "pool=True returns the pooled output"}
        return {"pooling_code": "outputs.last_hidden_state.mean(dim=(2, 3))",
                "pooling_text": "the spatial mean of the last feature map",
                "pipeline_code": "torch.tensor(extractor(image)).mean(dim=(2, 3))",
                "pipeline_text": "the pipeline returns the last feature map; average it over space"}
    # Unknown backbone type: the same rule as pool_features, decided on the output's shape.
    return {"pooling_code": ("outputs.last_hidden_state[:, 0] if outputs.last_hidden_state.ndim == 3 "
                             "else outputs.pooler_output.flatten(1)"),
            "pooling_text": "the [CLS] token of sequence models, the pooled output of convolutional ones",
            "pipeline_code": "torch.tensor(extractor(image, pool=True)).flatten(1)",
            "pipeline_text": "pool=True returns the pooled output"}


def _backbone_context(contents: RunContents, encoder_parameters: int | None) -> dict[str, Any]:
    encoder_config = contents.encoder_config
    channels = int(encoder_config.get("num_channels", 3) or 3)
    context: dict[str, Any] = {
        "architecture": _architecture(encoder_config),
        "model_type": encoder_config.get("model_type", "unknown"),
        "description": describe_backbone(encoder_config),
        "num_parameters": encoder_parameters,
        "num_parameters_text": _format_count(encoder_parameters),
        "hidden_size": _hidden_size(encoder_config),
        "num_channels": channels,
        "pil_mode": "RGB" if channels == 3 else "L",
        "pil_color": "(128, 96, 64)" if channels == 3 else "128",
        "vocab_size": encoder_config.get("vocab_size") or (encoder_config.get("text_config") or {}).get("vocab_size"),
        "projection_dim": encoder_config.get("projection_dim", _hidden_size(encoder_config)),
    }
    context.update(_vision_pooling(encoder_config, getattr(contents.config, "pooling", "auto")))
    return context


def _preprocessing_context(contents: RunContents) -> dict[str, Any]:
    processor = contents.processor_config or {}
    size = processor.get("size") or {}
    height = size.get("height") or size.get("shortest_edge")
    if height is None and contents.recipe is not None and contents.spec.modality != "text":
        height = contents.recipe.views.crop_size or contents.recipe.data.image_size
    height = int(height or contents.encoder_config.get("image_size", 224))
    channels = int(contents.encoder_config.get("num_channels", 3) or 3)
    colour = "RGB" if channels == 3 else ("grey" if channels == 1 else f"{channels}-channel")
    text = f"{height}x{height} px {colour} images"
    if processor.get("do_normalize"):
        text += (f", rescaled to [0, 1] and normalised with mean {_format_value(processor.get('image_mean'))} "
                 f"and std {_format_value(processor.get('image_std'))} (the image processor does this)")
    return {"size": height, "text": text, "channels": channels}


def _recipe_rows(recipe: Recipe, spec: MethodSpec, backbone_description: str) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [("method", recipe.method)]
    for key, value in recipe.model.items():
        rows.append((f"model.{key}", backbone_description if key == "backbone_config" else _format_value(value)))
    data = recipe.data
    rows += [("data.source", describe_data_source(data.source, data.config_name).name), ("data.train_split", data.train_split)]
    if spec.modality == "image":
        rows += [("data.image_size", str(data.image_size)), ("data.channels", str(data.channels))]
    if data.max_train_samples is not None:
        rows.append(("data.max_train_samples", str(data.max_train_samples)))
    if spec.modality == "image":
        views = recipe.views
        rows += [("views.num_views", str(views.num_views)), ("views.crop_scale", _format_value(views.crop_scale))]
        if views.num_local_views:
            rows += [("views.num_local_views", str(views.num_local_views)),
                     ("views.local_crop_size", str(views.local_crop_size))]
        for name in ("flip_prob", "color_jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
            rows.append((f"views.{name}", _format_value(getattr(views, name))))
        rows += [("views.mean", _format_value(views.mean)), ("views.std", _format_value(views.std))]
    optim = recipe.optim
    warmup = f"{optim.warmup_steps} steps" if optim.warmup_steps is not None else f"{optim.warmup_ratio:g} of the steps"
    rows += [("optim.name", optim.name), ("optim.lr", _format_value(optim.lr)),
             ("optim.weight_decay", _format_value(optim.weight_decay)),
             ("optim.schedule", f"{optim.schedule}, warmup {warmup}")]
    train = recipe.train
    rows.append(("train.batch_size", f"{train.batch_size} per process"))
    if train.gradient_accumulation_steps > 1:
        rows.append(("train.gradient_accumulation_steps", str(train.gradient_accumulation_steps)))
    if train.max_steps is not None:
        rows.append(("train.max_steps", str(train.max_steps)))
    else:
        rows.append(("train.epochs", _format_value(train.epochs)))
    for name, changes in train.schedules.items():
        rows.append((f"train.schedules.{name}", _format_value(changes)))
    rows += [("train.mixed_precision", train.mixed_precision or "Accelerate's setting"), ("train.seed", str(train.seed))]
    return rows


def _protocol_label(entry: dict[str, Any]) -> str:
    protocol = entry["protocol"]
    label = PROTOCOLS.get(protocol, (protocol.replace("_", " ").capitalize(),))[0]
    settings = [f"{_SETTING_LABELS.get(key, key)}={_format_value(value)}" for key, value in entry.items()
                if key not in _ENTRY_NON_SETTINGS and key not in METRICS and not isinstance(value, (dict, list))]
    if entry.get("dataset") and isinstance(entry["dataset"], str):
        settings.insert(0, describe_data_source(entry["dataset"]).short)
    return f"{label} ({', '.join(settings)})" if settings else label


def _metric_keys(entries: list[dict[str, Any]]) -> list[str]:
    return [key for key in METRICS if any(isinstance(entry.get(key), (int, float)) for entry in entries)]


def _format_metric(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{100 * value:.1f}" if METRICS[key][2] else f"{value:.3f}"


def _matching_baseline(entry: dict[str, Any], baselines: list[dict[str, Any]]) -> dict[str, Any] | None:
    # Same protocol and, where they matter for the comparison, the same k and dataset; a linear
    # probe's C is chosen per feature set, so it is not matched.
    for baseline in baselines:
        if all(baseline.get(key) == entry.get(key) for key in ("protocol", "k", "dataset")):
            return baseline
    return None


def _evaluation_context(contents: RunContents) -> dict[str, Any]:
    results = contents.eval_results
    if not results or not results.get("results"):
        return {"available": False}
    entries = results["results"]
    baselines = results.get("baselines") or []
    dataset = describe_data_source(str(results.get("dataset", "unknown")))
    keys = _metric_keys(entries)
    baseline_name = str(baselines[0].get("features", "baseline")).replace("_", " ") if baselines else None
    columns = []
    for key in keys:
        columns.append(f"{METRICS[key][1]}, model" if baseline_name else METRICS[key][1])
        if baseline_name:
            columns.append(f"{METRICS[key][1]}, {baseline_name}")
    rows = []
    for entry in entries:
        baseline = _matching_baseline(entry, baselines)
        cells = []
        for key in keys:
            cells.append(_format_metric(key, entry.get(key)))
            if baseline_name:
                cells.append(_format_metric(key, baseline.get(key)) if baseline else "-")
        rows.append({"label": _protocol_label(entry), "cells": cells})
    unit = "images" if contents.spec.modality == "image" else "examples"
    facts = []
    if results.get("num_test") is not None:
        facts.append(f"{results['num_test']:,} {unit}")
    if results.get("num_classes") is not None:
        facts.append(f"{results['num_classes']} classes")
    split = results.get("test_split") or "test"
    setup = f"Test set: the {split} split of {dataset.name}" + (f" ({', '.join(facts)})" if facts else "") + "."
    if results.get("num_train") is not None:
        setup += f" The probes use {results['num_train']:,} {unit} of the {results.get('train_split', 'train')} split."
    if any(METRICS[key][2] for key in keys):
        setup += " Accuracies in %."
    if baseline_name:
        setup += f" The {baseline_name} columns run the same protocol on {baseline_name} instead of the model's features."
    explained = []
    for entry in entries:
        text = PROTOCOLS.get(entry["protocol"], (None, None, None, f"**{entry['protocol']}**"))[3]
        if text not in explained:
            explained.append(text)
    protocols_text = "Frozen features of the encoder, evaluated with:\n\n" + "\n".join(f"- {text}" for text in explained) + "\n"
    return {"available": True, "columns": columns, "rows": rows, "setup_text": setup,
            "protocols_text": protocols_text, "split": split, "baseline_name": baseline_name or "none",
            "dataset": dataset}


def build_eval_results(contents: RunContents) -> list[EvalResult]:
    """One ``EvalResult`` per metric of every ``results`` entry of ``eval_results.json`` (no baselines)."""
    results = contents.eval_results
    if not results:
        return []
    dataset = describe_data_source(str(results.get("dataset", "unknown")))
    evals = []
    for entry in results.get("results", []):
        protocol = entry["protocol"]
        _, image_task, text_task, _ = PROTOCOLS.get(protocol, (protocol, "feature-extraction", "feature-extraction", ""))
        task_type = image_task if contents.spec.modality == "image" else text_task
        entry_dataset = describe_data_source(entry["dataset"]) if isinstance(entry.get("dataset"), str) else dataset
        settings = {key: value for key, value in entry.items()
                    if key not in _ENTRY_NON_SETTINGS and key not in METRICS and isinstance(value, (int, float, str))}
        label = _protocol_label(entry)
        for key in METRICS:
            value = entry.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metric_type, metric_name, _ = METRICS[key]
            evals.append(EvalResult(
                task_type=task_type, task_name=f"{task_type.replace('-', ' ').capitalize()} (frozen features)",
                dataset_type=entry_dataset.dataset_type,
                dataset_name=entry_dataset.name, dataset_config=entry_dataset.config_name,
                dataset_split=entry.get("split") or results.get("test_split"), metric_type=metric_type,
                metric_value=round(float(value), 6), metric_name=f"{label} {metric_name}", metric_config=protocol,
                metric_args=settings or None,
            ))
    return evals


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _images_context(run_dir: Path, family: str) -> dict[str, Any]:
    embeddings = run_dir / "images" / "embeddings_2d.png"
    reconstructions = run_dir / "images" / "reconstructions.png"
    context: dict[str, Any] = {"embeddings": None, "reconstructions": None}
    if embeddings.is_file():
        info = _png_description(embeddings)
        method = {"pca": "PCA", "tsne": "t-SNE"}.get(info.get("projection", ""), "a 2-D projection")
        count = f"{int(info['count']):,} " if info.get("count", "").isdigit() else ""
        thing = {"word-embeddings": "words", "masked-language-modeling": "test texts"}.get(family, "test images")
        context["embeddings"] = "images/embeddings_2d.png"
        if family == "word-embeddings":
            context["embeddings_alt"] = f"{method} of the vectors of frequent words"
            context["embeddings_caption"] = (
                f"{method} of the vectors of {count}frequent words, each drawn with its label: words used in "
                "similar contexts land close together."
            )
        else:
            context["embeddings_alt"] = f"{method} of test-set embeddings coloured by label"
            context["embeddings_caption"] = (
                f"{method} of the frozen embeddings of {count}{thing}, coloured by their label (labels were not "
                "used in pre-training). Classes that form separate groups here are easy for the kNN and linear probes."
            )
    if reconstructions.is_file():
        context["reconstructions"] = "images/reconstructions.png"
    context["any"] = bool(context["embeddings"] or context["reconstructions"])
    return context


def _png_description(path: Path) -> dict[str, str]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            text = image.info.get("Description", "")
    except OSError:
        return {}
    return dict(part.split("=", 1) for part in str(text).split() if "=" in part)


def _limitations(contents: RunContents, data: DatasetDescription, evaluation: dict[str, Any]) -> list[str]:
    family = contents.spec.family
    lines = ["Pre-trained without labels: the features need a probe or fine-tuning for a downstream task, and the "
             "evaluation here measures frozen features with simple probes only."]
    if contents.recipe is not None and contents.spec.modality == "image":
        size = contents.recipe.views.crop_size or contents.recipe.data.image_size
        kind = "grey" if contents.recipe.data.channels == 1 else "colour"
        lines.append(f"Trained only on {data.name} ({size} px {kind} images): expect the features to transfer poorly "
                     "to images unlike these (other domains, resolutions or colour statistics).")
    elif contents.recipe is not None:
        lines.append(f"Trained only on {data.name}: expect weaker representations for text unlike it "
                     "(other domains, registers or languages).")
    if contents.steps is not None and contents.steps < 5000:
        lines.append(f"A short run ({contents.steps:,} optimisation steps), far below the method paper's schedule: the "
                     "numbers show what this recipe reached, not what the method can reach.")
    if family == "vision-ssl":
        lines.append(_invariance_limitation(contents.recipe))
    elif family == "masked-image-modeling":
        lines.append("Masked-autoencoder features are known to do worse under linear probing than after fine-tuning "
                     "(He et al. 2022, sec. 4); a frozen probe understates what the encoder gives when fine-tuned.")
    elif family == "masked-language-modeling":
        lines.append("Masked-token predictions reflect the word statistics of the training corpus, including its "
                     "biases; the tokenizer's vocabulary limits which words the model can predict.")
    elif family == "word-embeddings":
        lines.append("One vector per word: no context (every sense of a word shares a vector), no vector for words "
                     "outside the vocabulary, and noisy vectors for rare words.")
    elif family == "image-text":
        lines.append("Zero-shot scores depend on the wording of the class prompts, and the model knows only the "
                     "concepts that its training captions cover.")
    if not evaluation.get("available"):
        lines.append("No evaluation is recorded for this model yet.")
    lines.append("Whatever biases the training data has carry over into the representations.")
    return lines


def _invariance_limitation(recipe: Recipe | None) -> str:
    """What the recipe's augmentations taught the encoder to ignore (only the augmentations it used)."""
    changes = ["position and scale (random crops)"]
    if recipe is not None:
        views = recipe.views
        if views.color_jitter_prob > 0:
            jittered = [name for name in ("brightness", "contrast", "saturation", "hue") if getattr(views, name) > 0]
            if jittered:
                changes.append(f"{', '.join(jittered)} (colour jitter)")
        if views.grayscale_prob > 0:
            changes.append("colour (random greyscale)")
        if views.flip_prob > 0:
            changes.append("left-right orientation (flips)")
        if views.blur_prob > 0 or views.blur_prob_per_view:
            changes.append("sharpness (blur)")
    return ("Augmentation-invariance objectives make the features insensitive to what the training views changed: "
            + "; ".join(changes) + ". Tasks that need those cues get less from these features.")


def _extra_files(run_dir: Path) -> list[tuple[str, str]]:
    files = []
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and path.name not in _STANDARD_FILES and not path.name.startswith("."):
            files.append((path.name, KNOWN_EXTRA_FILES.get(path.name, "an artifact of the run")))
    return files


def _text_context(contents: RunContents) -> dict[str, Any]:
    label_names = (contents.eval_results or {}).get("label_names") or []
    labels = [f"a picture of {name}" for name in label_names[:3]] or ["a photo of a cat", "a photo of a dog"]
    return {"mask_example_prefix": "the capital of france is", "mask_example_suffix": ".",
            "examples": json.dumps(["the first sentence.", "another, longer sentence to embed."]),
            "word_pair": '"king", "queen"', "candidate_labels": json.dumps(labels),
            "num_candidate_labels": len(labels)}


def _method_context(spec: MethodSpec, config: PretrainedConfig) -> dict[str, Any]:
    mask_ratio = getattr(config, "mask_ratio", None)
    return {"name": spec.name, "display_name": spec.title, "family": spec.family,
            "paper_title": spec.paper_title, "paper_url": spec.paper_url, "bibtex": spec.bibtex.strip(),
            "has_teacher": bool(getattr(spec.model_class, "teacher_pairs", ())),
            "mask_ratio_text": f"{100 * mask_ratio:.0f} %" if isinstance(mask_ratio, float) else "a fraction"}


def _card_data(contents: RunContents, data: DatasetDescription, model_name: str, *, encoder_card: bool) -> ModelCardData:
    spec = contents.spec
    tags = ["hfssl", spec.name, "self-supervised-learning", *FAMILY_TAGS.get(spec.family, [])]
    if contents.encoder_config.get("model_type"):
        tags.append(str(contents.encoder_config["model_type"]))
    if not encoder_card:
        tags.append("transformers")
    base_model = getattr(contents.config, "backbone_name_or_path", None)
    license_name = contents.recipe.hub.license if contents.recipe is not None else None
    eval_results = build_eval_results(contents) or None
    return ModelCardData(
        library_name="transformers" if encoder_card else LIBRARY_NAME,
        license=license_name,
        tags=tags,
        datasets=[data.hub_id] if data.hub_id else None,
        pipeline_tag=PIPELINE_TAGS.get(spec.family),
        base_model=base_model if base_model and is_hub_id(base_model) else None,
        metrics=sorted({result.metric_type for result in eval_results}) if eval_results else None,
        model_name=model_name,
        eval_results=eval_results,
    )


def build_card(
    run_dir: str | Path, *, repo_id: str | None = None, encoder_repo_id: str | None = None, encoder_card: bool = False
) -> ModelCard:
    """Render the card of a run directory (or, with ``encoder_card``, of its separate encoder repo).

    Args:
        run_dir: an hfssl run directory.
        repo_id: the Hub repo of the run; defaults to the recipe's ``hub.repo_id``. Without either,
            the snippets load from ``run_dir`` itself.
        encoder_repo_id: the separate encoder repo, when the encoder is published on its own.
        encoder_card: render the short card of ``encoder_repo_id`` instead of the run's card.

    Returns:
        The ``huggingface_hub.ModelCard``, already checked by :func:`validate_card`.
    """
    contents = read_run(run_dir)
    run_dir = contents.run_dir
    recipe = contents.recipe
    if repo_id is None and recipe is not None:
        repo_id = recipe.hub.repo_id
    if encoder_repo_id is None and recipe is not None and repo_id == recipe.hub.repo_id:
        encoder_repo_id = recipe.hub.encoder_repo_id
    if encoder_card and not encoder_repo_id:
        raise ValueError("an encoder card needs encoder_repo_id (the repo that holds only the encoder)")
    source = recipe.data.source if recipe is not None else None
    data = describe_data_source(source, recipe.data.config_name) if source else DatasetDescription(
        "unrecorded data", "unknown data", "unknown", None, None,
        "The training data is not recorded with this model (no recipe.yaml was saved with it).")
    spec = contents.spec
    endpoint = _endpoint()
    backbone = _backbone_context(contents, count_parameters(run_dir / "encoder"))
    evaluation = _evaluation_context(contents)
    display = spec.title
    model_name = (repo_id or str(run_dir.resolve().name)).split("/")[-1]
    short_architecture = re.sub(r"Model$", "", backbone["architecture"]) or backbone["model_type"]
    title = f"{display} {short_architecture} on {data.short}" if source else f"{display} {short_architecture}"
    steps_text = f"{contents.steps:,} optimisation steps" if contents.steps is not None else "steps not recorded"
    if recipe is not None:
        steps_text += f", batch size {recipe.train.batch_size} per process"
    repo = {
        "id": encoder_repo_id if encoder_card else (repo_id or str(run_dir)),
        "is_hub": repo_id is not None,
        "encoder_id": encoder_repo_id,
        "encoder_url": f"{endpoint}/{encoder_repo_id}" if encoder_repo_id else None,
        "parent_id": repo_id or str(run_dir),
        "parent_url": f"{endpoint}/{repo_id}" if repo_id else str(run_dir),
        "local_hint": str(run_dir) if repo_id is None else "RUN_DIR",
    }
    summary = (f"A `{backbone['architecture']}` encoder ({backbone['num_parameters_text']} parameters) pre-trained "
               f"without labels with **{display}** ([{spec.paper_title}]({spec.paper_url})) on {data.name}, "
               "trained, evaluated and exported with hfssl.")
    context = {
        "card_kind": "encoder" if encoder_card else "run",
        "title": title,
        "summary": summary,
        "method": _method_context(spec, contents.config),
        "repo": repo,
        "backbone": backbone,
        "full_model": {"class_name": spec.model_class.__name__,
                       "num_parameters_text": _format_count(count_parameters(run_dir)),
                       "extra_parts": FAMILY_EXTRA_PARTS.get(spec.family, "training heads")
                       + (" and an EMA teacher" if _method_context(spec, contents.config)["has_teacher"] else "")},
        "preprocessing": _preprocessing_context(contents),
        "data": {"name": data.name, "description": data.description
                 + (f" More: <{data.url}>." if data.url and data.hub_id is None else "")},
        "training": {"has_recipe": recipe is not None, "recipe_yaml": contents.recipe_yaml,
                     "recipe_rows": _recipe_rows(recipe, spec, backbone["description"]) if recipe else [],
                     "summary": steps_text},
        "evaluation": evaluation,
        "images": _images_context(run_dir, spec.family),
        "limitations": _limitations(contents, data, evaluation),
        "license": (recipe.hub.license if recipe is not None else None) or "not stated",
        "text": _text_context(contents),
        "extra_files": _extra_files(run_dir),
        "hfssl_version": hfssl_version(),
    }
    card_data = _card_data(contents, data, model_name, encoder_card=encoder_card)
    card = ModelCard.from_template(card_data, template_path=str(template_path(spec.family)), **context)
    validate_card(card, spec)
    return card


def hfssl_version() -> str:
    """The installed hfssl version (``unknown`` outside an installed distribution)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hfssl")
    except PackageNotFoundError:
        return "unknown"


def template_path(family: str) -> Path:
    """The template of a method family, shipped inside the package (``hfssl/model_cards``)."""
    return packaged_template_path(family)


def validate_card(card: ModelCard | str, spec: MethodSpec | None = None) -> None:
    """Check a card's metadata with huggingface_hub's own parsers (the offline part of the Hub's checks).

    The YAML block must parse as a mapping, load back into ``ModelCardData`` without
    ``ignore_metadata_errors``, and its ``model-index`` must convert back into ``EvalResult``s;
    the hfssl tags, a licence and a pipeline tag must be present.

    Args:
        card: a rendered card, or the text of a README.md.
        spec: the method, whose name must be among the tags.

    Raises:
        ValueError: naming the first problem found.
    """
    text = card if isinstance(card, str) else str(card)
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, flags=re.DOTALL)
    if match is None:
        raise ValueError("the model card has no YAML metadata block between '---' lines at its top")
    metadata = yaml.safe_load(match.group(1))
    if not isinstance(metadata, dict):
        raise ValueError(f"the card's YAML metadata must be a mapping, got {type(metadata).__name__}")
    try:
        parsed = ModelCard(text, ignore_metadata_errors=False).data
    except ValueError as error:
        raise ValueError(f"the card's metadata does not load with huggingface_hub: {error}") from error
    if "model-index" in metadata:
        _, results = model_index_to_eval_results(metadata["model-index"])
        if len(results) != len(parsed.eval_results or []):
            raise ValueError("the card's model-index does not round-trip through huggingface_hub's EvalResult")
    tags = metadata.get("tags") or []
    missing = [tag for tag in (*REQUIRED_TAGS, *([spec.name] if spec else [])) if tag not in tags]
    if missing:
        raise ValueError(f"the card's tags lack {missing}")
    for key in ("library_name", "pipeline_tag"):
        if not metadata.get(key):
            raise ValueError(f"the card's metadata has no {key}")


def write_model_card(
    run_dir: str | Path,
    *,
    repo_id: str | None = None,
    encoder_repo_id: str | None = None,
    output_path: str | Path | None = None,
) -> Path:
    """Render ``run_dir/README.md`` (or ``output_path``) from the family's template.

    Args:
        run_dir: an hfssl run directory (``config.json`` at least; ``recipe.yaml``,
            ``eval_results.json``, ``encoder/`` and ``images/`` are described when present).
        repo_id: the Hub repo the card is for (fills the loading snippets); defaults to the
            recipe's ``hub.repo_id``, else the snippets load from ``run_dir``.
        encoder_repo_id: the encoder's own repo, when it is published separately.
        output_path: where to write; ``run_dir/README.md`` by default. ``hfssl push`` writes to a
            staging folder so that the run directory is never modified.

    Returns:
        The path written.
    """
    card = build_card(run_dir, repo_id=repo_id, encoder_repo_id=encoder_repo_id)
    path = Path(output_path) if output_path is not None else Path(run_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a crash never leaves a half-written card in place of the last good one.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(str(card), encoding="utf-8")
    os.replace(partial, path)
    logger.info("wrote the model card %s", path)
    return path


def write_encoder_card(run_dir: str | Path, output_path: str | Path, *, repo_id: str, encoder_repo_id: str) -> Path:
    """Write the short card of a separate encoder repo (``library_name: transformers``) to ``output_path``."""
    card = build_card(run_dir, repo_id=repo_id, encoder_repo_id=encoder_repo_id, encoder_card=True)
    path = Path(output_path)
    path.write_text(str(card), encoding="utf-8")
    return path
