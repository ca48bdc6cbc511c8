"""Typed recipes: YAML with fixed sections, parsed into dataclasses that reject unknown keys.

A recipe has exactly these sections: ``method, model, data, views, optim, train, eval, hub``.
``method`` is a registry name; ``model`` holds keyword arguments of the method's
``PretrainedConfig`` (checked against its ``__init__`` signature); every other section is a
dataclass below. Overrides use ``key.sub=value`` on the command line, values parsed as YAML
(``train.max_steps=10``, ``views.solarize_prob=0.2``, ``eval.protocols=[knn]``).

Hardware (processes, mixed precision backend, DeepSpeed/FSDP) is not a recipe concern: it lives
in Accelerate's own config files (``recipes/accelerate/*.yaml``). ``train.mixed_precision`` only
overrides Accelerate's choice when set.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

SECTIONS = ("method", "model", "data", "views", "optim", "train", "eval", "hub")


class RecipeError(ValueError):
    """A recipe that cannot be used as written; the message names the key and the fix."""


@dataclass
class DataConfig:
    """Where the training and evaluation data come from and how it is decoded.

    ``source`` is a Hub dataset id (``"cifar10"``), a local path (image folder, parquet, Arrow
    ``save_to_disk`` directory, CSV/JSON/text file) or a built-in source (``"builtin:digits"``,
    ``"builtin:fashion_mnist"``, ``"builtin:english_corpus"``).
    """

    source: str = "builtin:digits"
    config_name: str | None = None
    train_split: str = "train"
    eval_split: str | None = "test"
    image_column: str | None = None
    label_column: str | None = None
    text_column: str | None = None
    image_size: int = 32
    channels: int = 3
    on_bad_image: str = "error"
    streaming: bool = False
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    num_workers: int = 0
    lowercase: bool = True
    token_pattern: str = r"[\w']+"
    tokenizer_name_or_path: str | None = None

    def __post_init__(self) -> None:
        if self.on_bad_image not in ("error", "skip"):
            raise RecipeError(f"data.on_bad_image must be 'error' or 'skip', got {self.on_bad_image!r}")
        if self.channels not in (1, 3):
            raise RecipeError(f"data.channels must be 1 or 3, got {self.channels!r}")
        if self.image_size < 8:
            raise RecipeError(f"data.image_size must be at least 8 pixels, got {self.image_size!r}")


@dataclass
class ViewsConfig:
    """Augmentations applied on the training device to a batch of uint8 images.

    Defaults follow SimCLR/BYOL (Chen et al. 2020, Grill et al. 2020, appendix B) scaled for
    small images; recipes override per method. ``mean``/``std`` are the normalisation that is
    also written into the exported image processor.
    """

    num_views: int = 2
    crop_size: int | None = None  # defaults to data.image_size
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    num_local_views: int = 0
    local_crop_size: int = 16
    local_crop_scale: tuple[float, float] = (0.05, 0.2)
    flip_prob: float = 0.5
    color_jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    # Asymmetric per-view probabilities (BYOL: blur 1.0/0.1, solarize 0.0/0.2). When set, they
    # replace blur_prob / solarize_prob for view i.
    blur_prob_per_view: tuple[float, ...] | None = None
    solarize_prob_per_view: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("flip_prob", "color_jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise RecipeError(f"views.{name} must be a probability in [0, 1], got {value!r}")
        if self.num_views < 1:
            raise RecipeError(f"views.num_views must be >= 1, got {self.num_views!r}")
        for name in ("crop_scale", "local_crop_scale"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high <= 1.0:
                raise RecipeError(f"views.{name} must satisfy 0 < low <= high <= 1, got {(low, high)!r}")


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    ``lr`` is the peak rate for the whole (global) batch as written: no implicit batch-size scaling.
    ``schedule``: ``cosine`` (warmup then cosine to ``min_lr_ratio * lr``), ``linear`` (warmup then
    linear decay to ``min_lr_ratio * lr``; word2vec) or ``constant`` (after warmup).
    """

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    eps: float = 1e-8
    lars_trust_coefficient: float = 1e-3
    exclude_bias_and_norm: bool = True
    warmup_steps: int | None = None
    warmup_ratio: float = 0.05
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if self.name not in ("adamw", "lars", "sgd"):
            raise RecipeError(f"optim.name must be one of adamw, lars, sgd; got {self.name!r}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise RecipeError(f"optim.schedule must be one of cosine, linear, constant; got {self.schedule!r}")
        if self.lr <= 0:
            raise RecipeError(f"optim.lr must be > 0, got {self.lr!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise RecipeError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")


@dataclass
class TrainConfig:
    """Length, batching, checkpointing and logging of a run.

    Exactly one of ``max_steps`` and ``epochs`` decides the length; ``max_steps`` wins when both
    are set. ``batch_size`` is per process; the global batch is
    ``batch_size * num_processes * gradient_accumulation_steps``.
    """

    batch_size: int = 256
    epochs: float | None = 100
    max_steps: int | None = None
    gradient_accumulation_steps: int = 1
    mixed_precision: str | None = None
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    knn_every: int | None = None
    knn_k: int = 20
    knn_max_samples: int = 2000
    monitor_every: int = 50
    teacher_momentum_start: float | None = None
    teacher_momentum_end: float = 1.0
    sync_batchnorm: bool = False
    trackers: tuple[str, ...] = ("tensorboard",)
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise RecipeError(f"train.batch_size must be >= 1, got {self.batch_size!r}")
        if self.max_steps is None and self.epochs is None:
            raise RecipeError("set train.max_steps or train.epochs")
        if self.mixed_precision not in (None, "no", "fp16", "bf16"):
            raise RecipeError(f"train.mixed_precision must be no, fp16 or bf16; got {self.mixed_precision!r}")
        if self.checkpoint_every < 1:
            raise RecipeError(f"train.checkpoint_every must be >= 1, got {self.checkpoint_every!r}")


@dataclass
class EvalConfig:
    """Evaluation run at the end of training (and by ``hfssl eval``)."""

    protocols: tuple[str, ...] = ("knn", "linear")
    knn_k: tuple[int, ...] = (20, 200)
    knn_temperature: float = 0.07
    linear_c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    validation_fraction: float = 0.1
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    batch_size: int = 256
    baselines: bool = True


@dataclass
class HubConfig:
    """Publishing settings; nothing is pushed unless ``push`` is true or ``hfssl push`` is run."""

    push: bool = False
    repo_id: str | None = None
    encoder_repo_id: str | None = None
    private: bool = False
    revision: str | None = None
    license: str = "apache-2.0"
    commit_message: str | None = None


@dataclass
class Recipe:
    method: str
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hub: HubConfig = field(default_factory=HubConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())


_SECTION_CLASSES = {
    "data": DataConfig,
    "views": ViewsConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "hub": HubConfig,
}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _suggest(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" Did you mean {close[0]!r}?" if close else f" Allowed keys: {', '.join(sorted(allowed))}."


def _coerce(section: str, name: str, value: Any, annotation: Any) -> Any:
    """Turn YAML lists into tuples where the field is a tuple and check simple scalar types."""
    text = str(annotation)
    if value is None:
        if "None" not in text:
            raise RecipeError(f"{section}.{name} cannot be null")
        return None
    if text.startswith("tuple") or "tuple[" in text:
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{section}.{name} must be a list, got {value!r}")
        return tuple(value)
    if annotation in (int, "int") or text in ("int", "int | None"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise RecipeError(f"{section}.{name} must be an integer, got {value!r}")
    if text in ("float", "float | None") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if text in ("float", "float | None") and not isinstance(value, (int, float)):
        raise RecipeError(f"{section}.{name} must be a number, got {value!r}")
    if text in ("bool",) and not isinstance(value, bool):
        raise RecipeError(f"{section}.{name} must be true or false, got {value!r}")
    return value


def _build_section(name: str, values: Any) -> Any:
    cls = _SECTION_CLASSES[name]
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"recipe section {name!r} must be a mapping, got {type(values).__name__}")
    hints = get_type_hints(cls)
    allowed = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in allowed:
            raise RecipeError(f"unknown key {name}.{key} in recipe.{_suggest(key, allowed)}")
        kwargs[key] = _coerce(name, key, value, hints[key])
    return cls(**kwargs)


def _check_model_keys(method: str, model: dict[str, Any]) -> None:
    from hfssl.registry import get_method

    config_class = get_method(method).config_class
    parameters = inspect.signature(config_class.__init__).parameters
    allowed = [p for p in parameters if p not in ("self", "kwargs")]
    for key in model:
        if key not in allowed:
            raise RecipeError(
                f"unknown key model.{key} for method {method!r} ({config_class.__name__}).{_suggest(key, allowed)}"
            )


def recipe_from_dict(raw: dict[str, Any], check_model: bool = True) -> Recipe:
    """Build a :class:`Recipe` from a plain mapping, rejecting unknown sections and keys."""
    if not isinstance(raw, dict):
        raise RecipeError(f"a recipe must be a YAML mapping with sections {', '.join(SECTIONS)}")
    for key in raw:
        if key not in SECTIONS:
            raise RecipeError(f"unknown recipe section {key!r}.{_suggest(key, list(SECTIONS))}")
    if "method" not in raw or not isinstance(raw["method"], str):
        raise RecipeError("the recipe needs a 'method' (for example 'method: simclr')")
    from hfssl.registry import get_method

    try:
        get_method(raw["method"])
    except ValueError as error:
        raise RecipeError(f"recipe: {error}") from error
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise RecipeError("recipe section 'model' must be a mapping of config keyword arguments")
    if check_model:
        _check_model_keys(raw["method"], model)
    sections = {name: _build_section(name, raw.get(name)) for name in _SECTION_CLASSES}
    return Recipe(method=raw["method"], model=dict(model), **sections)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.sub=value`` into (["key", "sub"], value) with the value read as YAML."""
    if "=" not in text:
        raise RecipeError(f"override {text!r} must look like section.key=value (for example train.max_steps=100)")
    key, value = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise RecipeError(f"override {text!r} has an empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise RecipeError(f"override {text!r}: the value is not valid YAML ({error})") from error
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a raw recipe mapping (a copy is returned)."""
    raw = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for text in overrides:
        path, value = parse_override(text)
        if path[0] not in SECTIONS:
            raise RecipeError(f"override {text!r}: unknown section {path[0]!r}.{_suggest(path[0], list(SECTIONS))}")
        node = raw
        for part in path[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise RecipeError(f"override {text!r}: {part!r} is not a section")
            node = node[part]
        node[path[-1]] = value
    return raw


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML file, apply overrides and validate every key."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {str(path)!r} does not exist (recipes live in recipes/<method>/<dataset>.yaml)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise RecipeError(f"recipe {str(path)!r} is not valid YAML: {error}") from error
    return recipe_from_dict(apply_overrides(raw, overrides or []))
