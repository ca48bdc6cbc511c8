"""One Accelerate training loop for every hfssl method.

:func:`train` reads as its steps: :func:`_set_up` (data, model, optimiser, loader, prepared; the
folder written once they are good), :func:`_resume`, :func:`_start_logging`, then epochs
(:func:`_train_epoch`) of micro-steps (:func:`_micro_step`: :func:`_forward_backward`, and at the
last micro-batch of an optimiser step :func:`_prepare_update` and the optimizer step), each optimiser
step closed by :func:`_end_optimizer_step` (the model's hook, :func:`_log_step`, :func:`_checkpoint`),
and :func:`_finish`. What they share travels in one :class:`_Run`: the loop's position
(:class:`LoopState`, saved in checkpoints) and what every step's values are a function of
(:class:`StepPlan` -> :class:`StepValues`).

Flow of one step (STYLE.md): the DataLoader yields decoded, fixed-size batches -> the method's
``make_inputs`` turns the whole batch into model inputs on the device, seeded ->
``model.on_train_step_start(step, scheduled)`` (with ``scheduled["lr"]``, the step's learning rate of the
first parameter group) -> ``model(**inputs)``
returns the loss first -> ``accelerator.backward`` -> gradient clipping (``optim.max_grad_norm`` on
the global norm or per parameter, ``optim.grad_clip_mode``), frozen parameters'
gradients dropped (``model.parameter_freezes()``), the learning rate of each parameter group (the
recipe's schedule, or constant after the warm-up for a group with ``constant_lr``) and scheduled
weight decay of this step -> optimizer step -> ``model.on_train_step_end(step, scheduled)`` (EMA
teachers, queues, centres) -> callbacks (online kNN, given by the caller) and logging (``lr`` and
``lr/<group>`` for each declared parameter group).

Every model hook is declared on :class:`hfssl.modeling_utils.HfsslPreTrainedModel` with a default
and called directly; the engine trains such models only (the fine-tuning protocol's classifier
shell derives from it too).

The engine knows nothing about evaluation, export or model cards: :func:`train` trains and saves
the full model; :mod:`hfssl.pipeline` runs what comes after. Callbacks derive from :class:`TrainerCallback`:
started before the run's folder is written, given each optimiser step's batches and the model, their
returned values logged and their state checkpointed and resumed. ``train.early_stop`` checks one logged value at
one step; a missed milestone saves a checkpoint and raises :class:`hfssl.errors.EarlyStopped` (exit code 5).

Exact resume: the data order of each epoch is a function of (seed, epoch) (Accelerate's seedable
sampler), the inputs of a micro-batch are a function of (seed, micro-step, process), the learning
rate and every scheduled scalar and freeze are functions of the step, Accelerate's ``save_state``
keeps the model, optimizer and global RNG states, and the model's training-only state (queues,
centres) is saved with each checkpoint. A resumed run therefore follows the uninterrupted run step
for step (bit-identical on the CPU).

Speed options (:mod:`hfssl.training.acceleration`): ``train.mixed_precision`` goes to Accelerate
(autocast around the forward); ``train.channels_last`` puts the model in NHWC layout before the
optimiser is built and back after training; ``train.compile`` calls the prepared model through
``torch.compile`` with an eager fallback.

Reliability (issue 14): the run directory and the checkpoint are checked before any work
(:mod:`hfssl.training.run_directory`); a non-finite loss stops the run, or skips the step with
``train.on_nonfinite: skip``, the decision taken by all processes together; the weights are
checked to be finite before every checkpoint and before the final save, so nothing is ever
written from non-finite weights; the first Ctrl-C, SIGTERM or SIGUSR1 (schedulers' signals, issue 28)
saves a checkpoint at the end of the step on every process and raises
:class:`hfssl.errors.TrainingInterrupted` (exit code 128 + the signal's number; a second Ctrl-C a second later stops
at once); see :class:`_InterruptRequest`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import ProjectConfiguration, broadcast, parse_flag_from_env, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hfssl.data.training import TrainingData
from hfssl.distributed import convert_sync_batchnorm
from hfssl.errors import EarlyStopped, InterruptedAtOnce, NonFiniteError, ResumeError, TrainingInterrupted
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.recipe import OptimConfig, Recipe
from hfssl.registry import MethodSpec, get_method
from hfssl.schedules import Schedule, resolve_schedules
from hfssl.training.record import TRAINING_RECORD_FILE, TrainingClock, record_text, training_record
from hfssl.settings import RecipeError
from hfssl.training.acceleration import CompiledForward, apply_channels_last, restore_memory_format
from hfssl.training.checkpoint import (
    latest_checkpoint,
    load_callback_state,
    load_training_state,
    read_trainer_state,
    save_checkpoint,
)
from hfssl.training.launch import check_launch, launch_summary, machine_count
from hfssl.training.monitor import collapse_metrics
from hfssl.training.optim import DEFAULT_GROUP, build_optimizer, clip_gradients_per_parameter
from hfssl.training.precision import AUTO, resolve_mixed_precision, warn_emulated_bf16
from hfssl.training.run_directory import (
    RunStart,
    guard_run_folder,
    is_main_process,
    plan_run,
    save_final_model,
    write_run_start,
)
from hfssl.training.schedules import constant_lr_multiplier, lr_multiplier
from hfssl.training.sharding import (
    ShardingPlan,
    broadcast_batch_norm_statistics,
    check_strategy,
    enable_cpu_fsdp,
    callback_model,
    gather_full_model,
    load_sharded_state,
    local_tensor,
    refuse_cpu_deepspeed,
    restore_sharded_optimizer,
    shard_model,
)

logger = logging.getLogger(__name__)


class TrainerCallback:
    """Base of the engine's callbacks (online kNN, the online linear probe, a benchmark's timer): every hook has a
    default that does nothing, and a callback overrides the ones it needs. The engine calls them on every process.

    - :meth:`on_train_start` once the model, data and Accelerator are ready, before the run's folder is written
      and before a resume: build what the callback keeps, and refuse (:class:`RecipeError`) what cannot work.
    - :meth:`on_step_batches`, then :meth:`on_step_end`, after each optimiser step (and the model's end hook); the
      values they return are logged. ``on_step_batches`` is given that step's training batches (one per
      micro-batch, as the DataLoader yielded them, the views not applied).
    - :meth:`reads_model`: whether those two read the weights at ``step``; under FSDP2 the engine gathers a full
      copy of the model for them only then.
    - :meth:`state_dict` / :meth:`load_state_dict`: what the callback keeps across steps, saved with every
      checkpoint (``callback_state_<process>.safetensors``) and given back on ``--resume``, so that a resumed run
      logs what the uninterrupted one did. Keys start with the callback's own prefix; all callbacks share a file.
    """

    def on_train_start(self, model: torch.nn.Module, data: TrainingData, accelerator: Accelerator) -> None:
        """Before the first step (also of a resumed run)."""

    def reads_model(self, step: int) -> bool:
        """Whether the step hooks read the model's weights at ``step``."""
        return True

    def on_step_batches(self, step: int, batches: list[Any], model: torch.nn.Module, data: TrainingData,
                        accelerator: Accelerator) -> dict[str, float]:
        """After optimiser step ``step``, with the training batches it was computed from."""
        return {}

    def on_step_end(self, step: int, model: torch.nn.Module, data: TrainingData, accelerator: Accelerator
                    ) -> dict[str, float]:
        """After optimiser step ``step``; returns values to log (may be empty)."""
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """This process's state to checkpoint (tensors, keys prefixed by the callback's name)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor], checkpoint: Path) -> None:
        """Restore from the state every callback saved in ``checkpoint`` (empty when it holds none)."""


#: Called on every process once a checkpoint is in place: ``hook(step, checkpoint_folder, accelerator)``
#: (e.g. :meth:`hfssl.hub.checkpoints.CheckpointMirror.on_checkpoint` copies it to the Hub).
CheckpointHook = Callable[[int, Path, Accelerator], None]


@dataclass
class TrainResult:
    """What :func:`train` leaves: the run directory, the trained (unwrapped) model, its data and
    the Accelerator, for the steps that follow (:mod:`hfssl.pipeline`)."""

    output_dir: Path
    steps: int
    final_loss: float | None
    resumed_from: Path | None
    model: torch.nn.Module | None = None
    data: TrainingData | None = None
    accelerator: Accelerator | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    resumed_step: int = 0
    recipe_changes: list[str] = field(default_factory=list)
    skipped_steps: int = 0
    damaged_checkpoints: list[str] = field(default_factory=list)
    recipe: Recipe | None = None  # as trained: train.mixed_precision: auto resolved (hfssl.training.precision)


def build_model(recipe: Recipe, config_updates: dict[str, Any] | None = None,
                spec: MethodSpec | None = None) -> HfsslPreTrainedModel:
    """Instantiate the method's model from the recipe's ``model`` section (and data-derived values)
    and load its pretrained weights (``model.load_pretrained_weights()``: by default
    ``model.backbone_name_or_path`` into ``get_backbone()``; MLM and CLIP load their own parts).
    ``spec`` defaults to the registered method of ``recipe.method``."""
    spec = spec or get_method(recipe.method)
    config = spec.config_class(**{**recipe.model, **(config_updates or {})})
    model = spec.model_class(config)
    for loaded in model.load_pretrained_weights():
        logger.info("initialised pretrained weights from %s", loaded)
    if recipe.train.init_from:
        initialise_from_run(model, recipe.train.init_from)
    return model


@torch.no_grad()
def initialise_from_run(model: HfsslPreTrainedModel, run: str | Path) -> None:
    """``train.init_from``: copy every weight of an earlier run of the same method (``RUN/model.safetensors``)
    into ``model``; the architecture must match exactly (the error names the first differing weights)."""
    from safetensors.torch import load_file

    folder = Path(run).expanduser()
    weights, config_file = folder / "model.safetensors", folder / "config.json"
    if not weights.is_file() or not config_file.is_file():
        raise RecipeError(f"train.init_from={str(run)!r} is not a finished hfssl run (no model.safetensors and "
                          "config.json there); give the folder of a run of the same method that ended")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != model.config.model_type:
        raise RecipeError(f"train.init_from={str(run)!r} is a {model_type!r} run, but this recipe trains "
                          f"{model.config.model_type!r}; start from a run of the same method")
    state = load_file(str(weights))
    own = model.state_dict()
    missing = sorted(set(own) - set(state) - set(getattr(model, "training_state", ()) or ()))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(name for name in set(own) & set(state) if own[name].shape != state[name].shape)
    if missing or unexpected or mismatched:
        raise RecipeError(f"train.init_from={str(run)!r} does not match this recipe's model: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}, other shapes {mismatched[:5]}; the model section must "
                          "build the same architecture as that run's")
    for name, value in state.items():
        own[name].copy_(value)
    logger.info("initialised every weight from the run %s", folder)


def view_seed(seed: int, micro_step: int, process_index: int) -> int:
    """A 63-bit seed for the views of one micro-batch on one process."""
    digest = hashlib.sha256(f"hfssl-views-{seed}-{micro_step}-{process_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_accelerator(recipe: Recipe, output_dir: Path) -> Accelerator:
    if recipe.train.mixed_precision == AUTO:  # a caller that did not resolve it (train() does, with the checkpoint's)
        recipe = resolve_mixed_precision(recipe, _device_type())
    trackers = list(recipe.train.trackers)
    kwargs: dict[str, Any] = {}
    if recipe.train.mixed_precision is not None:
        kwargs["mixed_precision"] = recipe.train.mixed_precision
    # Accelerate only sets up multi-process CPU training (gloo) when told it runs on the CPU; on a
    # machine without an accelerator, torchrun-launched processes would otherwise each train alone.
    kwargs.setdefault("cpu", not _accelerator_available())
    refuse_cpu_deepspeed(kwargs["cpu"])  # Accelerate runs DeepSpeed on GPUs only (sharding.py)
    accelerator = Accelerator(
        gradient_accumulation_steps=recipe.train.gradient_accumulation_steps,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        **kwargs,
    )
    enable_cpu_fsdp(accelerator)  # an FSDP config on CPU processes: FSDP, not a silent DDP (sharding.py)
    return accelerator


def _resolve_precision(recipe: Recipe, start: RunStart, accelerator: Accelerator | None) -> Recipe:
    """``train.mixed_precision: auto`` resolved for the device this run trains on (logged once, on the
    main process, and kept in the run's recipe with the reason); an explicit bf16 on a CPU without
    native bf16 warned about (:mod:`hfssl.training.precision`)."""
    device_type = accelerator.device.type if accelerator is not None else _device_type()
    resolved = resolve_mixed_precision(recipe, device_type, start.checkpoint,
                                       accelerator.mixed_precision if accelerator is not None else None)
    if is_main_process(accelerator):
        if resolved.train.mixed_precision_reason and recipe.train.mixed_precision == "auto":
            logger.info("train.mixed_precision: %s (%s)", resolved.train.mixed_precision,
                        resolved.train.mixed_precision_reason)
        warn_emulated_bf16(resolved, device_type)
    return resolved


def _device_type() -> str:
    """The type of device an Accelerator made by :func:`make_accelerator` will train on."""
    if parse_flag_from_env("ACCELERATE_USE_CPU") or not _accelerator_available():
        return "cpu"
    if hasattr(torch, "accelerator") and torch.accelerator.current_accelerator() is not None:
        return torch.accelerator.current_accelerator().type
    return "cuda"


def _accelerator_available() -> bool:
    if hasattr(torch, "accelerator"):
        return torch.accelerator.is_available()
    return torch.cuda.is_available()


def _total_steps(recipe: Recipe, steps_per_epoch: int | None) -> int:
    if recipe.train.max_steps is not None:
        return recipe.train.max_steps
    if steps_per_epoch is None:
        raise ValueError("the training data has no length (streaming): set train.max_steps")
    return max(1, math.ceil(recipe.train.epochs * steps_per_epoch))


def resolved_schedules(model: HfsslPreTrainedModel, recipe: Recipe) -> dict[str, Schedule]:
    """The model's scheduled scalars with the recipe's ``train.schedules`` overrides applied.

    Raises:
        ValueError: when ``schedules()`` and the class's ``schedule_names(config)`` disagree (recipes are
            checked against the declared names before any model is built).
    """
    declared = model.schedules()
    names = tuple(type(model).schedule_names(model.config))
    if sorted(declared) != sorted(names):
        raise ValueError(f"{type(model).__name__}.schedules() returns {sorted(declared)} but its "
                         f"schedule_names(config) declares {sorted(names)}: override schedule_names so that both agree")
    return resolve_schedules(declared, recipe.train.schedules, owner=f"the {recipe.method} model")


def check_schedule_names(recipe: Recipe, spec: MethodSpec | None = None) -> None:
    """Check ``train.schedules`` against the names the method's model class declares
    (``schedule_names(config)``) without building a model: unknown names, unknown fields and values of
    the wrong type are refused here; what depends on the declared schedule itself (a cosine needs
    an end) is checked when training starts."""
    if not recipe.train.schedules:
        return
    spec = spec or get_method(recipe.method)
    names = spec.model_class.schedule_names(spec.config_class(**recipe.model))
    # Stand-ins with every field, so that the overrides' keys and types are checked by the same code.
    stand_ins = {name: Schedule(start=0.0, end=1.0, kind="cosine") for name in names}
    resolve_schedules(stand_ins, recipe.train.schedules, owner=f"the {recipe.method} model")


def _frozen_until(model: HfsslPreTrainedModel, steps_per_epoch: int | None, total_steps: int
                  ) -> list[tuple[torch.nn.Parameter, int]]:
    """``(parameter, first step it is updated)`` for every parameter a freeze applies to; a freeze
    as long as the whole run (the parameters would never train) is refused before training."""
    frozen = []
    for freeze in model.parameter_freezes():
        length = freeze.length(steps_per_epoch)
        if length >= total_steps:
            key = freeze.key or f"{type(model).__name__}.parameter_freezes()"
            raise RecipeError(
                f"{key} freezes {freeze.pattern} for {length} steps"
                + (f" ({steps_per_epoch} steps an epoch)" if steps_per_epoch else "")
                + f", the whole run of {total_steps} steps: those parameters would never be trained. "
                f"Fix: lower {key} or train longer (train.max_steps / train.epochs)")
        matched = [parameter for name, parameter in model.named_parameters() if freeze.matches(name)]
        if not matched:
            raise ValueError(f"{type(model).__name__}.parameter_freezes(): {freeze.pattern!r} matches no parameter")
        frozen += [(parameter, length) for parameter in matched if parameter.requires_grad]
    return frozen


# ---- what travels through a run ----------------------------------------------------------------


@dataclass
class LoopState:
    """Where the loop stands: saved as ``state`` in every checkpoint's ``trainer_state.json``."""

    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    micro_step: int = 0
    nonfinite_streak: int = 0
    skipped_steps: int = 0

    @classmethod
    def from_checkpoint(cls, checkpoint: Path) -> LoopState:
        saved = read_trainer_state(checkpoint)["state"]
        return cls(**{key: int(saved[key]) for key in cls.__dataclass_fields__ if key in saved})


