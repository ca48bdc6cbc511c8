"""One Accelerate training loop for every hfssl method.

Flow of one step (STYLE.md): the DataLoader yields decoded, fixed-size batches -> the method's
``make_inputs`` turns the whole batch into model inputs on the device, seeded ->
``model.on_train_step_start(step, scheduled)`` (with ``scheduled["lr"]``, the step's learning rate of the
first parameter group) -> ``model(**inputs)``
returns the loss first -> ``accelerator.backward`` -> gradient clipping, frozen parameters'
gradients dropped (``model.parameter_freezes()``), the learning rate and scheduled weight decay of
this step -> optimizer step -> ``model.on_train_step_end(step, scheduled)`` (EMA teachers, queues,
centres) -> callbacks (online kNN, given by the caller) and logging.

The engine knows nothing about evaluation, export or model cards: :func:`train` trains and saves
the full model; :mod:`hfssl.pipeline` runs what comes after. Callbacks are objects with
``on_step_end(step, model, data, accelerator) -> dict[str, float]`` whose returned values are logged.

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
written from non-finite weights; the first Ctrl-C saves a checkpoint at the end of the step and
raises :class:`hfssl.errors.TrainingInterrupted` (a second one stops at once).
"""

from __future__ import annotations

import hashlib
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hfssl.backbones import load_pretrained_backbone
from hfssl.data.training import TrainingData
from hfssl.distributed import convert_sync_batchnorm
from hfssl.errors import NonFiniteError, ResumeError, TrainingInterrupted
from hfssl.recipe import Recipe
from hfssl.registry import MethodSpec, get_method
from hfssl.schedules import Schedule, resolve_schedules
from hfssl.training.acceleration import CompiledForward, apply_channels_last, restore_memory_format
from hfssl.training.checkpoint import (
    latest_checkpoint,
    load_training_state,
    read_trainer_state,
    save_checkpoint,
)
from hfssl.training.monitor import collapse_metrics
from hfssl.training.optim import build_optimizer
from hfssl.training.run_directory import RunStart, guard_run_folder, plan_run, save_final_model, write_run_start
from hfssl.training.schedules import lr_multiplier

logger = logging.getLogger(__name__)


class TrainerCallback(Protocol):
    """Called on every process after each optimiser step; returns values to log (may be empty)."""

    def on_step_end(self, step: int, model: torch.nn.Module, data: TrainingData, accelerator: Accelerator
                    ) -> dict[str, float]: ...


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


def build_model(recipe: Recipe, config_updates: dict[str, Any] | None = None,
                spec: MethodSpec | None = None) -> torch.nn.Module:
    """Instantiate the method's model from the recipe's ``model`` section (and data-derived values),
    loading pretrained weights: a model with ``load_pretrained_weights()`` loads its own (MLM, CLIP);
    otherwise ``model.backbone_name_or_path`` goes through the model's ``load_pretrained_backbone(pretrained)``
    when it has one, else strictly into ``get_backbone()``. ``spec`` defaults to the registered method of ``recipe.method``."""
    spec = spec or get_method(recipe.method)
    config = spec.config_class(**{**recipe.model, **(config_updates or {})})
    model = spec.model_class(config)
    # A model with several pretrained parts, or its own kind of checkpoint, loads them itself (MLM:
    # encoder + head from backbone_name_or_path; CLIP: vision_name_or_path / text_name_or_path).
    load_pretrained_weights = getattr(model, "load_pretrained_weights", None)
    path = getattr(config, "backbone_name_or_path", None)
    if callable(load_pretrained_weights):
        for loaded in load_pretrained_weights():
            logger.info("initialised a pretrained part from %s", loaded)
    elif path:
        _, pretrained = load_pretrained_backbone(path)
        if hasattr(model, "load_pretrained_backbone"):
            model.load_pretrained_backbone(pretrained)
        else:
            model.get_backbone().load_state_dict(pretrained.state_dict())
        if hasattr(model, "copy_student_to_teacher"):
            model.copy_student_to_teacher()
        logger.info("initialised the backbone from %s", path)
    return model


