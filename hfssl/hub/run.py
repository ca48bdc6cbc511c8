"""Reading a run directory for its model card: what it holds, how its data source is named.

:func:`read_run` reads ``config.json``, ``recipe.yaml``, ``eval_results.json`` (checked),
``encoder/config.json`` and ``encoder/preprocessor_config.json`` and the step count of the last
checkpoint (see ARCHITECTURE.md, "Run directory"). :func:`describe_data_source` names a recipe's
``data.source`` for a card (built-in sources in :data:`BUILTIN_DATASETS`, Hub ids, local paths),
and :func:`count_parameters` counts the parameters of a saved model without loading it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import AutoConfig, PretrainedConfig

from hfssl.errors import NonFiniteError
from hfssl.recipe import Recipe, load_recipe
from hfssl.registry import MethodSpec, method_for_config
from hfssl.training.record import TRAINING_RECORD_FILE

logger = logging.getLogger(__name__)

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
            "images (stratified, fixed seed)."
        ),
        "labels_note": "The labels were not used for pre-training.",
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
            "as the Hub's zalando-datasets/fashion_mnist."
        ),
        "labels_note": "The labels were not used for pre-training.",
    },
    "builtin:emoji": {
        "name": "emoji-datasource (Google art)",
        "short": "emoji",
        "hub_id": None,
        "type": "emoji",
        "url": "https://github.com/iamcal/emoji-data",
        "description": (
            "The 1,906 base emoji of emoji-datasource-google 16.0.0 (npm; package MIT, Noto emoji art Apache-2.0) "
            "as 64x64 RGB images read as transformers' load_image reads the PNG files (alpha dropped), captioned "
            "from their Unicode names (\"an emoji of cat face\"), "
            "split by subcategory: 22 whole subcategories (396 emoji, every category represented) are held out, "
            "so near-duplicates never cross the split."
        ),
        "labels_note": "The 9 categories are labels for zero-shot evaluation only.",
    },
    "builtin:emoji_twitter": {
        "name": "emoji-datasource (Twitter art)",
        "short": "emoji (Twitter)",
        "hub_id": None,
        "type": "emoji_twitter",
        "url": "https://github.com/iamcal/emoji-data",
        "description": (
            "The same emoji and split as builtin:emoji in Twitter's Twemoji art (emoji-datasource-twitter 16.0.0, "
            "art CC-BY 4.0): a change of drawing style for evaluation."
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

_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


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
        labels_note: how a self-supervised run used the data's labels (``The labels were not used for
            pre-training.``), after the description; a card family trained on them replaces it
            (:attr:`hfssl.hub.cards.common.FamilyCard.labels_note`).
    """

    name: str
    short: str
    dataset_type: str
    hub_id: str | None
    url: str | None
    description: str
    config_name: str | None = None
    labels_note: str | None = None


#: What a card says when the run has no recipe.yaml, so its training data is unknown.
UNRECORDED_DATA = DatasetDescription(
    "unrecorded data", "unknown data", "unknown", None, None,
    "The training data is not recorded with this model (no recipe.yaml was saved with it).")


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
    training: dict[str, Any] | None = None  # DIR/training.json: what training cost (hfssl.training.record)


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
                                  known["url"], str(known["description"]), config_name, known.get("labels_note"))
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


def training_data(contents: RunContents) -> DatasetDescription:
    """The run's training data as the card names it (:data:`UNRECORDED_DATA` without a recipe)."""
    if contents.recipe is None or not contents.recipe.data.source:
        return UNRECORDED_DATA
    return describe_data_source(contents.recipe.data.source, contents.recipe.data.config_name)


def read_json(path: Path) -> Any:
    """Parse a JSON file; a malformed one raises ``ValueError`` naming the file and what to do."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); fix or delete it and run `hfssl card` again") from error


def check_eval_results(data: Any, path: Path) -> dict[str, Any]:
    """``data`` when it has the shape of ``eval_results.json``, else ``ValueError`` naming the bad entry."""
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


def latest_step(run_dir: Path) -> int | None:
    """The global step of the run's last checkpoint (``checkpoints/step-*/trainer_state.json``), if any."""
    states = sorted((run_dir / "checkpoints").glob("step-*/trainer_state.json"))
    if not states:
        return None
    try:
        return int(json.loads(states[-1].read_text())["state"]["global_step"])
    except (KeyError, ValueError, TypeError, json.JSONDecodeError):
        logger.warning("could not read the step count from %s", states[-1])
        return None