@dataclass(frozen=True)
class StepValues:
    """What optimiser step ``step`` (1-based) is given: the scheduled scalars of that step, and the
    learning-rate factors of the step before it (``lr_factor`` for ``optim.schedule``,
    ``constant_lr_factor`` for groups with a constant rate); ``lr`` is the first group's rate."""

    step: int
    scheduled: dict[str, float]
    lr_factor: float
    constant_lr_factor: float
    lr: float


@dataclass(frozen=True)
class StepPlan:
    """Everything a step's values are a function of (so that a resumed run repeats them exactly)."""

    total_steps: int
    schedules: dict[str, Schedule]
    base_lrs: list[float]
    frozen: list[tuple[torch.nn.Parameter, int]]
    optim: OptimConfig

    def values(self, step: int) -> StepValues:
        scheduled = {name: schedule(step, self.total_steps) for name, schedule in self.schedules.items()}
        lr_factor = lr_multiplier(step - 1, self.total_steps, self.optim)
        constant = constant_lr_multiplier(step - 1, self.total_steps, self.optim)
        return StepValues(step, scheduled, lr_factor, constant, self.base_lrs[0] * lr_factor)


@dataclass
class _Window:
    """Examples seen since the last logged step (for ``examples_per_second``)."""

    start: float = field(default_factory=time.perf_counter)
    examples: int = 0

    def rate(self) -> float:
        return self.examples / max(time.perf_counter() - self.start, 1e-9)

    def reset(self) -> None:
        self.start, self.examples = time.perf_counter(), 0