def view_seed(seed: int, micro_step: int, process_index: int) -> int:
    """A 63-bit seed for the views of one micro-batch on one process."""
    digest = hashlib.sha256(f"hfssl-views-{seed}-{micro_step}-{process_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_accelerator(recipe: Recipe, output_dir: Path) -> Accelerator:
    trackers = list(recipe.train.trackers)
    kwargs: dict[str, Any] = {}
    if recipe.train.mixed_precision is not None:
        kwargs["mixed_precision"] = recipe.train.mixed_precision
    # Accelerate only sets up multi-process CPU training (gloo) when told it runs on the CPU; on a
    # machine without an accelerator, torchrun-launched processes would otherwise each train alone.
    kwargs.setdefault("cpu", not _accelerator_available())
    return Accelerator(
        gradient_accumulation_steps=recipe.train.gradient_accumulation_steps,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        **kwargs,
    )


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


def resolved_schedules(model: torch.nn.Module, recipe: Recipe) -> dict[str, Schedule]:
    """The model's scheduled scalars with the recipe's ``train.schedules`` overrides applied."""
    declared = model.schedules() if hasattr(model, "schedules") else {}
    return resolve_schedules(declared, recipe.train.schedules, owner=f"the {recipe.method} model")


def _frozen_until(model: torch.nn.Module, steps_per_epoch: int | None) -> list[tuple[torch.nn.Parameter, int]]:
    """``(parameter, first step it is updated)`` for every parameter a freeze applies to."""
    frozen = []
    freezes = model.parameter_freezes() if hasattr(model, "parameter_freezes") else []
    for freeze in freezes:
        length = freeze.length(steps_per_epoch)
        matched = [parameter for name, parameter in model.named_parameters() if freeze.matches(name)]
        if not matched:
            raise ValueError(f"{type(model).__name__}.parameter_freezes(): {freeze.pattern!r} matches no parameter")
        frozen += [(parameter, length) for parameter in matched if parameter.requires_grad]
    return frozen


@guard_run_folder  # the folder's lock and its record of what this run writes (main process)
def train(recipe: Recipe, output_dir: str | Path, resume: bool | str = False,
          accelerator: Accelerator | None = None, callbacks: list[TrainerCallback] | None = None,
          overwrite: bool = False, spec: MethodSpec | None = None) -> TrainResult:
    """Train ``recipe`` into ``output_dir`` and save the full model there; see the module docstring.

    ``spec`` trains a method that is not in the registry (the fine-tuning protocol of
    :mod:`hfssl.evaluation.finetune` builds its own); by default ``recipe.method``'s registered spec.

    ``resume``: ``False`` (a new run: the folder must be new or empty, or ``overwrite=True``),
    ``True`` (continue the newest intact checkpoint; an error when there is none), ``"auto"``
    (continue when there is one, else start) or a checkpoint path.
    """
    output_dir = Path(output_dir)
    start = plan_run(recipe, output_dir, resume, overwrite)  # every process, before anything is written
    accelerator = accelerator or make_accelerator(recipe, output_dir)
    accelerator.wait_for_everyone()
    spec = spec or get_method(recipe.method)
    callbacks = list(callbacks or [])
    set_seed(recipe.train.seed)

    checkpoint = start.checkpoint
    if checkpoint is not None:
        logger.info("resuming %s at step %d%s", checkpoint, start.step,
                    "; recipe changes: " + "; ".join(start.changes) if start.changes else " with the same recipe")

    with accelerator.main_process_first():
        data = spec.load_training_data(recipe, accelerator)
    model = build_model(recipe, data.config_updates, spec)
    schedules = resolved_schedules(model, recipe)
    if recipe.train.sync_batchnorm and accelerator.num_processes > 1:
        # torch's SyncBatchNorm is CUDA-only; this picks it on GPUs and a gloo-capable version on CPU.
        model = convert_sync_batchnorm(model, accelerator.device)
    if recipe.train.channels_last:
        apply_channels_last(model, recipe.method)  # before the optimiser: its moments take the layout too
    optimizer = build_optimizer(model, recipe.optim)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    shuffle = not isinstance(data.train_dataset, torch.utils.data.IterableDataset) and not recipe.data.streaming
    dataloader = DataLoader(
        data.train_dataset,
        batch_size=recipe.train.batch_size,
        shuffle=shuffle,
        drop_last=True,
        collate_fn=data.collate_fn,
        num_workers=recipe.data.num_workers,
        generator=torch.Generator().manual_seed(recipe.train.seed) if shuffle else None,
    )
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    try:
        batches_per_epoch = len(dataloader)
    except TypeError:
        batches_per_epoch = None
    if batches_per_epoch == 0:
        raise ValueError(
            f"the training split of {recipe.data.source!r} has fewer examples than one batch "
            f"(train.batch_size={recipe.train.batch_size} per process); lower train.batch_size"
        )
    accumulation = recipe.train.gradient_accumulation_steps
    steps_per_epoch = batches_per_epoch // accumulation if batches_per_epoch else None
    total_steps = _total_steps(recipe, steps_per_epoch)
    if start.step > total_steps:
        raise ResumeError(f"--resume: the recipe's length ({total_steps} steps) is below step {start.step} of "
                          f"checkpoint {checkpoint}; set train.max_steps or train.epochs to at least that")
    unwrapped = accelerator.unwrap_model(model)
    forward: Any = model
    if recipe.train.compile:
        forward = CompiledForward(model, recipe.train.compile_mode, recipe.method,
                                  lambda: _forward_buffers(unwrapped), lambda kept: _restore_buffers(unwrapped, kept))
    frozen = _frozen_until(unwrapped, steps_per_epoch)
    _write_run_start(accelerator, output_dir, recipe, start)  # data and model are good: now the folder changes

    state = {"global_step": 0, "epoch": 0, "batch_in_epoch": 0, "micro_step": 0, "nonfinite_streak": 0,
             "skipped_steps": 0}
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state.update(read_trainer_state(checkpoint)["state"])
        if unwrapped.training_state:
            saved = load_training_state(checkpoint, accelerator.process_index)
            if saved is None:
                raise ValueError(f"checkpoint {checkpoint} holds no training state {list(unwrapped.training_state)} "
                                 f"for {type(unwrapped).__name__}: it was written by another method")
            unwrapped.load_training_state_dict(saved)
        logger.info("resumed from %s at step %d", checkpoint, state["global_step"])

    if accelerator.is_main_process and recipe.train.trackers:
        accelerator.init_trackers("hfssl", config=_flat_config(recipe))

    progress = tqdm(
        total=total_steps, initial=state["global_step"], desc=f"hfssl {recipe.method}",
        disable=not (accelerator.is_main_process and recipe.train.progress_bar), dynamic_ncols=True,
    )
    generator = torch.Generator(device=accelerator.device)
    last_loss: float | None = None
    window_start, window_images = time.perf_counter(), 0
    skip_step = False  # a non-finite loss in this optimiser step's micro-batches (train.on_nonfinite=skip)
    model.train()
    with _InterruptRequest() as interrupt:
        while state["global_step"] < total_steps:
            if hasattr(dataloader, "set_epoch"):
                dataloader.set_epoch(state["epoch"])
            loader = dataloader
            if state["batch_in_epoch"]:
                loader = accelerator.skip_first_batches(dataloader, state["batch_in_epoch"])
            for batch in loader:
                step = state["global_step"] + 1  # the optimiser step this micro-batch contributes to
                scheduled = {name: schedule(step, total_steps) for name, schedule in schedules.items()}
                lr_factor = lr_multiplier(state["global_step"], total_steps, recipe.optim)
                # The step's learning rate too: a model that updates its weights in place (word2vec's kernel) needs it.
                unwrapped.on_train_step_start(step, {**scheduled, "lr": base_lrs[0] * lr_factor})
                with accelerator.accumulate(model):
                    generator.manual_seed(view_seed(recipe.train.seed, state["micro_step"], accelerator.process_index))
                    inputs = data.make_inputs(batch, generator)
                    kept = _forward_buffers(unwrapped) if recipe.train.on_nonfinite == "skip" else None
                    outputs = forward(**inputs)
                    loss = outputs.loss
                    # All processes decide together, so that none waits in a collective the others skip.
                    if _any_process(accelerator, not bool(torch.isfinite(loss.detach()).all())):
                        if recipe.train.on_nonfinite == "stop":
                            raise _nonfinite_loss_error(recipe, output_dir, step, loss, optimizer)
                        skip_step = True
                        _restore_buffers(unwrapped, kept)  # batch-norm statistics of the skipped forward
                    else:
                        accelerator.backward(loss)
                    if accelerator.sync_gradients and not skip_step:
                        if recipe.optim.max_grad_norm is not None:
                            accelerator.clip_grad_norm_(model.parameters(), recipe.optim.max_grad_norm)
                        for parameter, until in frozen:
                            if state["global_step"] < until:
                                parameter.grad = None  # the optimiser skips it: no update, no decay, no moments
                        _set_step_hyperparameters(optimizer, base_lrs, lr_factor, scheduled)
                    if not (accelerator.sync_gradients and skip_step):
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                state["micro_step"] += 1
                state["batch_in_epoch"] += 1
                window_images += _batch_size(batch)
                if not accelerator.sync_gradients:
                    continue
                state["global_step"] = step
                progress.update(1)
                if skip_step:
                    skip_step = False
                    _record_skip(recipe, output_dir, state, step)
                else:
                    state["nonfinite_streak"] = 0
                    unwrapped.on_train_step_end(step, scheduled)
                    last_loss = _log_step(recipe, step, total_steps, scheduled, outputs, optimizer, accelerator,
                                          callbacks, unwrapped, model, data, progress,
                                          window_images / max(time.perf_counter() - window_start, 1e-9)) or last_loss
                    if step % recipe.train.log_every == 0 or step == total_steps:
                        window_start, window_images = time.perf_counter(), 0
                stop = _any_process(accelerator, interrupt.requested)
                if step % recipe.train.checkpoint_every == 0 or step == total_steps or stop:
                    check_finite_weights(unwrapped, accelerator, recipe, output_dir, step)
                    saved = save_checkpoint(accelerator, output_dir, step,
                                            {"state": state, "run_id": start.run_id}, recipe.to_yaml(),
                                            recipe.train.keep_checkpoints, unwrapped.training_state_dict())
                if stop:
                    progress.close()
                    raise TrainingInterrupted(
                        f"interrupted (Ctrl-C) at step {step} of {total_steps}; checkpoint {saved} holds it: "
                        "continue with the same command and --resume", step, saved)
                if step >= total_steps:
                    break
            else:  # the epoch ran out before the last step
                if state["batch_in_epoch"] == 0:
                    raise ValueError(f"the training data of {recipe.data.source!r} yielded no batch")
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
    progress.close()
    accelerator.wait_for_everyone()

    unwrapped = accelerator.unwrap_model(model)
    if recipe.train.channels_last:
        restore_memory_format(unwrapped)  # evaluation and export see the default layout
    check_finite_weights(unwrapped, accelerator, recipe, output_dir, state["global_step"])
    if accelerator.is_main_process:
        save_final_model(output_dir, unwrapped, data.save_artifacts, recipe)
    accelerator.wait_for_everyone()
    if recipe.train.trackers:
        accelerator.end_training()
    return TrainResult(output_dir, state["global_step"], last_loss, checkpoint, unwrapped, data, accelerator,
                       resumed_step=start.step, recipe_changes=start.changes, skipped_steps=state["skipped_steps"],
                       damaged_checkpoints=start.damaged)


def _write_run_start(accelerator: Accelerator, output_dir: Path, recipe: Recipe, start: RunStart) -> None:
    """The first writes of a run (main process): :func:`hfssl.training.run_directory.write_run_start`."""
    if accelerator.is_main_process:
        write_run_start(output_dir, recipe, start, trackers=bool(recipe.train.trackers))
    accelerator.wait_for_everyone()


def _log_step(recipe: Recipe, step: int, total_steps: int, scheduled: dict[str, float], outputs: Any,
              optimizer: torch.optim.Optimizer, accelerator: Accelerator, callbacks: list[TrainerCallback],
              unwrapped: torch.nn.Module, model: torch.nn.Module, data: TrainingData, progress: tqdm,
              images_per_second: float) -> float | None:
    """Log one optimiser step (losses, learning rate, collapse metrics, callbacks); returns the loss when logged."""
    logs: dict[str, float] = {f"schedule/{name}": value for name, value in scheduled.items()}
    last_loss = None
    if step % recipe.train.log_every == 0 or step == total_steps:
        logs.update(_loss_logs(outputs, accelerator))
        last_loss = logs["train/loss"]
        logs["lr"] = optimizer.param_groups[0]["lr"]
        logs["examples_per_second"] = images_per_second * accelerator.num_processes
        progress.set_postfix(loss=f"{last_loss:.4f}")
    if step % recipe.train.monitor_every == 0 and getattr(outputs, "embeddings", None) is not None:
        logs.update(_collapse_logs(outputs.embeddings, accelerator))
    for callback in callbacks:
        logs.update(callback.on_step_end(step, unwrapped, data, accelerator))
        model.train()
    if logs and recipe.train.trackers:
        accelerator.log(logs, step=step)
    if logs:
        logger.debug("step %d: %s", step, logs)
    return last_loss


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


def _forward_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the buffers a forward may change (batch-norm statistics); training-only state
    (queues, centres) changes after the step, not in the forward, and is left out."""
    training_only = set(getattr(model, "training_state", ()) or ())
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


def _record_skip(recipe: Recipe, output_dir: Path, state: dict[str, int], step: int) -> None:
    """Count a skipped step; too many in a row stop the run."""
    state["nonfinite_streak"] += 1
    state["skipped_steps"] += 1
    logger.warning("step %d: non-finite loss, step skipped (%d in a row, at most %d)", step,
                   state["nonfinite_streak"], recipe.train.max_nonfinite_skips)
    if state["nonfinite_streak"] > recipe.train.max_nonfinite_skips:
        raise NonFiniteError(
            f"the {recipe.method} loss was non-finite in {state['nonfinite_streak']} steps in a row (up to step {step}; "
            f"train.max_nonfinite_skips={recipe.train.max_nonfinite_skips}): training stopped; {_last_good(output_dir)}. "
            "Fix: " + _FIX.format(lr=recipe.optim.lr), step)


def check_finite_weights(model: torch.nn.Module, accelerator: Accelerator, recipe: Recipe, output_dir: Path,
                         step: int) -> None:
    """Raise :class:`NonFiniteError` (on every process) when a parameter, buffer or training-state
    tensor of ``model`` holds NaN or infinity: nothing is saved from such weights."""
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    if hasattr(model, "training_state_dict"):
        tensors.update(model.training_state_dict())
    bad = [name for name, tensor in tensors.items()
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor.detach()).all())]
    if _any_process(accelerator, bool(bad)):
        where = f" ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})" if bad else " on another process"
        raise NonFiniteError(
            f"the {recipe.method} weights hold non-finite values after step {step}{where}: training stopped and nothing "
            f"was saved from them; {_last_good(output_dir)}. Fix: " + _FIX.format(lr=recipe.optim.lr), step)


class _InterruptRequest:
    """The first Ctrl-C (SIGINT) sets ``requested``: the loop saves a checkpoint at the end of the
    step and stops. A second one raises ``KeyboardInterrupt`` at once. Installed only in the main
    thread and when nobody else has replaced Python's own handler."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _InterruptRequest:
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("Ctrl-C: saving a checkpoint at the end of this step, then stopping "
                       "(press Ctrl-C again to stop at once, without a checkpoint)")

    def __exit__(self, *exc_info: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _set_step_hyperparameters(optimizer: torch.optim.Optimizer, base_lrs: list[float], lr_factor: float,
                              scheduled: dict[str, float]) -> None:
    """This step's learning rate, and the scheduled ``weight_decay`` on the decayed groups."""
    for group, base_lr in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base_lr * lr_factor
        if "weight_decay" in scheduled and group.get("decay", True):
            group["weight_decay"] = scheduled["weight_decay"]


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        for value in batch.values():
            if hasattr(value, "shape") and len(value.shape) > 0:
                return int(value.shape[0])
    return 0


def _loss_logs(outputs: Any, accelerator: Accelerator) -> dict[str, float]:
    logs = {}
    for name, value in outputs.items():
        if (name == "loss" or name.endswith("_loss")) and torch.is_tensor(value) and value.numel() == 1:
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