def _encoder_configs(run_dir: Path, config: PretrainedConfig) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The exported encoder's config (else the backbone config inside the model's) and its processor config."""
    encoder_dir = run_dir / "encoder"
    if (encoder_dir / "config.json").is_file():
        encoder_config = read_json(encoder_dir / "config.json")
    else:
        backbone = getattr(config, "backbone_config", None)
        encoder_config = backbone.to_dict() if backbone is not None else {}
    processor_config = None
    if (encoder_dir / "preprocessor_config.json").is_file():
        processor_config = read_json(encoder_dir / "preprocessor_config.json")
    return encoder_config, processor_config


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
        eval_results = check_eval_results(read_json(run_dir / "eval_results.json"), run_dir / "eval_results.json")
    encoder_config, processor_config = _encoder_configs(run_dir, config)
    training = read_json(run_dir / TRAINING_RECORD_FILE) if (run_dir / TRAINING_RECORD_FILE).is_file() else None
    return RunContents(run_dir, config, spec, recipe, recipe_yaml, eval_results, encoder_config,
                       processor_config, latest_step(run_dir), training)


def count_parameters(folder: Path) -> int | None:
    """Number of parameters stored in ``folder/model.safetensors`` (or its shards), ``None`` if absent.

    Normalisation statistics (BatchNorm's running mean/variance and batch counter) are buffers, not
    parameters, and are not counted.
    """
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({folder / name for name in read_json(index)["weight_map"].values()})
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


#: Result fields that may be undefined without the result being wrong (few-shot's interval of one episode).
UNDEFINED_OK = frozenset({"ci95"})
_FIX_DIVERGED = ("train again with a lower optim.lr, optim.max_grad_norm (for example 1.0) or a longer warm-up, or "
                 "continue from an earlier checkpoint with --resume-from")


def weight_files(folder: Path) -> list[Path]:
    """``folder``'s safetensors weights: the shards of ``model.safetensors.index.json``, else ``model.safetensors``."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return sorted({folder / name for name in read_json(index)["weight_map"].values()})
    return [folder / "model.safetensors"] if (folder / "model.safetensors").is_file() else []


def check_finite_weights(run_dir: Path, verb: str) -> None:
    """Every tensor of the run's model and of its ``encoder/`` reads and is finite.

    Raises:
        ValueError: a weights file that cannot be read (truncated, not safetensors), with the fix.
        NonFiniteError: a tensor holding NaN or infinity (exit code 3): a diverged run is not ``verb``.
    """
    from safetensors import SafetensorError, safe_open

    for file in [*weight_files(run_dir), *weight_files(run_dir / "encoder")]:
        bad = []
        try:
            with safe_open(str(file), framework="numpy") as handle:
                for key in handle.keys():
                    tensor = handle.get_tensor(key)
                    if tensor.dtype.kind == "f" and not np.isfinite(tensor).all():
                        bad.append(key)
        except (SafetensorError, OSError, ValueError) as error:
            fix = (f"write it again with `hfssl export {run_dir}`" if file.parent.name == "encoder" and
                   file.parent.parent == run_dir else "restore it from a copy, or train the run again")
            raise ValueError(f"{file} is damaged and cannot be read ({error}); nothing was {verb}. Fix: {fix}") from None
        if bad:
            names = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
            raise NonFiniteError(f"{file} holds non-finite weights (NaN or infinity in {names}): the run diverged, so "
                                 f"it is not {verb}. Fix: {_FIX_DIVERGED}")


def check_finite_results(data: dict[str, Any], path: Path, verb: str) -> None:
    """Raise :class:`NonFiniteError` when a number of ``eval_results.json`` is NaN or infinite."""
    for group in ("results", "baselines"):
        for index, entry in enumerate(data.get(group) or []):
            for key, value in entry.items():
                if isinstance(value, float) and not math.isfinite(value) and key not in UNDEFINED_OK:
                    raise NonFiniteError(
                        f"{path}: {group}[{index}] ({entry.get('protocol')}) has {key}={value}: a non-finite result is "
                        f"not {verb}. Fix: evaluate again with `hfssl eval {path.parent}` (a diverged model is refused "
                        f"there: then {_FIX_DIVERGED}), or remove the entry")


def check_publishable(run_dir: str | Path, verb: str = "published") -> None:
    """What ``hfssl card`` and ``hfssl push`` refuse before they describe or upload anything: weights
    that cannot be read or are not finite, and non-finite evaluation results."""
    run_dir = Path(run_dir)
    check_finite_weights(run_dir, verb)
    results = run_dir / "eval_results.json"
    if results.is_file():
        check_finite_results(check_eval_results(read_json(results), results), results, verb)