@dataclass
class _Run:
    """One run, from set-up to finish: what :func:`_set_up` builds and the steps share."""

    recipe: Recipe
    output_dir: Path
    start: RunStart
    accelerator: Accelerator
    data: TrainingData
    model: torch.nn.Module  # as prepared by Accelerate (maybe wrapped)
    unwrapped: HfsslPreTrainedModel
    forward: Any  # the prepared model, or its compiled forward
    optimizer: torch.optim.Optimizer
    dataloader: Any
    plan: StepPlan
    state: LoopState = field(default_factory=LoopState)
    callbacks: list[TrainerCallback] = field(default_factory=list)
    checkpoint_hooks: list[CheckpointHook] = field(default_factory=list)
    bar: Any = None
    generator: torch.Generator | None = None
    last_loss: float | None = None
    window: _Window = field(default_factory=_Window)
    clock: TrainingClock = field(default_factory=TrainingClock)  # the run's cost, summed over resumes (record.py)
    skip_step: bool = False  # a non-finite loss in this optimiser step's micro-batches (train.on_nonfinite=skip)
    recipe_text: str = ""  # the resolved recipe as written beside the model and the checkpoints (launch comments first)
    sharding: ShardingPlan | None = None  # FSDP2: how to gather a plain copy of the model (sharding.py)
    step_batches: list[Any] = field(default_factory=list)  # the training batches of the optimiser step under way


@dataclass(frozen=True)
class _MicroStep:
    values: StepValues
    outputs: Any


# ---- the run, step by step ---------------------------------------------------------------------


