"""Atomic checkpoints: a kill at any moment leaves the last good checkpoint in place.

A checkpoint is written into ``checkpoints/.tmp-step-XXXXXXXX`` (Accelerate's ``save_state``:
model, optimizer, RNG states of every process, gradient scaler), then ``trainer_state.json``
and the resolved ``recipe.yaml`` are written and fsync'ed, and only then is the folder renamed
to ``checkpoints/step-XXXXXXXX`` (a rename is atomic on POSIX file systems). ``--resume`` takes
the newest ``step-*`` folder that holds a ``trainer_state.json``; stale ``.tmp-*`` folders from a
killed run are removed.

Training-only state of the model (``HfsslPreTrainedModel.training_state``: a negative queue, a
centre) is written beside Accelerate's files as ``training_state_<process>.safetensors`` by every
process, so it is part of the same atomic checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
TRAINING_STATE_FILE = "training_state_{process}.safetensors"


def checkpoint_root(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def _fsync_file(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, step: int, trainer_state: dict[str, Any], recipe_yaml: str, keep: int,
    training_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the checkpoint of optimizer step ``step`` atomically; every process must call this.

    ``training_state`` (this process's training-only tensors) is saved when not empty.
    """
    root = checkpoint_root(output_dir)
    final = root / f"step-{step:08d}"
    staging = root / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if staging.exists():
            shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if training_state:
        save_file({name: tensor.contiguous() for name, tensor in training_state.items()},
                  str(staging / TRAINING_STATE_FILE.format(process=accelerator.process_index)))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _fsync_file(staging / "recipe.yaml", recipe_yaml)
        _fsync_file(staging / STATE_FILE, json.dumps(trainer_state, indent=2))
        if final.exists():  # the same step written again (a resumed run that re-saves)
            shutil.rmtree(final)
        os.replace(staging, final)
        _fsync_directory(root)
        prune_checkpoints(root, keep)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def _fsync_directory(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def complete_checkpoints(root: Path) -> list[Path]:
    """Finished checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [path for path in root.glob("step-*") if (path / STATE_FILE).is_file()]
    return sorted(found, key=lambda path: int(path.name.split("-")[1]))


def prune_checkpoints(root: Path, keep: int) -> None:
    for path in complete_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_staging(root: Path) -> None:
    for path in root.glob(".tmp-step-*") if root.is_dir() else []:
        logger.warning("removing the unfinished checkpoint %s left by an interrupted run", path)
        shutil.rmtree(path, ignore_errors=True)


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = complete_checkpoints(checkpoint_root(output_dir))
    return found[-1] if found else None


def resolve_resume(output_dir: Path, resume: bool | str) -> Path | None:
    """Map ``--resume`` (true: latest in ``output_dir``; a path: that checkpoint) to a checkpoint."""
    if not resume:
        return None
    if isinstance(resume, str) and resume not in ("true", "latest"):
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise FileNotFoundError(f"--resume {resume!r} is not a complete hfssl checkpoint (no {STATE_FILE} in it)")
        return path
    path = latest_checkpoint(output_dir)
    if path is None:
        logger.warning("--resume: no checkpoint in %s, starting from scratch", checkpoint_root(output_dir))
    return path


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text())


def load_training_state(checkpoint: Path, process_index: int) -> dict[str, torch.Tensor] | None:
    """This process's training-only state in ``checkpoint`` (process 0's when the process count
    changed), or ``None`` when the checkpoint holds none."""
    for index in (process_index, 0):
        path = Path(checkpoint) / TRAINING_STATE_FILE.format(process=index)
        if path.is_file():
            return load_file(str(path))
    return None

