"""One Accelerate training loop for every hfssl method.

Flow of one step (STYLE.md): the DataLoader yields decoded, fixed-size batches -> the method's
``make_inputs`` turns them into views on the device, seeded -> ``model(**inputs)`` returns the
loss first -> ``accelerator.backward`` -> optimizer step with the learning rate of this step ->
``update_teacher(momentum)`` for methods with a teacher.

Exact resume: the data order of each epoch is a function of (seed, epoch) (Accelerate's seedable
sampler), the views of a micro-batch are a function of (seed, micro-step, process), the learning
rate and teacher momentum are functions of the step, and Accelerate's ``save_state`` keeps the
model, optimizer and global RNG states. A resumed run therefore follows the uninterrupted run
step for step (bit-identical on the CPU).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hfssl.distributed import convert_sync_batchnorm
from hfssl.registry import get_method
from hfssl.training.checkpoint import (
    checkpoint_root,
    read_trainer_state,
    remove_stale_staging,
    resolve_resume,
    save_checkpoint,
)
from hfssl.training.optim import build_optimizer
from hfssl.training.recipe import Recipe
from hfssl.training.schedules import lr_multiplier, teacher_momentum

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    final_loss: float | None
    resumed_from: Path | None
    outputs: dict[str, Any] = field(default_factory=dict)


def build_model(recipe: Recipe, config_updates: dict[str, Any] | None = None) -> torch.nn.Module:
    """Instantiate the method's model from the recipe's ``model`` section (and data-derived values),
    loading pretrained backbone weights when ``model.backbone_name_or_path`` is set."""
    spec = get_method(recipe.method)
    config = spec.config_class(**{**recipe.model, **(config_updates or {})})
    model = spec.model_class(config)
    path = getattr(config, "backbone_name_or_path", None)
    if path:
        from hfssl.backbones import load_pretrained_backbone

        _, pretrained = load_pretrained_backbone(path)
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


def train(recipe: Recipe, output_dir: str | Path, resume: bool | str = False,
          accelerator: Accelerator | None = None) -> TrainResult:
    """Train ``recipe`` into ``output_dir``; see the module docstring for the guarantees."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    accelerator = accelerator or make_accelerator(recipe, output_dir)
    spec = get_method(recipe.method)
    set_seed(recipe.train.seed)

    checkpoint = resolve_resume(output_dir, resume)
    if accelerator.is_main_process:
        remove_stale_staging(checkpoint_root(output_dir))
        recipe.save(output_dir / "recipe.yaml")

    with accelerator.main_process_first():
        data = spec.load_hook("build_data")(recipe, accelerator)
    model = build_model(recipe, data.config_updates)
    if recipe.train.sync_batchnorm and accelerator.num_processes > 1:
        # torch's SyncBatchNorm is CUDA-only; this picks it on GPUs and a gloo-capable version on CPU.
        model = convert_sync_batchnorm(model, accelerator.device)
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

    state = {"global_step": 0, "epoch": 0, "batch_in_epoch": 0, "micro_step": 0}
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state.update(read_trainer_state(checkpoint)["state"])
        logger.info("resumed from %s at step %d", checkpoint, state["global_step"])

    if accelerator.is_main_process and recipe.train.trackers:
        accelerator.init_trackers("hfssl", config=_flat_config(recipe))
    unwrapped = accelerator.unwrap_model(model)
    momentum_base = recipe.train.teacher_momentum_start
    if momentum_base is None:
        momentum_base = getattr(unwrapped.config, "teacher_momentum", None)

    progress = tqdm(
        total=total_steps, initial=state["global_step"], desc=f"hfssl {recipe.method}",
        disable=not (accelerator.is_main_process and recipe.train.progress_bar), dynamic_ncols=True,
    )
    generator = torch.Generator(device=accelerator.device)
    last_loss: float | None = None
    window_start, window_images = time.perf_counter(), 0
    model.train()
    while state["global_step"] < total_steps:
        if hasattr(dataloader, "set_epoch"):
            dataloader.set_epoch(state["epoch"])
        loader = dataloader
        if state["batch_in_epoch"]:
            loader = accelerator.skip_first_batches(dataloader, state["batch_in_epoch"])
        for batch in loader:
            with accelerator.accumulate(model):
                generator.manual_seed(view_seed(recipe.train.seed, state["micro_step"], accelerator.process_index))
                inputs = data.make_inputs(batch, generator)
                outputs = model(**inputs)
                loss = outputs.loss
                if not torch.isfinite(loss.detach()):
                    raise FloatingPointError(
                        f"the {recipe.method} loss is {loss.item()} at step {state['global_step']}; "
                        "lower optim.lr, raise the temperature, or set optim.max_grad_norm"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if recipe.optim.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(model.parameters(), recipe.optim.max_grad_norm)
                    factor = lr_multiplier(state["global_step"], total_steps, recipe.optim)
                    for group, base_lr in zip(optimizer.param_groups, base_lrs):
                        group["lr"] = base_lr * factor
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            state["micro_step"] += 1
            state["batch_in_epoch"] += 1
            window_images += _batch_size(batch)
            if not accelerator.sync_gradients:
                continue
            state["global_step"] += 1
            step = state["global_step"]
            logs: dict[str, float] = {}
            if unwrapped.teacher_pairs and momentum_base is not None:
                momentum = teacher_momentum(step, total_steps, momentum_base, recipe.train.teacher_momentum_end)
                unwrapped.update_teacher(momentum)
                logs["teacher_momentum"] = momentum
            progress.update(1)
            if step % recipe.train.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - window_start
                logs.update(_loss_logs(outputs, accelerator))
                last_loss = logs["train/loss"]
                logs["lr"] = optimizer.param_groups[0]["lr"]
                logs["examples_per_second"] = window_images * accelerator.num_processes / max(elapsed, 1e-9)
                window_start, window_images = time.perf_counter(), 0
                progress.set_postfix(loss=f"{last_loss:.4f}")
            if step % recipe.train.monitor_every == 0 and getattr(outputs, "embeddings", None) is not None:
                logs.update(_collapse_logs(outputs.embeddings, accelerator))
            if recipe.train.knn_every and step % recipe.train.knn_every == 0:
                logs.update(online_knn(unwrapped, data, recipe, accelerator))
                model.train()
            if logs and recipe.train.trackers:
                accelerator.log(logs, step=step)
            if logs:
                logger.debug("step %d: %s", step, logs)
            if step % recipe.train.checkpoint_every == 0 or step == total_steps:
                save_checkpoint(accelerator, output_dir, step, {"state": state}, recipe.to_yaml(),
                                recipe.train.keep_checkpoints)
            if step >= total_steps:
                break
        else:  # the epoch ran out before the last step
            if state["batch_in_epoch"] == 0:
                raise ValueError(f"the training data of {recipe.data.source!r} yielded no batch")
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    progress.close()
    accelerator.wait_for_everyone()

    outputs: dict[str, Any] = {}
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(output_dir, safe_serialization=True)
        if data.save_artifacts is not None:
            data.save_artifacts(output_dir)
        outputs = spec.load_hook("finalize")(output_dir, unwrapped, recipe, data) or {}
    accelerator.wait_for_everyone()
    if recipe.train.trackers:
        accelerator.end_training()
    return TrainResult(output_dir, state["global_step"], last_loss, checkpoint, outputs)


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
    from hfssl.evaluation.monitor import collapse_metrics

    gathered = accelerator.gather(embeddings.detach().float())
    return {f"monitor/{name}": value for name, value in collapse_metrics(gathered).items()}


@torch.no_grad()
def online_knn(model: torch.nn.Module, data: Any, recipe: Recipe, accelerator: Accelerator) -> dict[str, float]:
    """kNN top-1 on the held-out split with the current backbone (main process; others wait)."""
    logs: dict[str, float] = {}
    if data.eval_train_dataset is None or data.eval_test_dataset is None:
        return logs
    if accelerator.is_main_process:
        from hfssl.evaluation.features import extract_features_with
        from hfssl.evaluation.knn import knn_evaluate
        from hfssl.views import build_eval_transform

        model.eval()
        transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
        limit = recipe.train.knn_max_samples
        train_set = data.eval_train_dataset.select(range(min(limit, len(data.eval_train_dataset))))
        test_set = data.eval_test_dataset.select(range(min(limit, len(data.eval_test_dataset))))
        train_f, train_y = extract_features_with(model.get_embeddings, transform, train_set, recipe.eval.batch_size)
        test_f, test_y = extract_features_with(model.get_embeddings, transform, test_set, recipe.eval.batch_size)
        if (train_y >= 0).all():
            num_classes = int(max(train_y.max(), test_y.max())) + 1
            result = knn_evaluate(train_f, train_y, test_f, test_y, ks=[recipe.train.knn_k],
                                  temperature=recipe.eval.knn_temperature, num_classes=num_classes)
            logs[f"knn/top1_k{recipe.train.knn_k}"] = float(result[0]["top1"])
    accelerator.wait_for_everyone()
    return logs


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