@guard_run_folder  # the folder's lock and its record of what this run writes (main process)
def train(recipe: Recipe, output_dir: str | Path, resume: bool | str = False,
          accelerator: Accelerator | None = None, callbacks: list[TrainerCallback] | None = None,
          overwrite: bool = False, spec: MethodSpec | None = None,
          checkpoint_hooks: list[CheckpointHook] | None = None) -> TrainResult:
    """Train ``recipe`` into ``output_dir`` and save the full model there; see the module docstring.

    ``spec`` trains a method that is not in the registry (the fine-tuning protocol of
    :mod:`hfssl.evaluation.finetune` builds its own); by default ``recipe.method``'s registered spec.

    ``resume``: ``False`` (a new run: the folder must be new or empty, or ``overwrite=True``),
    ``True`` (continue the newest intact checkpoint; an error when there is none), ``"auto"``
    (continue when there is one, else start) or a checkpoint path. ``checkpoint_hooks`` are called after
    each checkpoint is saved (:data:`CheckpointHook`).
    """
    output_dir = Path(output_dir)
    if accelerator is None:
        check_launch()  # a launcher that started this process alone although several were asked for
    start = plan_run(recipe, output_dir, resume, overwrite)  # every process, before anything is written
    recipe = _resolve_precision(recipe, start, accelerator)
    accelerator = accelerator or make_accelerator(recipe, output_dir)
    accelerator.wait_for_everyone()
    set_seed(recipe.train.seed)
    run = _set_up(recipe, output_dir, start, accelerator, spec or get_method(recipe.method), list(callbacks or []))
    run.checkpoint_hooks = list(checkpoint_hooks or [])
    _resume(run)
    _start_logging(run)
    run.model.train()
    with _InterruptRequest() as interrupt:
        while run.state.global_step < run.plan.total_steps:
            _train_epoch(run, interrupt)
    return _finish(run)


def _set_up(recipe: Recipe, output_dir: Path, start: RunStart, accelerator: Accelerator, spec: MethodSpec,
            callbacks: list[TrainerCallback]) -> _Run:
    """Data, model, optimiser and loader, prepared by Accelerate, and the callbacks started; the run's folder
    changes only once all of them are good."""
    if start.checkpoint is not None:
        logger.info("resuming %s at step %d%s", start.checkpoint, start.step,
                    "; recipe changes: " + "; ".join(start.changes) if start.changes else " with the same recipe")
    with accelerator.main_process_first():
        data = spec.load_training_data(recipe, accelerator)
    model = build_model(recipe, data.config_updates, spec)
    # What FSDP2 / DeepSpeed cannot train is refused here, before the optimiser and the run folder (sharding.py).
    check_strategy(model, accelerator, recipe.method, recipe.train.sync_batchnorm, start.checkpoint)
    schedules = resolved_schedules(model, recipe)
    if recipe.train.sync_batchnorm and accelerator.num_processes > 1:
        # torch's SyncBatchNorm is CUDA-only; this picks it on GPUs and a gloo-capable version on CPU.
        model = convert_sync_batchnorm(model, accelerator.device)
    if recipe.train.channels_last:
        apply_channels_last(model, recipe.method)  # before the optimiser: its moments take the layout too
    sharding = shard_model(model, accelerator)  # FSDP2: sharded here, so the optimiser holds the shards
    optimizer = build_optimizer(model, recipe.optim)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    groups = [list(group["params"]) for group in optimizer.param_groups]
    prepared, optimizer, dataloader = accelerator.prepare(model, optimizer, training_dataloader(recipe, data))
    if sharding is not None:
        restore_sharded_optimizer(optimizer, groups)  # Accelerate's parameter swap fails on empty shards
    total_steps, steps_per_epoch = _run_length(recipe, dataloader, start)
    unwrapped = accelerator.unwrap_model(prepared)
    frozen = _frozen_until(unwrapped, steps_per_epoch, total_steps)  # a whole-run freeze is refused here
    plan = StepPlan(total_steps, schedules, base_lrs, frozen, recipe.optim)
    run = _Run(recipe, output_dir, start, accelerator, data, prepared, unwrapped, _forward(recipe, prepared, unwrapped),
               optimizer, dataloader, plan, sharding=sharding, callbacks=callbacks)
    _check_early_stop_step(recipe, total_steps)
    for callback in callbacks:  # what a callback cannot do is refused here, before the folder is written
        callback.on_train_start(unwrapped, data, accelerator)
    run.recipe_text = _recipe_text(run, steps_per_epoch)
    # Data and model are good: now the folder changes.
    _write_run_start(accelerator, output_dir, recipe, start, run.recipe_text)
    return run


def _check_early_stop_step(recipe: Recipe, total_steps: int) -> None:
    """A milestone after the last step would never be checked: refused before training."""
    stop = recipe.train.early_stop
    if stop is not None and stop.step > total_steps:
        raise RecipeError(f"train.early_stop.step={stop.step} lies after the run's last step ({total_steps}): the "
                          f"milestone would never be checked. Fix: set train.early_stop.step to at most {total_steps}, "
                          "or train longer (train.max_steps / train.epochs)")


def _recipe_text(run: _Run, steps_per_epoch: int | None) -> str:
    """The resolved recipe with the launch's batch and learning-rate semantics stated first
    (:func:`hfssl.training.launch.launch_summary`), also logged by the main process."""
    accelerator = run.accelerator
    group_lrs = {group.get("group", DEFAULT_GROUP): lr
                 for group, lr in zip(run.optimizer.param_groups, run.plan.base_lrs)}
    summary = launch_summary(run.recipe, accelerator.num_processes, machine_count(accelerator.num_processes),
                             steps_per_epoch, run.plan.total_steps, group_lrs)
    if accelerator.is_main_process:
        logger.info("%s", summary.replace("# ", "").rstrip())
    return summary + run.recipe.to_yaml()


def training_dataloader(recipe: Recipe, data: TrainingData) -> DataLoader:
    """The training DataLoader of one process, before ``accelerator.prepare`` splits it over the processes.

    ``train.batch_size`` examples per batch, the last incomplete batch dropped. A map-style split is
    shuffled by a seeded sampler that Accelerate shards (each process its own rows of every epoch). A
    streamed split (``datasets.IterableDataset``, ``data.streaming``) is read in source order by the main
    process, which hands each process its own ``train.batch_size`` rows of every ``batch_size x processes``
    (Accelerate's batch dispatching, its default for iterable data): whatever the number of shards and
    processes, no row is read twice or by two processes, and an epoch leaves out only the rows of the last
    incomplete global batch (``rows mod (batch_size x processes)``), as one process leaves out
    ``rows mod batch_size`` (tests/training/test_streaming_processes.py).
    """
    shuffle = not isinstance(data.train_dataset, torch.utils.data.IterableDataset) and not recipe.data.streaming
    return DataLoader(
        data.train_dataset,
        batch_size=recipe.train.batch_size,
        shuffle=shuffle,
        drop_last=True,
        collate_fn=data.collate_fn,
        num_workers=recipe.data.num_workers,
        generator=torch.Generator().manual_seed(recipe.train.seed) if shuffle else None,
    )


