"""Typed recipes: YAML with fixed sections, parsed into dataclasses that reject unknown keys.

A recipe has exactly these sections: ``method, model, data, views, optim, train, eval, hub``.

* ``method`` is a registered method name (:mod:`hfssl.registry`);
* ``model`` holds keyword arguments of the method's ``PretrainedConfig``: the keys are checked
  against its ``__init__`` signature and the values against its annotations, as every other
  section's (:func:`hfssl.settings.coerce`: ``queue_size: 2.5``, ``true`` or ``[1024]`` are refused
  for an ``int``);
* ``data`` is the section of the method's modality (:mod:`hfssl.data.config`): an image method
  accepts only image keys, a text method only text keys;
* ``views`` (:class:`hfssl.views.config.ViewsConfig`) only for methods that see images;
* ``optim``, ``train``, ``hub`` are the dataclasses below; ``train.schedules`` overrides the
  scalars a model schedules (:mod:`hfssl.schedules`);
* ``eval`` lists the protocols and, under each protocol's name, its own settings
  (``eval: {protocols: [knn], knn: {k: [20, 200]}}``). Those settings and whether the model can
  serve each protocol are checked by :func:`hfssl.evaluation.check_recipe` when the recipe is
  loaded for training or evaluation, before any work starts.

Overrides use ``key.sub=value`` on the command line, values parsed as YAML (``train.max_steps=10``,
``views.solarize_prob=0.2``, ``eval.protocols=[knn]``, ``eval.knn.k=[5]``). Recipes and overrides
are read with :func:`hfssl.settings.load_yaml`: ``2e-1`` is a float, as in YAML 1.2. Hardware (processes,
mixed precision backend, DeepSpeed/FSDP) lives in Accelerate's own config files
(``recipes/accelerate/*.yaml``); ``train.mixed_precision`` overrides Accelerate's choice (``auto``, the
default, follows an Accelerate config that names a precision, else the hardware; ``null`` keeps Accelerate's).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hfssl.data.config import VIEW_MODALITIES, ImageDataConfig, SourceConfig, data_config_class
from hfssl.registry import IMAGE_FEATURES, IMAGE_TEXT_EMBEDDINGS, MethodSpec, get_method
from hfssl.settings import RecipeError, build_section, coerce, load_yaml, plain, suggest
from hfssl.views.config import ViewsConfig

__all__ = [
    "SECTIONS", "Recipe", "RecipeError", "OptimConfig", "ParameterGroupSettings", "TrainConfig", "EvalConfig", "HubConfig",
    "OnlineLinearSettings", "EarlyStopSettings", "knn_metric", "ZERO_SHOT_METRIC", "zero_shot_metric", "monitored_metrics", "recipe_from_dict", "apply_overrides", "parse_override", "load_recipe",
]

#: ``torch.compile`` modes accepted by ``train.compile_mode``.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

SECTIONS = ("method", "model", "data", "views", "optim", "train", "eval", "hub")


#: ``optim.grad_clip_mode`` values.
GRAD_CLIP_MODES = ("global", "per_parameter")


@dataclass
class ParameterGroupSettings:
    """A recipe's changes to one declared parameter group (``optim.parameter_groups.<name>``); unset
    fields keep the model's values (:class:`hfssl.modeling_utils.ParameterGroup`)."""

    lr_scale: float | None = None
    constant_lr: bool | None = None
    weight_decay: bool | None = None

    def __post_init__(self) -> None:
        if self.lr_scale is not None and self.lr_scale < 0:
            raise RecipeError(f"lr_scale must be >= 0, got {self.lr_scale!r}")


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    ``lr`` is the peak rate for the whole (global) batch as written: no implicit batch-size scaling.
    ``schedule``: ``cosine`` (warmup then cosine to ``min_lr_ratio * lr``), ``linear`` (warmup then
    linear decay to ``min_lr_ratio * lr``; word2vec) or ``constant`` (after warmup). A model that
    schedules ``weight_decay`` (DINO) overrides ``weight_decay`` step by step.
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
    grad_clip_mode: str = "global"
    parameter_groups: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.grad_clip_mode not in GRAD_CLIP_MODES:
            raise RecipeError(f"optim.grad_clip_mode must be one of {', '.join(GRAD_CLIP_MODES)}; "
                              f"got {self.grad_clip_mode!r}")
        self.parameter_groups = {str(name): build_section(ParameterGroupSettings, f"optim.parameter_groups.{name}",
                                                          values)
                                 for name, values in self.parameter_groups.items()}
        if self.name not in ("adamw", "lars", "sgd"):
            raise RecipeError(f"optim.name must be one of adamw, lars, sgd; got {self.name!r}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise RecipeError(f"optim.schedule must be one of cosine, linear, constant; got {self.schedule!r}")
        if self.lr <= 0:
            raise RecipeError(f"optim.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise RecipeError(f"optim.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise RecipeError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise RecipeError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise RecipeError(f"optim.max_grad_norm must be > 0 (or null), got {self.max_grad_norm!r}")


@dataclass
class OnlineLinearSettings:
    """``train.online_linear``: a linear classifier trained during pre-training on the detached image features of
    each optimiser step's training batch and its labels (:class:`hfssl.evaluation.online.OnlineLinear`).

    ``lr`` and ``weight_decay`` are the probe's own AdamW's (constant rate; the probe starts at zero weights).
    ``eval_every``: steps between scores on the held-out split (``online_linear/top1``, on its first
    ``max_samples`` rows); ``null`` (the default) scores it with the online kNN, every ``train.knn_every`` steps
    (never when that is null too). ``online_linear/train_top1`` and ``online_linear/train_loss``, on the labelled
    rows of the step's training batch, are logged at every step.
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int | None = None
    max_samples: int = 2000

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise RecipeError(f"train.online_linear.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise RecipeError(f"train.online_linear.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.eval_every is not None and self.eval_every < 1:
            raise RecipeError(f"train.online_linear.eval_every must be >= 1 (or null: with train.knn_every), "
                              f"got {self.eval_every!r}")
        if self.max_samples < 1:
            raise RecipeError(f"train.online_linear.max_samples must be >= 1, got {self.max_samples!r}")


@dataclass
class EarlyStopSettings:
    """``train.early_stop``: stop the run when ``metric``, measured at step ``step``, is below ``min`` or above
    ``max`` (give one or both). ``metric`` is one the run logs at that step (:func:`monitored_metrics`). The stop
    saves a checkpoint of that step and ends with exit code 5 (:class:`hfssl.errors.EarlyStopped`)."""

    metric: str = ""
    step: int = 0
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if not self.metric:
            raise RecipeError("train.early_stop.metric is missing: name the logged metric to check "
                              "(for example knn/top1_k20)")
        if self.step < 1:
            raise RecipeError(f"train.early_stop.step must be >= 1 (the step at which the milestone is checked), "
                              f"got {self.step!r}")
        if self.min is None and self.max is None:
            raise RecipeError("train.early_stop needs a milestone: min (the metric must reach at least this) "
                              "and/or max (at most this)")


def knn_metric(k: int) -> str:
    """The name the online kNN logs its top-1 accuracy under (``knn/top1_k<k>``)."""
    return f"knn/top1_k{k}"


#: What the online zero-shot classifier (``train.zero_shot_every``) logs: top-1 on the evaluation data's held-out
#: pairs; each source of ``eval.zero-shot.datasets`` adds ``zero_shot/top1/<source>`` (:func:`zero_shot_metric`).
ZERO_SHOT_METRIC = "zero_shot/top1"


def zero_shot_metric(source: str | None = None) -> str:
    """The name the online zero-shot top-1 of ``source`` is logged under: :data:`ZERO_SHOT_METRIC` for the
    evaluation data (``None``), ``zero_shot/top1/<source>`` for another source, its characters outside
    ``[A-Za-z0-9_.-]`` written ``_`` (TensorBoard's tag characters: ``builtin:emoji_twitter`` ->
    ``zero_shot/top1/builtin_emoji_twitter``)."""
    if source is None:
        return ZERO_SHOT_METRIC
    return f"{ZERO_SHOT_METRIC}/{re.sub(r'[^A-Za-z0-9_.-]', '_', source)}"


@dataclass
class TrainConfig:
    """Length, batching, checkpointing, schedules and logging of a run.

    Exactly one of ``max_steps`` and ``epochs`` decides the length; ``max_steps`` wins when both
    are set. ``batch_size`` is per process; the global batch is
    ``batch_size * num_processes * gradient_accumulation_steps``. ``schedules`` maps a scalar the
    model schedules to changed schedule fields (or a number, for a constant), for example
    ``schedules: {teacher_momentum: {start: 0.99}}``.

    ``on_nonfinite`` decides what a non-finite loss does: ``stop`` (the default) ends the run with
    exit code 3 and the newest checkpoint as the last good one; ``skip`` drops that optimiser step
    (no update, no teacher or queue update) and stops only after more than
    ``max_nonfinite_skips`` consecutive skipped steps.

    Speed (:mod:`hfssl.training.acceleration`): ``mixed_precision`` (``auto``, the default: bf16 where the
    hardware runs it natively, else float32, :mod:`hfssl.training.precision`; ``bf16``, ``fp16``, ``no``;
    ``null`` keeps Accelerate's config) autocasts the model's forward while views, losses and optimiser stay
    float32; ``mixed_precision_reason`` is written by hfssl into the resolved recipe (why ``auto`` chose);
    ``channels_last`` keeps the convolution weights (and so the activations) in NHWC layout, the one
    oneDNN's and cuDNN's fast convolution kernels use; ``compile`` runs the training forward and
    backward through ``torch.compile`` (``compile_mode``: ``default``, ``reduce-overhead``,
    ``max-autotune`` or ``max-autotune-no-cudagraphs``), falling back to eager with a warning when
    the compiler fails. Checkpoints and the exported model stay plain float32 in the default layout.

    Evaluation during training (:mod:`hfssl.evaluation.online`): ``knn_every`` (online kNN of image features),
    ``online_linear`` (a linear probe trained beside the method), ``zero_shot_every`` (zero-shot top-1 of an
    image-text model with ``eval.zero-shot``'s templates, class names and ``datasets`` on the held-out pairs,
    capped by ``eval.max_test_samples``: ``zero_shot/top1``); each null (off) by default.

    ``init_from``: an earlier run of the same method (its folder, holding ``model.safetensors``) whose
    weights the model starts from, with a fresh optimiser and schedule (continued training, fine-tuning a
    CLIP model for WiSE-FT); a resumed run takes its checkpoint's weights instead.
    """

    batch_size: int = 256
    epochs: float | None = 100
    max_steps: int | None = None
    gradient_accumulation_steps: int = 1
    mixed_precision: str | None = "auto"
    mixed_precision_reason: str | None = None
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    knn_every: int | None = None
    knn_k: int = 20
    knn_max_samples: int = 2000
    zero_shot_every: int | None = None
    monitor_every: int = 50
    schedules: dict[str, Any] = field(default_factory=dict)
    sync_batchnorm: bool = False
    trackers: tuple[str, ...] = ("tensorboard",)
    progress_bar: bool = True
    on_nonfinite: str = "stop"
    max_nonfinite_skips: int = 10
    online_linear: dict[str, Any] | bool | None = None
    early_stop: dict[str, Any] | None = None
    init_from: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.online_linear, bool):  # `train.online_linear=true`: the probe with its defaults
            self.online_linear = {} if self.online_linear else None
        if self.online_linear is not None and not isinstance(self.online_linear, (dict, OnlineLinearSettings)):
            raise RecipeError(f"train.online_linear must be a mapping of its settings (lr, weight_decay, eval_every, "
                              f"max_samples), true for the defaults, or null; got {self.online_linear!r}")
        if self.online_linear is not None:
            self.online_linear = build_section(OnlineLinearSettings, "train.online_linear", self.online_linear)
        if self.early_stop is not None:
            self.early_stop = build_section(EarlyStopSettings, "train.early_stop", self.early_stop)
        if self.on_nonfinite not in ("stop", "skip"):
            raise RecipeError(f"train.on_nonfinite must be stop or skip, got {self.on_nonfinite!r}")
        if self.max_nonfinite_skips < 0:
            raise RecipeError(f"train.max_nonfinite_skips must be >= 0, got {self.max_nonfinite_skips!r}")
        if self.batch_size < 1:
            raise RecipeError(f"train.batch_size must be >= 1, got {self.batch_size!r}")
        if self.max_steps is None and self.epochs is None:
            raise RecipeError("set train.max_steps or train.epochs")
        if self.max_steps is not None and self.max_steps < 1:
            raise RecipeError(f"train.max_steps must be >= 1, got {self.max_steps!r}")
        if self.max_steps is None and self.epochs is not None and self.epochs <= 0:
            raise RecipeError(f"train.epochs must be > 0, got {self.epochs!r}")
        if self.mixed_precision not in (None, "auto", "no", "fp16", "bf16"):
            raise RecipeError(f"train.mixed_precision must be auto, no, fp16 or bf16; got {self.mixed_precision!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise RecipeError(f"train.compile_mode must be one of {', '.join(COMPILE_MODES)}; got {self.compile_mode!r}")
        for name in ("gradient_accumulation_steps", "checkpoint_every", "keep_checkpoints", "log_every",
                     "knn_k", "knn_max_samples", "monitor_every"):
            if getattr(self, name) < 1:
                raise RecipeError(f"train.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.knn_every is not None and self.knn_every < 1:
            raise RecipeError(f"train.knn_every must be >= 1 (or null for no online kNN), got {self.knn_every!r}")
        if self.zero_shot_every is not None and self.zero_shot_every < 1:
            raise RecipeError(f"train.zero_shot_every must be >= 1 (or null for no zero-shot score during training), "
                              f"got {self.zero_shot_every!r}")
        if self.early_stop is not None:
            _check_early_stop(self)

    @property
    def online_linear_eval_every(self) -> int | None:
        """Steps between the online linear probe's held-out scores (``None``: none, or no probe)."""
        if self.online_linear is None:
            return None
        return self.online_linear.eval_every or self.knn_every


def monitored_metrics(train: TrainConfig) -> dict[str, int]:
    """The metrics a run with these settings logs that ``train.early_stop`` may name, each with the interval
    (in steps) it is measured at: ``train/loss`` (every ``train.log_every``), the online kNN's and the online
    linear probe's and the online zero-shot classifier's when they are on."""
    metrics = {"train/loss": train.log_every}
    if train.knn_every:
        metrics[knn_metric(train.knn_k)] = train.knn_every
    if train.zero_shot_every:
        metrics[ZERO_SHOT_METRIC] = train.zero_shot_every
    if train.online_linear is not None:
        metrics["online_linear/train_top1"] = 1
        metrics["online_linear/train_loss"] = 1
        if train.online_linear_eval_every:
            metrics["online_linear/top1"] = train.online_linear_eval_every
    return metrics


def _check_early_stop(train: TrainConfig) -> None:
    """``train.early_stop`` names a metric this run logs, at a step where it is measured."""
    stop, metrics = train.early_stop, monitored_metrics(train)
    if stop.metric not in metrics:
        hints = []
        if stop.metric.startswith("knn/"):
            hints.append(f"the online kNN logs {knn_metric(train.knn_k)} when train.knn_every is set (k is "
                         "train.knn_k)")
        if stop.metric.startswith("zero_shot/"):
            hints.append(f"{ZERO_SHOT_METRIC} is logged every train.zero_shot_every steps when that is set")
        if stop.metric.startswith("online_linear/"):
            hints.append("online_linear/* are logged with train.online_linear set (online_linear/top1 every "
                         "train.online_linear.eval_every or train.knn_every steps)")
        raise RecipeError(f"train.early_stop.metric={stop.metric!r} is not logged by this run; it logs "
                          f"{', '.join(sorted(metrics))}." + (" Note: " + "; ".join(hints) if hints else ""))
    every = metrics[stop.metric]
    if stop.step % every:
        below, above = stop.step - stop.step % every, stop.step - stop.step % every + every
        raise RecipeError(f"train.early_stop.step={stop.step} is not a step where {stop.metric} is measured (every "
                          f"{every} steps): set it to a multiple of {every}, for example {below or above} or {above}")


@dataclass
class EvalConfig:
    """Evaluation at the end of training and by ``hfssl eval``.

    ``protocols`` are names registered in :mod:`hfssl.evaluation`; the settings of protocol ``P``
    are the mapping under key ``P`` (kept in ``settings``), checked by the protocol's own settings
    class. ``max_train_samples`` / ``max_test_samples`` cap the evaluation splits; ``baselines``
    runs the feature protocols on raw pixels too.
    """

    protocols: tuple[str, ...] = ("knn", "linear")
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    batch_size: int = 256
    baselines: bool = True
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    projections: tuple[str, ...] = ("pca", "tsne", "umap")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise RecipeError(f"eval.batch_size must be >= 1, got {self.batch_size!r}")
        unknown = [name for name in self.projections if name not in ("pca", "tsne", "umap")]
        if unknown:
            raise RecipeError(f"eval.projections: unknown projections {unknown}; choose from pca, tsne, umap")
        for name in ("max_train_samples", "max_test_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise RecipeError(f"eval.{name} must be >= 1 (or null for all rows), got {value!r}")

    def protocol_settings(self, protocol: str) -> dict[str, Any]:
        """The raw settings mapping of one protocol (empty when the recipe gives none)."""
        return dict(self.settings.get(protocol) or {})


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
    """A whole recipe; see the module docstring for the sections."""

    method: str
    model: dict[str, Any] = field(default_factory=dict)
    data: SourceConfig = field(default_factory=ImageDataConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hub: HubConfig = field(default_factory=HubConfig)

    @property
    def spec(self) -> MethodSpec:
        return get_method(self.method)

    def to_dict(self) -> dict[str, Any]:
        values = {name: plain(getattr(self, name)) for name in SECTIONS}
        if self.spec.modality not in VIEW_MODALITIES:
            values.pop("views")
        settings = values["eval"].pop("settings")
        values["eval"].update(settings)
        return values

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())


_FIXED_SECTIONS = {"optim": OptimConfig, "train": TrainConfig, "hub": HubConfig}


def _eval_section(values: Any) -> EvalConfig:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"section 'eval' must be a mapping, got {type(values).__name__}")
    fixed = [f.name for f in dataclasses.fields(EvalConfig) if f.name != "settings"]
    plain_values, settings = {}, {}
    for key, value in values.items():
        if key in fixed:
            plain_values[key] = value
        elif key == "settings" and isinstance(value, dict):
            settings.update(value)
        elif isinstance(value, dict):
            settings[str(key)] = dict(value)  # a protocol's own settings; checked by hfssl.evaluation
        else:
            raise RecipeError(f"unknown key eval.{key} in recipe.{suggest(str(key), fixed)} "
                              "(settings of a protocol go under its name, for example eval.knn.k)")
    section = build_section(EvalConfig, "eval", plain_values)
    section.settings = settings
    return section


def _check_model_keys(spec: MethodSpec, model: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` section with unknown keys refused and each value checked and converted by the
    annotation of the config's ``__init__`` parameter (unannotated or multi-type parameters pass as written)."""
    parameters = inspect.signature(spec.config_class.__init__).parameters
    allowed = [p for p in parameters if p not in ("self", "kwargs")]
    for key in model:
        if key not in allowed:
            raise RecipeError(
                f"unknown key model.{key} for method {spec.name!r} ({spec.config_class.__name__}).{suggest(key, allowed)}"
            )
    hints = _init_hints(spec.config_class)
    return {key: coerce(f"model.{key}", value, hints[key]) if key in hints else value for key, value in model.items()}


def _init_hints(config_class: type) -> dict[str, Any]:
    """The evaluated annotations of ``config_class.__init__`` (empty when one cannot be evaluated)."""
    try:
        return typing.get_type_hints(config_class.__init__)
    except Exception:  # noqa: BLE001 - a forward reference the module cannot resolve: check keys only
        return {}


def _check_crop_sizes(views: ViewsConfig, data: Any) -> None:
    """Multi-crop's local crops are the small views (Caron et al. 2020, sec. 3.2): one larger than
    the global crops is a swapped pair of sizes, refused before training."""
    global_size = views.crop_size or getattr(data, "image_size", None)
    if views.num_local_views and global_size and views.local_crop_size > global_size:
        where = "views.crop_size" if views.crop_size else "data.image_size"
        raise RecipeError(f"views.local_crop_size={views.local_crop_size} is larger than the global crops "
                          f"({where}={global_size}): local crops are the small views of multi-crop. Set "
                          f"views.local_crop_size to at most {global_size} (for example {max(1, global_size // 2)})")


def _check_online_linear(spec: MethodSpec, train: TrainConfig) -> None:
    """The online linear probe reads image features of the training batches: methods that serve none are refused."""
    if train.online_linear is not None and IMAGE_FEATURES not in spec.provides:
        raise RecipeError(
            f"train.online_linear: the {spec.name} model ({spec.modality} data) does not serve {IMAGE_FEATURES}, which "
            "the online linear probe trains on (the pooled image features of each training batch). Fix: remove "
            "train.online_linear (or set it to null); the evaluation protocols score text models after training")


def _check_zero_shot_every(spec: MethodSpec, train: TrainConfig) -> None:
    """The online zero-shot classifier scores the model's dual encoder: methods that serve none are refused."""
    if train.zero_shot_every is not None and IMAGE_TEXT_EMBEDDINGS not in spec.provides:
        raise RecipeError(
            f"train.zero_shot_every={train.zero_shot_every}: the {spec.name} model does not serve "
            f"{IMAGE_TEXT_EMBEDDINGS} (an image-text dual encoder), which zero-shot classification needs. Fix: set "
            "train.zero_shot_every=null (use train.knn_every to watch an image model during training)")


def recipe_from_dict(raw: dict[str, Any], check_model: bool = True) -> Recipe:
    """Build a :class:`Recipe` from a plain mapping, rejecting unknown sections and keys."""
    if not isinstance(raw, dict):
        raise RecipeError(f"a recipe must be a YAML mapping with sections {', '.join(SECTIONS)}")
    for key in raw:
        if key not in SECTIONS:
            raise RecipeError(f"unknown recipe section {key!r}.{suggest(str(key), list(SECTIONS))}")
    if "method" not in raw or not isinstance(raw["method"], str):
        raise RecipeError("the recipe needs a 'method' (for example 'method: simclr')")
    try:
        spec = get_method(raw["method"])
    except ValueError as error:
        raise RecipeError(f"recipe: {error}") from error
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise RecipeError("recipe section 'model' must be a mapping of config keyword arguments")
    if check_model:
        model = _check_model_keys(spec, model)
    if raw.get("views") and spec.modality not in VIEW_MODALITIES:
        raise RecipeError(f"method {spec.name!r} trains on {spec.modality} data: the views section is for methods "
                          "that see images; remove it")
    train = raw.get("train")
    if isinstance(train, dict) and train.get("mixed_precision") is False:
        # YAML reads a bare `no` (`train.mixed_precision=no`, the natural override) as false: it means "no".
        raw = {**raw, "train": {**train, "mixed_precision": "no"}}
    data_class = data_config_class(spec.modality)
    sections: dict[str, Any] = {name: build_section(cls, name, raw.get(name)) for name, cls in _FIXED_SECTIONS.items()}
    sections["data"] = build_section(data_class, "data", raw.get("data"))
    if spec.modality in VIEW_MODALITIES:
        sections["views"] = build_section(ViewsConfig, "views", raw.get("views"))
        _check_crop_sizes(sections["views"], sections["data"])
    sections["eval"] = _eval_section(raw.get("eval"))
    _check_online_linear(spec, sections["train"])
    _check_zero_shot_every(spec, sections["train"])
    if spec.check_recipe is not None:
        spec.check_recipe(Recipe(method=spec.name, model=dict(model), **sections))
    return Recipe(method=spec.name, model=dict(model), **sections)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.sub=value`` into (["key", "sub"], value) with the value read as YAML."""
    if "=" not in text:
        raise RecipeError(f"override {text!r} must look like section.key=value (for example train.max_steps=100)")
    key, value = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise RecipeError(f"override {text!r} has an empty key")
    try:
        parsed = load_yaml(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise RecipeError(f"override {text!r}: the value is not valid YAML ({error})") from error
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a raw recipe mapping (a copy is returned)."""
    if not isinstance(raw, dict):
        raise RecipeError(f"a recipe must be a YAML mapping with sections {', '.join(SECTIONS)}, got "
                          f"{type(raw).__name__} {raw!r:.60}; overrides cannot apply to it")
    raw = load_yaml(yaml.safe_dump(raw)) or {}
    for text in overrides:
        path, value = parse_override(text)
        if path[0] not in SECTIONS:
            raise RecipeError(f"override {text!r}: unknown section {path[0]!r}.{suggest(path[0], list(SECTIONS))}")
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
        raw = load_yaml(path.read_text())
        raw = {} if raw is None else raw
    except yaml.YAMLError as error:
        raise RecipeError(f"recipe {str(path)!r} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {str(path)!r} must be a YAML mapping with sections {', '.join(SECTIONS)}, got "
                          f"{type(raw).__name__} {raw!r:.60}")
    return recipe_from_dict(apply_overrides(raw, overrides or []))