def _run_length(recipe: Recipe, dataloader: Any, start: RunStart) -> tuple[int, int | None]:
    """``(total optimiser steps, steps per epoch or None when streaming)``."""
    try:
        batches_per_epoch = len(dataloader)
    except TypeError:
        batches_per_epoch = None
    if batches_per_epoch == 0:
        raise ValueError(
            f"the training split of {recipe.data.source!r} has fewer examples than one batch "
            f"(train.batch_size={recipe.train.batch_size} per process); lower train.batch_size"
        )
    steps_per_epoch = batches_per_epoch // recipe.train.gradient_accumulation_steps if batches_per_epoch else None
    total_steps = _total_steps(recipe, steps_per_epoch)
    if start.step > total_steps:
        raise ResumeError(f"--resume: the recipe's length ({total_steps} steps) is below step {start.step} of "
                          f"checkpoint {start.checkpoint}; set train.max_steps or train.epochs to at least that")
    return total_steps, steps_per_epoch


def _forward(recipe: Recipe, model: torch.nn.Module, unwrapped: HfsslPreTrainedModel) -> Any:
    """The prepared model, or its ``torch.compile``'d forward (``train.compile``)."""
    if not recipe.train.compile:
        return model
    return CompiledForward(model, recipe.train.compile_mode, recipe.method,
                           lambda: _forward_buffers(unwrapped), lambda kept: _restore_buffers(unwrapped, kept))


def _resume(run: _Run) -> None:
    """Load the checkpoint the run continues from (model, optimiser, RNG, loop and training state)."""
    checkpoint = run.start.checkpoint
    if checkpoint is None:
        return
    _warn_changed_process_count(run, Path(checkpoint))
    if run.sharding is not None:
        load_sharded_state(run.accelerator, run.model, run.optimizer, checkpoint)  # FSDP2 (sharding.py)
    else:
        run.accelerator.load_state(str(checkpoint))
    run.state = LoopState.from_checkpoint(checkpoint)
    run.clock = TrainingClock.from_saved(read_trainer_state(checkpoint).get("clock"))
    if run.unwrapped.training_state:
        saved = load_training_state(checkpoint, run.accelerator.process_index)
        if saved is None:
            raise ValueError(f"checkpoint {checkpoint} holds no training state {list(run.unwrapped.training_state)} "
                             f"for {type(run.unwrapped).__name__}: it was written by another method")
        run.unwrapped.load_training_state_dict(saved)
    if run.callbacks:
        callback_state = load_callback_state(checkpoint, run.accelerator.process_index)
        for callback in run.callbacks:
            callback.load_state_dict(callback_state, Path(checkpoint))
    logger.info("resumed from %s at step %d", checkpoint, run.state.global_step)


def _warn_changed_process_count(run: _Run, checkpoint: Path) -> None:
    """A checkpoint holds one RNG state per process that wrote it: resumed on another number of processes
    (a job requeued on fewer machines), the run goes on, but with another global batch and data order, so
    not exactly as it would have; said once, by the main process."""
    written = len(list(checkpoint.glob("random_states_*.pkl")))
    now = run.accelerator.num_processes
    if written and written != now and run.accelerator.is_main_process:
        batch = run.recipe.train.batch_size * run.recipe.train.gradient_accumulation_steps
        logger.warning(
            "%s was written by %d processes and this run has %d: the global batch changes from %d to %d "
            "(train.batch_size is per process) and the data order and random streams differ, so the resume is "
            "not exact; launch %d processes to continue it exactly", checkpoint, written, now, batch * written,
            batch * now, written)


def _start_logging(run: _Run) -> None:
    """Trackers (main process) and the progress bar."""
    recipe, accelerator = run.recipe, run.accelerator
    if accelerator.is_main_process and recipe.train.trackers:
        accelerator.init_trackers("hfssl", config=_flat_config(recipe))
    run.bar = tqdm(
        total=run.plan.total_steps, initial=run.state.global_step, desc=f"hfssl {recipe.method}",
        disable=not (accelerator.is_main_process and recipe.train.progress_bar), dynamic_ncols=True,
    )
    run.generator = torch.Generator(device=accelerator.device)
    run.window.reset()
    run.clock.start()


def _train_epoch(run: _Run, interrupt: _InterruptRequest) -> None:
    """The rest of one epoch, or up to the last step."""
    state = run.state
    for batch in _epoch_batches(run):
        micro = _micro_step(run, batch)
        if not run.accelerator.sync_gradients:
            continue
        _end_optimizer_step(run, micro, interrupt)
        if state.global_step >= run.plan.total_steps:
            return
    if state.batch_in_epoch == 0:
        raise ValueError(f"the training data of {run.recipe.data.source!r} yielded no batch")
    state.epoch += 1
    state.batch_in_epoch = 0


def _epoch_batches(run: _Run) -> Any:
    """This epoch's batches in their seeded order, less those already trained on (after a resume)."""
    dataloader = run.dataloader
    if hasattr(dataloader, "set_epoch"):  # a property of the loader, not a model hook
        dataloader.set_epoch(run.state.epoch)
    if run.state.batch_in_epoch:
        return run.accelerator.skip_first_batches(dataloader, run.state.batch_in_epoch)
    return dataloader


def _micro_step(run: _Run, batch: Any) -> _MicroStep:
    """One micro-batch: the model's start hook, inputs, forward and backward; at the last micro-batch
    of an optimiser step, the update."""
    state, accelerator = run.state, run.accelerator
    values = run.plan.values(state.global_step + 1)  # the optimiser step this micro-batch contributes to
    run.step_batches.append(batch)  # for the callbacks that see the step's batches (cleared when the step ends)
    # The step's learning rate too: a model that updates its weights in place (word2vec's kernel) needs it.
    run.unwrapped.on_train_step_start(values.step, {**values.scheduled, "lr": values.lr})
    with accelerator.accumulate(run.model):
        outputs = _forward_backward(run, batch, values.step)
        if accelerator.sync_gradients and not run.skip_step:
            _prepare_update(run, values)
        if not (accelerator.sync_gradients and run.skip_step):
            run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    state.micro_step += 1
    state.batch_in_epoch += 1
    run.window.examples += _batch_size(batch)
    run.clock.examples += _batch_size(batch) * accelerator.num_processes
    return _MicroStep(values, outputs)


def _forward_backward(run: _Run, batch: Any, step: int) -> Any:
    """Inputs seeded by (seed, micro-step, process), forward, and backward unless the loss is
    non-finite on any process (then the run stops, or skips the step: ``train.on_nonfinite``)."""
    recipe, accelerator, unwrapped = run.recipe, run.accelerator, run.unwrapped
    run.generator.manual_seed(view_seed(recipe.train.seed, run.state.micro_step, accelerator.process_index))
    inputs = run.data.make_inputs(batch, run.generator)
    if run.sharding is not None:
        broadcast_batch_norm_statistics(unwrapped)  # FSDP2: one set of head BatchNorm statistics, as DDP keeps
    kept = _forward_buffers(unwrapped) if recipe.train.on_nonfinite == "skip" else None
    outputs = run.forward(**inputs)
    loss = outputs.loss
    # All processes decide together, so that none waits in a collective the others skip.
    if _any_process(accelerator, not bool(torch.isfinite(loss.detach()).all())):
        if recipe.train.on_nonfinite == "stop":
            raise _nonfinite_loss_error(recipe, run.output_dir, step, loss, run.optimizer)
        run.skip_step = True
        _restore_buffers(unwrapped, kept)  # batch-norm statistics of the skipped forward
    else:
        accelerator.backward(loss)
    return outputs


def _prepare_update(run: _Run, values: StepValues) -> None:
    """Before the optimiser step: gradient clipping, frozen parameters' gradients dropped, this
    step's learning rates and scheduled weight decay."""
    optim = run.recipe.optim
    if optim.max_grad_norm is not None:
        _clip_gradients(run.accelerator, run.model, run.optimizer, optim)
    for parameter, until in run.plan.frozen:
        if run.state.global_step < until:
            parameter.grad = None  # the optimiser skips it: no update, no decay, no moments
    _set_step_hyperparameters(run.optimizer, run.plan.base_lrs, values.lr_factor, values.scheduled,
                              values.constant_lr_factor)


def _clip_gradients(accelerator: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    optim: OptimConfig) -> None:
    """``optim.max_grad_norm`` on the global norm, or on each parameter's (``optim.grad_clip_mode``)."""
    if optim.grad_clip_mode == "per_parameter":
        accelerator.unscale_gradients(optimizer)  # fp16: clip the true gradients
        clip_gradients_per_parameter(model.parameters(), optim.max_grad_norm)
    else:
        accelerator.clip_grad_norm_(model.parameters(), optim.max_grad_norm)


def _end_optimizer_step(run: _Run, micro: _MicroStep, interrupt: _InterruptRequest) -> None:
    """After an optimiser step: the model's end hook and logging (or the skip recorded), then a
    checkpoint when one is due or Ctrl-C asked for one."""
    step = micro.values.step
    run.state.global_step = step
    run.bar.update(1)
    missed = None
    if run.skip_step:
        run.skip_step = False
        _record_skip(run.recipe, run.output_dir, run.state, step)
    else:
        run.state.nonfinite_streak = 0
        run.unwrapped.on_train_step_end(step, micro.values.scheduled)
        logs = _log_step(run, micro)
        missed = _missed_milestone(run, step, logs)
    run.step_batches.clear()
    _checkpoint(run, step, stop=_stop_signal(run.accelerator, interrupt.signum), missed=missed)


def _checkpoint(run: _Run, step: int, stop: int, missed: _MissedMilestone | None = None) -> None:
    """Save every ``train.checkpoint_every`` steps, at the last step and when stopping (``stop``: the
    number of the signal that asked for it, 0 for none; ``missed``: the early stop's milestone was missed); a stop
    then ends the run."""
    recipe = run.recipe
    if not (step % recipe.train.checkpoint_every == 0 or step == run.plan.total_steps or stop or missed):
        return
    check_finite_weights(run.unwrapped, run.accelerator, recipe, run.output_dir, step)
    saved = save_checkpoint(run.accelerator, run.output_dir, step,
                            {"state": asdict(run.state), "run_id": run.start.run_id, "clock": run.clock.totals()},
                            run.recipe_text, recipe.train.keep_checkpoints, run.unwrapped.training_state_dict(),
                            _callback_state(run.callbacks))
    for hook in run.checkpoint_hooks:
        hook(step, saved, run.accelerator)
    if missed is not None and not stop:
        run.bar.close()
        _finish_trackers(run.accelerator)  # the values that decided the stop are in the logs
        raise missed.error(run, saved)
    if stop:
        run.bar.close()
        raise TrainingInterrupted(
            f"interrupted ({signal_name(stop)}) at step {step} of {run.plan.total_steps}; checkpoint {saved} holds "
            "it: continue with the same command and --resume", step, saved, signum=stop)


def _callback_state(callbacks: list[TrainerCallback]) -> dict[str, torch.Tensor]:
    """Every callback's state for a checkpoint, in one mapping (two callbacks may not share a key)."""
    state: dict[str, torch.Tensor] = {}
    for callback in callbacks:
        own = callback.state_dict()
        shared = sorted(set(own) & set(state))
        if shared:
            raise ValueError(f"{type(callback).__name__}.state_dict() reuses the keys {shared} of another callback: "
                             "prefix each key with the callback's own name")
        state.update(own)
    return state


@dataclass(frozen=True)
class _MissedMilestone:
    """``train.early_stop``'s metric missed its milestone at the step: the value the main process logged."""

    value: float

    def error(self, run: _Run, checkpoint: Path) -> EarlyStopped:
        stop = run.recipe.train.early_stop
        if math.isnan(self.value):
            what = "was not measured (nothing was logged under that name)"
        else:
            bound = (f"below the milestone min={stop.min:g}" if stop.min is not None and self.value < stop.min
                     else f"above the milestone max={stop.max:g}")
            what = f"= {self.value:.6g}, {bound}"
        return EarlyStopped(
            f"stopped early at step {stop.step} of {run.plan.total_steps}: {stop.metric} {what} (train.early_stop: "
            f"metric {stop.metric}, step {stop.step}"
            + (f", min {stop.min:g}" if stop.min is not None else "") + (f", max {stop.max:g}" if stop.max is not None else "")
            + f"). Checkpoint {checkpoint} holds the run; nothing was exported or evaluated. To train on past the "
            "milestone, run the same command with --resume (it is not checked again); to drop the check, set "
            "train.early_stop=null", stop.step, checkpoint, stop.metric, self.value)


def _missed_milestone(run: _Run, step: int, logs: dict[str, float]) -> _MissedMilestone | None:
    """At ``train.early_stop.step``: the metric the main process logged (a kNN score exists there only), sent to
    every process so that all of them stop together, and whether it missed the milestone."""
    stop = run.recipe.train.early_stop
    if stop is None or step != stop.step:
        return None
    accelerator = run.accelerator
    value = torch.tensor([logs.get(stop.metric, math.nan)], dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        value = broadcast(value, from_process=0)
    measured = float(value.item())
    if math.isnan(measured) or (stop.min is not None and measured < stop.min) or (
            stop.max is not None and measured > stop.max):
        return _MissedMilestone(measured)
    if accelerator.is_main_process:
        logger.info("step %d: %s = %.6g meets the milestone of train.early_stop", step, stop.metric, measured)
    return None


def _finish(run: _Run) -> TrainResult:
    """After the last step: the full model saved (main process) from finite weights in the default layout."""
    recipe, accelerator, output_dir = run.recipe, run.accelerator, run.output_dir
    run.bar.close()
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(run.model)
    if recipe.train.channels_last:
        restore_memory_format(unwrapped)  # evaluation and export see the default layout
    check_finite_weights(unwrapped, accelerator, recipe, output_dir, run.state.global_step)
    if run.sharding is not None:  # FSDP2: a plain copy gathered on the main process is saved and evaluated
        gathered = gather_full_model(run.model, run.sharding, accelerator)
        unwrapped = gathered if gathered is not None else unwrapped
    if accelerator.is_main_process:
        record = training_record(run.clock, run.state.global_step, accelerator.num_processes, accelerator.device,
                                 recipe.train.mixed_precision)
        save_final_model(output_dir, unwrapped, run.data.save_artifacts, recipe, run.recipe_text,
                         extra_files={TRAINING_RECORD_FILE: record_text(record)})
    accelerator.wait_for_everyone()
    _finish_trackers(accelerator)
    start = run.start
    return TrainResult(output_dir, run.state.global_step, run.last_loss, start.checkpoint, unwrapped, run.data,
                       accelerator, resumed_step=start.step, recipe_changes=start.changes,
                       skipped_steps=run.state.skipped_steps, damaged_checkpoints=start.damaged, recipe=recipe)


def _finish_trackers(accelerator: Accelerator) -> None:
    """Close the trackers (TensorBoard's files) and nothing more: ``Accelerator.end_training`` would also
    destroy the process group, which the caller still needs (:mod:`hfssl.pipeline` exports and evaluates
    on the main process and then waits for every process). The process that owns the group ends it
    (``hfssl train``, :func:`hfssl.cli.run_train`)."""
    for tracker in accelerator.trackers:
        tracker.finish()


def _write_run_start(accelerator: Accelerator, output_dir: Path, recipe: Recipe, start: RunStart,
                     recipe_text: str) -> None:
    """The first writes of a run (main process): :func:`hfssl.training.run_directory.write_run_start`."""
    if accelerator.is_main_process:
        write_run_start(output_dir, recipe, start, trackers=bool(recipe.train.trackers), recipe_text=recipe_text)
    accelerator.wait_for_everyone()


def _log_step(run: _Run, micro: _MicroStep) -> dict[str, float]:
    """Log one optimiser step: scheduled values; every ``train.log_every`` steps the losses, learning
    rates and speed (the loss kept as ``run.last_loss``); collapse metrics; the callbacks' values. Returns
    what this process logged."""
    recipe, accelerator, step, outputs = run.recipe, run.accelerator, micro.values.step, micro.outputs
    logs: dict[str, float] = {f"schedule/{name}": value for name, value in micro.values.scheduled.items()}
    logged = step % recipe.train.log_every == 0 or step == run.plan.total_steps
    if logged:
        logs.update(_loss_logs(outputs, accelerator))
        run.last_loss = logs["train/loss"]
        logs.update(_lr_logs(run.optimizer))
        logs["examples_per_second"] = run.window.rate() * accelerator.num_processes
        run.bar.set_postfix(loss=f"{run.last_loss:.4f}")
    if step % recipe.train.monitor_every == 0 and getattr(outputs, "embeddings", None) is not None:
        logs.update(_collapse_logs(outputs.embeddings, accelerator))
    for callback in run.callbacks:
        # FSDP2: a float32 copy gathered on every process when the callback reads the weights (sharding.py).
        with callback_model(run.model, run.unwrapped, run.sharding, accelerator, callback, step) as model:
            logs.update(callback.on_step_batches(step, run.step_batches, model, run.data, accelerator))
            logs.update(callback.on_step_end(step, model, run.data, accelerator))
        run.model.train()
    if logs and recipe.train.trackers:
        accelerator.log(logs, step=step)
    if logs:
        logger.debug("step %d: %s", step, logs)
    if logged:
        run.window.reset()
    return logs


def _lr_logs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``lr`` (the first group's: the recipe's rule) and ``lr/<name>`` for each declared parameter group."""
    logs = {"lr": optimizer.param_groups[0]["lr"]}
    for group in optimizer.param_groups:
        name = group.get("group", DEFAULT_GROUP)
        if name != DEFAULT_GROUP:
            logs.setdefault(f"lr/{name}", group["lr"])
    return logs


def _any_process(accelerator: Accelerator, flag: bool) -> bool:
    """``flag`` on any process (a sum over processes; no collective with one process)."""
    if accelerator.num_processes == 1:
        return flag
    total = accelerator.reduce(torch.tensor([1.0 if flag else 0.0], device=accelerator.device), reduction="sum")
    return bool(total.item() > 0)


_FIX = "lower optim.lr (now {lr:g}), set optim.max_grad_norm (for example 1.0), or a longer optim warm-up"


def _last_good(output_dir: Path) -> str:
    newest = latest_checkpoint(output_dir)
    if newest is not None:
        return f"the newest checkpoint {newest} holds the last good weights (continue from it with --resume)"
    return "no checkpoint was written yet (start again with --overwrite)"


def _forward_buffers(model: HfsslPreTrainedModel) -> dict[str, torch.Tensor]:
    """Copies of the buffers a forward may change (batch-norm statistics); training-only state
    (queues, centres) changes after the step, not in the forward, and is left out."""
    training_only = set(model.training_state)
    return {name: buffer.detach().clone() for name, buffer in model.named_buffers()
            if name not in training_only}


def _restore_buffers(model: torch.nn.Module, kept: dict[str, torch.Tensor] | None) -> None:
    if not kept:
        return
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in kept.items():
            buffers[name].copy_(value)


def _nonfinite_loss_error(recipe: Recipe, output_dir: Path, step: int, loss: torch.Tensor,
                          optimizer: torch.optim.Optimizer) -> NonFiniteError:
    value = loss.detach().float().reshape(-1)[0].item()
    return NonFiniteError(
        f"the {recipe.method} loss is {value} at step {step}: training stopped and nothing was saved from these "
        f"weights; {_last_good(output_dir)}. Fix: " + _FIX.format(lr=recipe.optim.lr)
        + ", or set train.on_nonfinite=skip to skip such steps", step)


def _record_skip(recipe: Recipe, output_dir: Path, state: LoopState, step: int) -> None:
    """Count a skipped step; too many in a row stop the run."""
    state.nonfinite_streak += 1
    state.skipped_steps += 1
    logger.warning("step %d: non-finite loss, step skipped (%d in a row, at most %d)", step,
                   state.nonfinite_streak, recipe.train.max_nonfinite_skips)
    if state.nonfinite_streak > recipe.train.max_nonfinite_skips:
        raise NonFiniteError(
            f"the {recipe.method} loss was non-finite in {state.nonfinite_streak} steps in a row (up to step {step}; "
            f"train.max_nonfinite_skips={recipe.train.max_nonfinite_skips}): training stopped; {_last_good(output_dir)}. "
            "Fix: " + _FIX.format(lr=recipe.optim.lr), step)


def check_finite_weights(model: HfsslPreTrainedModel, accelerator: Accelerator, recipe: Recipe, output_dir: Path,
                         step: int) -> None:
    """Raise :class:`NonFiniteError` (on every process) when a parameter, buffer or training-state
    tensor of ``model`` holds NaN or infinity: nothing is saved from such weights."""
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers()), **model.training_state_dict()}
    # Under FSDP2 each process checks its own shards (local_tensor); all of them then agree below.
    bad = [name for name, tensor in tensors.items()
           if tensor.is_floating_point() and not bool(torch.isfinite(local_tensor(tensor).detach()).all())]
    if _any_process(accelerator, bool(bad)):
        where = f" ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})" if bad else " on another process"
        raise NonFiniteError(
            f"the {recipe.method} weights hold non-finite values after step {step}{where}: training stopped and nothing "
            f"was saved from them; {_last_good(output_dir)}. Fix: " + _FIX.format(lr=recipe.optim.lr), step)


#: The signals that stop a run at the end of the current step, with a checkpoint: Ctrl-C, and the ones
#: schedulers send (SLURM: SIGTERM at the time limit or ``scancel``, ``--signal=USR1@SECONDS`` before it).
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM,
                                            *((signal.SIGUSR1,) if hasattr(signal, "SIGUSR1") else ()))


def _is_default_handler(signum: int) -> bool:
    """Whether nobody has chosen what ``signum`` does: Python's own Ctrl-C handler for SIGINT, the
    system's default (terminate) for the others. An ignored signal (SIGINT under ``&`` in a
    non-interactive shell) or another program's handler is left as it is."""
    current = signal.getsignal(signum)
    return current is (signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)


#: A Ctrl-C this many seconds or more after the first stop signal stops at once; a repeat sooner, or a
#: repeated SIGTERM/SIGUSR1, is the same stop delivered twice (see :class:`_InterruptRequest`).
AT_ONCE_AFTER_S = 1.0


class _InterruptRequest:
    """Ctrl-C (SIGINT), SIGTERM or SIGUSR1 sets ``signum``: the loop saves a checkpoint at the end of
    the step and stops (:class:`TrainingInterrupted`, exit code 128 + the signal's number). Each handler
    is installed only in the main thread and only where the signal has its default handler
    (:func:`_is_default_handler`).

    After that, only a person's second Ctrl-C stops at once, raising :class:`InterruptedAtOnce` (a
    ``KeyboardInterrupt``): one that comes :data:`AT_ONCE_AFTER_S` or more after the first signal. Any
    other repeat is the same stop delivered twice and only logged: a terminal's Ctrl-C reaches every
    process of a launch and the launcher passes it on as well (torchrun forwards SIGINT, ``accelerate
    launch`` sends SIGTERM to its processes), and SLURM signals every process of a job step while
    torchrun forwards the same SIGTERM. A scheduler that will not wait sends SIGKILL.

    In a distributed run the signal may reach one process only (SLURM signals the batch step): the
    processes agree at every step boundary through an all-reduce of one number (:func:`_stop_signal`,
    the one that carried the Ctrl-C flag before), so every process saves at the same step and stops."""

    def __init__(self) -> None:
        self.signum = 0
        self._first_at = 0.0
        self._repeats = 0
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum != 0

    def __enter__(self) -> _InterruptRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if _is_default_handler(signum):
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if not self.requested:
            self.signum, self._first_at = int(signum), now
            logger.warning("%s: saving a checkpoint at the end of this step, then stopping (press Ctrl-C again to "
                           "stop at once, without a checkpoint)", signal_name(signum))
            return
        if signum == signal.SIGINT and now - self._first_at >= AT_ONCE_AFTER_S:
            raise InterruptedAtOnce(signum)
        self._repeats += 1
        if self._repeats == 1:
            logger.warning("%s again: the stop already asked for goes on (a launcher or scheduler passes its signal "
                           "on; a Ctrl-C a second later stops at once)", signal_name(signum))

    def __exit__(self, *exc_info: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def signal_name(signum: int) -> str:
    """``Ctrl-C``, ``SIGTERM``, ``SIGUSR1``: how messages name a stop signal."""
    name = signal.Signals(signum).name
    return "Ctrl-C" if signum == signal.SIGINT else name


def _stop_signal(accelerator: Accelerator, signum: int) -> int:
    """The stop signal any process received (the highest number when they differ), 0 for none: one
    all-reduce of one number per step, beside the non-finite check's (nothing with one process)."""
    if accelerator.num_processes == 1:
        return signum
    return int(accelerator.reduce(torch.tensor([signum], device=accelerator.device), reduction="max").item())


def _set_step_hyperparameters(optimizer: torch.optim.Optimizer, base_lrs: list[float], lr_factor: float,
                              scheduled: dict[str, float], constant_lr_factor: float = 1.0) -> None:
    """This step's learning rates (``constant_lr_factor`` for the groups with a constant rate), and
    the scheduled ``weight_decay`` on the decayed groups."""
    for group, base_lr in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base_lr * (constant_lr_factor if group.get("constant_lr", False) else lr_factor)
        if "weight_decay" in scheduled and group.get("decay", True):
            group["weight_decay"] = scheduled["weight_decay"]


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        for value in batch.values():
            if hasattr(value, "shape") and len(value.shape) > 0:
                return int(value.shape[0])
    return 0


def _loss_logs(outputs: Any, accelerator: Accelerator) -> dict[str, float]:
    """``loss``, every scalar ``*_loss`` and every scalar ``*_accuracy`` (a pretext task's training accuracy),
    averaged over processes, as ``train/<name>``."""
    logs = {}
    for name, value in outputs.items():
        if (name == "loss" or name.endswith(("_loss", "_accuracy"))) and torch.is_tensor(value) and value.numel() == 1:
            logs[f"train/{name}"] = accelerator.gather(value.detach().float().reshape(1)).mean().item()
    return logs


def _collapse_logs(embeddings: torch.Tensor, accelerator: Accelerator) -> dict[str, float]:
    gathered = accelerator.gather(embeddings.detach().float())
    return {f"monitor/{name}": value for name, value in collapse_metrics(gathered).items()}


def _flat_config(recipe: Recipe) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, values in recipe.to_dict().items():
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, (int, float, str, bool)):
                    flat[f"{section}.{key}"] = value
        else:
            flat[section] = values
    return flat
