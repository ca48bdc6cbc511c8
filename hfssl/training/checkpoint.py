"""Atomic checkpoints: a kill at any moment leaves the last good checkpoint in place.

A checkpoint is written into ``checkpoints/.tmp-step-XXXXXXXX-<pid>-<random>`` (Accelerate's
``save_state``: model, optimizer, RNG states of every process, gradient scaler), then
``trainer_state.json`` and the resolved ``recipe.yaml`` are written and fsync'ed, and only then is
the folder renamed to ``checkpoints/step-XXXXXXXX`` (a rename is atomic on POSIX file systems). The
staging name is unique to the writing run (the main process's pid and a random suffix, broadcast to
the other processes), so two processes never share one. The run's manifest
(:mod:`hfssl.files`) records the staging folder before it is created and the checkpoint once it is
in place; staging folders left by a killed process are removed at the next start, which holds the
folder's lock, so no live process owns them.

Ownership: ``trainer_state.json`` records the ``run_id`` of the run that wrote it (a fresh id for
every new run, carried on by ``--resume``). Pruning only removes older checkpoints of the same
run, and a checkpoint of another run is never replaced.

Resume: :func:`resolve_resume` verifies the newest checkpoint (:func:`checkpoint_problems`: the
files present, ``*.safetensors`` complete, ``optimizer.bin`` a complete archive, every pickled file
(``*.bin``, ``*.pkl``) accepted by torch's weights-only unpickler, the JSON and YAML parse) and falls
back to the newest intact one, logging what it skipped and why.

A write that fails (a full disk, no permission) removes its staging folder, so the previous
checkpoint stays the newest, and raises :class:`hfssl.errors.StorageError` with the path and,
for a full disk, the space needed and free.

Training-only state of the model (``HfsslPreTrainedModel.training_state``: a negative queue, a
centre) is written beside Accelerate's files as ``training_state_<process>.safetensors`` by every
process, so it is part of the same atomic checkpoint; so is the state of the training callbacks (the online
linear probe's weights and optimiser moments), as ``callback_state_<process>.safetensors``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import uuid
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from hfssl.errors import ResumeError, RunDirectoryError, StorageError
from hfssl.files import (
    DIR,
    MANIFEST_FILE,
    RUN,
    TREE,
    apply_umask,
    foreign_entries,
    read_manifest,
    remove_recorded,
    update_manifest,
)
from hfssl.files import storage_error as _storage_error
from hfssl.registry import is_hfssl_run

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
RECIPE_FILE = "recipe.yaml"
TRAINING_STATE_FILE = "training_state_{process}.safetensors"
CALLBACK_STATE_FILE = "callback_state_{process}.safetensors"

#: Names of a checkpoint's staging folder: the step, then a suffix unique to the writing run.
STAGING_PREFIX = ".tmp-step-"
#: Entries of a run killed before its first checkpoint (its start files): a restart may remove them.
START_ENTRIES = ("recipe.yaml", "logs", "checkpoints")


def checkpoint_root(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def new_run_id() -> str:
    """A fresh id for a new run, recorded in every checkpoint it writes."""
    return uuid.uuid4().hex


def _fsync_file(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, step: int, trainer_state: dict[str, Any], recipe_yaml: str, keep: int,
    training_state: dict[str, torch.Tensor] | None = None, callback_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the checkpoint of optimizer step ``step`` atomically; every process must call this.

    ``trainer_state`` holds ``{"state": ..., "run_id": ...}``; ``training_state`` (this
    process's training-only tensors) and ``callback_state`` (the training callbacks' state, such as the online
    linear probe's weights and optimiser moments) are saved when not empty. Pruning keeps the ``keep`` newest
    checkpoints of the same ``run_id``. A failed write raises :class:`StorageError` and leaves the
    previous checkpoint as the newest.
    """
    root = checkpoint_root(output_dir)
    final = root / f"step-{step:08d}"
    staging = root / f"{STAGING_PREFIX}{step:08d}-{_staging_suffix(accelerator)}"
    run_id = trainer_state.get("run_id")
    try:
        if accelerator.is_main_process:
            _check_replaceable(final, run_id)
            # Recorded before it exists: a kill at any later moment leaves a staging folder hfssl knows is its own.
            update_manifest(output_dir, add={"checkpoints": DIR, relative_to_run(output_dir, staging): TREE})
            root.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(staging))
        if training_state:
            save_file({name: tensor.contiguous() for name, tensor in training_state.items()},
                      str(staging / TRAINING_STATE_FILE.format(process=accelerator.process_index)))
        if callback_state:
            save_file({name: tensor.detach().contiguous() for name, tensor in callback_state.items()},
                      str(staging / CALLBACK_STATE_FILE.format(process=accelerator.process_index)))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _fsync_file(staging / RECIPE_FILE, recipe_yaml)
            _fsync_file(staging / STATE_FILE, json.dumps(trainer_state, indent=2))
            apply_umask(staging)  # safetensors writes 0600 whatever the umask
            if final.exists():  # the same step of this run written again (a resumed run that re-saves)
                shutil.rmtree(final)
            os.replace(staging, final)
            _fsync_directory(root)
            update_manifest(output_dir, add={relative_to_run(output_dir, final): TREE},
                            remove=[relative_to_run(output_dir, staging)])
    except (OSError, RuntimeError) as error:
        if isinstance(error, (RunDirectoryError, StorageError)) or not _is_write_failure(error):
            raise
        shutil.rmtree(staging, ignore_errors=True)
        raise storage_error(error, staging, "checkpoint", _bytes_needed(accelerator, root)) from error
    if accelerator.is_main_process:
        prune_checkpoints(root, keep, run_id)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def _staging_suffix(accelerator: Accelerator) -> str:
    """``<pid>-<random>`` of the main process, the same on every process of the run."""
    suffix = [f"{os.getpid()}-{uuid.uuid4().hex[:8]}"]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(suffix, from_process=0)
    return str(suffix[0])


def relative_to_run(output_dir: Path, path: Path) -> str:
    return Path(path).relative_to(Path(output_dir)).as_posix()


def _check_replaceable(final: Path, run_id: str | None) -> None:
    """A checkpoint folder of the same step may only be replaced when this run (or nobody) wrote it."""
    if final.exists() and (final / STATE_FILE).is_file():
        owner = checkpoint_run_id(final)
        if owner is not None and owner != run_id:
            raise RunDirectoryError(f"{final} belongs to another run (run id {owner}); hfssl will not replace it. "
                                    "Train into a new --output-dir, or start over there with --overwrite")


def _is_write_failure(error: BaseException) -> bool:
    """An ``OSError`` (full disk, permissions) or torch's ``RuntimeError`` for a failed file write."""
    if isinstance(error, OSError):
        return True
    text = str(error).lower()
    return "write" in text and ("file" in text or "stream" in text)


def storage_error(error: BaseException, path: Path, what: str, needed: int | None = None) -> StorageError:
    """A :class:`StorageError` that names the path and, for a full disk, the space needed and free."""
    return _storage_error(error, path, what, needed, fix="or train into an --output-dir on another disk (the previous "
                          "checkpoint is intact, so --resume continues from it)")


def _bytes_needed(accelerator: Accelerator, root: Path) -> int:
    """The size of the newest complete checkpoint, else the bytes of the prepared models and optimizer states."""
    previous = complete_checkpoints(root)
    if previous:
        return sum(path.stat().st_size for path in previous[-1].rglob("*") if path.is_file())
    total = 0
    for model in getattr(accelerator, "_models", []):
        total += sum(tensor.numel() * tensor.element_size() for tensor in model.state_dict().values())
    for optimizer in getattr(accelerator, "_optimizers", []):
        for state in optimizer.state_dict().get("state", {}).values():
            total += sum(value.numel() * value.element_size() for value in state.values() if torch.is_tensor(value))
    return total


def _fsync_directory(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _step_of(path: Path) -> int:
    try:
        return int(path.name.split("-")[1])
    except (IndexError, ValueError):
        return -1


def complete_checkpoints(root: Path) -> list[Path]:
    """Finished checkpoints (renamed into place, with a ``trainer_state.json``), oldest first."""
    if not root.is_dir():
        return []
    found = [path for path in root.glob("step-*") if _step_of(path) >= 0 and (path / STATE_FILE).is_file()]
    return sorted(found, key=_step_of)


def checkpoint_run_id(checkpoint: Path) -> str | None:
    """The run id recorded in a checkpoint (``""`` for checkpoints written before run ids), or
    ``None`` when its ``trainer_state.json`` cannot be read."""
    try:
        data = json.loads((Path(checkpoint) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return str(data.get("run_id", "")) if isinstance(data, dict) else None


def prune_checkpoints(root: Path, keep: int, run_id: str | None = None) -> None:
    """Remove all but the ``keep`` newest checkpoints written by run ``run_id``; checkpoints of
    other runs and unreadable ones are never touched. ``run_id=None`` means checkpoints written
    before run ids (``""``)."""
    own = [path for path in complete_checkpoints(root) if checkpoint_run_id(path) == (run_id or "")]
    pruned = own[:-keep] if keep > 0 else []
    for path in pruned:
        shutil.rmtree(path, ignore_errors=True)
    if pruned and (root.parent / MANIFEST_FILE).is_file():
        update_manifest(root.parent, remove=[relative_to_run(root.parent, path) for path in pruned])


def remove_stale_staging(root: Path) -> list[str]:
    """Remove the staging folders (a checkpoint's, the final model's) that the run's manifest records:
    called under the folder's lock, so they were left by a process that is gone. Returns their names."""
    output_dir = Path(root).parent
    manifest = read_manifest(output_dir)
    if manifest is None:
        return []
    stale = [name for name, entry in manifest.entries.items()
             if entry == TREE and Path(name).name.startswith(".") and ".tmp-" in Path(name).name]
    for name in stale:
        logger.warning("removing the unfinished %s left by an interrupted run", output_dir / name)
        shutil.rmtree(output_dir / name, ignore_errors=True)
    if stale:
        update_manifest(output_dir, remove=stale)
    return stale


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = complete_checkpoints(checkpoint_root(output_dir))
    return found[-1] if found else None


def checkpoint_problems(checkpoint: Path) -> list[str]:
    """What is wrong with a checkpoint folder (empty when it is intact and can be resumed).

    Checks that ``trainer_state.json`` and ``recipe.yaml`` parse, that the model weights, the
    optimizer state and the RNG states are present, that every ``*.safetensors`` file is as long
    as its header says and that ``*.bin`` / ``*.pt`` archives have their index (a truncated file
    has not).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        return [f"{checkpoint} is not a folder"]
    problems = []
    try:
        state = json.loads((checkpoint / STATE_FILE).read_text())
        if not isinstance(state, dict) or not isinstance(state.get("state", {}).get("global_step"), int):
            problems.append(f"{STATE_FILE} has no state.global_step")
    except FileNotFoundError:
        problems.append(f"{STATE_FILE} is missing")
    except (OSError, ValueError, AttributeError) as error:
        problems.append(f"{STATE_FILE} does not parse ({error})")
    try:
        if not isinstance(yaml.safe_load((checkpoint / RECIPE_FILE).read_text()), dict):
            problems.append(f"{RECIPE_FILE} is not a recipe")
    except FileNotFoundError:
        problems.append(f"{RECIPE_FILE} is missing")
    except (OSError, yaml.YAMLError) as error:
        problems.append(f"{RECIPE_FILE} does not parse ({type(error).__name__})")
    # FSDP2's sharded state dict (torch.distributed.checkpoint) is a folder per object, complete once
    # its .metadata is written: pytorch_model_fsdp_0/ and optimizer_0/ instead of the two files.
    for patterns, what in ((("model*.safetensors", "pytorch_model_fsdp_*/.metadata"),
                            "model.safetensors is missing (the model weights)"),
                           (("optimizer*.bin", "optimizer_*/.metadata"), "optimizer.bin is missing (the optimizer state)"),
                           (("random_states_*.pkl",), "random_states_0.pkl is missing (the RNG states)")):
        if not any(list(checkpoint.glob(pattern)) for pattern in patterns):
            problems.append(what)
    for path in sorted(checkpoint.glob("*.safetensors")):
        problem = _safetensors_problem(path)
        if problem:
            problems.append(f"{path.name} {problem}")
    for path in sorted([*checkpoint.glob("*.bin"), *checkpoint.glob("*.pt")]):
        if path.stat().st_size == 0 or (zipfile.is_zipfile(path) is False and _looks_like_zip_start(path)):
            problems.append(f"{path.name} is empty or truncated")
    for path in sorted(checkpoint.glob("*.pkl")):
        if path.stat().st_size == 0:
            problems.append(f"{path.name} is empty")
    flagged = {problem.split(" ", 1)[0] for problem in problems}
    for path in sorted([*checkpoint.glob("*.bin"), *checkpoint.glob("*.pt"), *checkpoint.glob("*.pkl")]):
        problem = None if path.name in flagged else _pickle_problem(path)
        if problem:
            problems.append(f"{path.name} {problem}")
    return problems


def _pickle_problem(path: Path) -> str | None:
    """None when ``path`` loads as Accelerate's resume loads it: a ``torch.save`` archive read by torch's
    weights-only unpickler (memory-mapped, so the tensors are not read). A pickle that would run code,
    or any file that is not such an archive, is a problem named here instead of a traceback (or, for
    the RNG states, which Accelerate's ``load_state`` skips with a log line, a silently inexact resume)."""
    from accelerate.utils import load as accelerate_load  # weights_only=True, with Accelerate's numpy globals

    if not zipfile.is_zipfile(path):
        return "is not a torch.save archive (a plain pickle, which hfssl never loads: it could run code)"
    try:
        accelerate_load(str(path), map_location="cpu", mmap=True)
    except Exception as error:  # noqa: BLE001 - whatever torch.load refuses, the resume could not load
        # torch's message is a paragraph; the line that names the refused global (or operation) is the one to show.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = next((line for line in lines if "GLOBAL" in line or "nsupported" in line),
                      lines[0] if lines else type(error).__name__)
        return (f"cannot be loaded safely (torch.load with weights_only=True refused it: {reason[:200]}); it was not "
                "written by hfssl's checkpointing or was changed since")
    return None


def _looks_like_zip_start(path: Path) -> bool:
    """torch.save writes zip archives: one that starts like a zip but has no readable index is truncated."""
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _safetensors_problem(path: Path) -> str | None:
    """None when the file is as long as its header says; else what is wrong."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            header_length = struct.unpack("<Q", handle.read(8))[0]
            if header_length > size - 8:
                return "is truncated (its header is cut off)"
            header = json.loads(handle.read(header_length))
    except (struct.error, ValueError, UnicodeDecodeError):
        return "is not a safetensors file (unreadable header)"
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    expected = 8 + header_length + max(ends, default=0)
    if size < expected:
        return f"is truncated ({size} of {expected} bytes)"
    return None


def resolve_resume(output_dir: Path, resume: bool | str) -> Path | None:
    """Map ``--resume`` to a checkpoint: ``True``/``"latest"``/``"auto"``: the newest *intact*
    checkpoint in ``output_dir`` (``None`` when there is none; damaged newer ones are skipped with
    a warning that says why); a path: that checkpoint, which must be intact."""
    return find_resume_checkpoint(output_dir, resume)[0]


def find_resume_checkpoint(output_dir: Path, resume: bool | str) -> tuple[Path | None, list[str]]:
    """:func:`resolve_resume` with the damaged checkpoints it skipped (``"PATH (problems)"``)."""
    if not resume:
        return None, []
    if isinstance(resume, str) and resume not in ("true", "latest", "auto"):
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise FileNotFoundError(f"--resume {resume!r} is not a complete hfssl checkpoint (no {STATE_FILE} in it)")
        problems = checkpoint_problems(path)
        if problems:
            raise ResumeError(f"--resume-from {resume!r}: the checkpoint is damaged ({'; '.join(problems)}); "
                              "choose another one in the same checkpoints/ folder")
        return path, []
    skipped = []
    for path in reversed(complete_checkpoints(checkpoint_root(output_dir))):
        problems = checkpoint_problems(path)
        if not problems:
            return path, skipped
        skipped.append(f"{path} ({'; '.join(problems)})")
        logger.warning("checkpoint %s is damaged (%s): trying the one before it", path, "; ".join(problems))
    if skipped:
        raise ResumeError(f"--resume: no intact checkpoint in {checkpoint_root(output_dir)}: "
                          f"{', '.join(skipped)}. Start a new run in another --output-dir, or here with --overwrite")
    return None, []


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


def load_callback_state(checkpoint: Path, process_index: int) -> dict[str, torch.Tensor]:
    """The training callbacks' state this process saved in ``checkpoint`` (process 0's when the process count
    changed); empty when the checkpoint holds none (the callbacks were off when it was written)."""
    for index in (process_index, 0):
        path = Path(checkpoint) / CALLBACK_STATE_FILE.format(process=index)
        if path.is_file():
            return load_file(str(path))
    return {}


def check_new_run_directory(output_dir: Path, overwrite: bool, restart: bool = False) -> bool:
    """A new run may start in ``output_dir`` when it is new or empty (hfssl's bookkeeping files aside).

    ``overwrite``: also in a folder whose manifest records an earlier run (its recorded files are
    removed at the start, :func:`clear_previous_run`; every other file is kept). ``restart``
    (``--resume-or-start`` without a checkpoint): also in a folder that holds only the start files of
    a run killed before its first checkpoint. A folder without a manifest is never cleared: one
    holding files is refused, also with ``overwrite`` (:func:`foreign_folder_error`).

    Returns whether recorded files must be removed first. Raises :class:`RunDirectoryError` naming what
    is there and the ways on.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise RunDirectoryError(f"--output-dir {str(output_dir)!r} is a file, not a folder; choose a folder")
    manifest = read_manifest(output_dir)
    present = sorted(foreign_entries(output_dir, None))
    if manifest is None:
        if not present and not _has_folders(output_dir):
            return False
        raise foreign_folder_error(output_dir, overwrite, resume=False)
    if not present:
        return bool(manifest.entries)
    if overwrite:
        return True
    if restart and started_only(output_dir):
        return True
    shown = ", ".join(present[:6]) + (", ..." if len(present) > 6 else "")
    has_run = latest_checkpoint(output_dir) is not None
    if not has_run and started_only(output_dir):
        raise RunDirectoryError(
            f"--output-dir {str(output_dir)!r} holds a run that stopped before its first checkpoint ({shown}); nothing "
            "was changed. Start it again there with --resume-or-start (or --overwrite), or train into a new --output-dir")
    raise RunDirectoryError(
        f"--output-dir {str(output_dir)!r} already holds another run ({shown}); nothing was changed. "
        + ("Continue that run with --resume, t" if has_run else "T")
        + "rain into a new --output-dir, or pass --overwrite to delete the files that run recorded in "
        f"{MANIFEST_FILE} (checkpoints, model, recipe, card, encoder, results, logs) and start over (other files are kept)"
    )


def _has_folders(folder: Path) -> bool:
    return folder.is_dir() and any(path.is_dir() for path in folder.iterdir())


def started_only(output_dir: Path) -> bool:
    """Whether ``output_dir``'s manifest records a run killed before its first checkpoint: nothing but
    its start files (the recipe, logs, the checkpoints folder and staging folders) and no checkpoint."""
    manifest = read_manifest(output_dir)
    if manifest is None or manifest.kind != RUN or complete_checkpoints(checkpoint_root(output_dir)):
        return False
    for name, entry in manifest.entries.items():
        top = name.split("/")[0]
        staging = name.startswith("checkpoints/.tmp-") or top.startswith(".tmp-")
        if entry != DIR and top not in START_ENTRIES[:2] and not staging:
            return False
    return True


def foreign_folder_error(output_dir: Path, overwrite: bool, resume: bool) -> RunDirectoryError:
    """The refusal for a folder that holds files but no manifest: another program's folder, or a run of
    an hfssl version before manifests (which only ``--resume`` may continue)."""
    present = foreign_entries(output_dir, None) or sorted(path.name for path in Path(output_dir).iterdir())
    shown = ", ".join(present[:6]) + (", ..." if len(present) > 6 else "")
    if is_legacy_run(output_dir):
        return RunDirectoryError(
            f"--output-dir {str(output_dir)!r} holds a run of an earlier hfssl version ({shown}), which kept no record "
            f"of the files it wrote ({MANIFEST_FILE}); hfssl deletes only files it recorded, so nothing was changed. "
            "Continue that run with --resume, train into a new --output-dir, or delete the folder yourself "
            f"(rm -r {str(output_dir)!r}) to start over there")
    return RunDirectoryError(
        f"--output-dir {str(output_dir)!r} already holds files that hfssl did not write ({shown}); nothing was "
        "changed. Train into a new --output-dir, or empty that folder yourself; --overwrite does not delete them either: "
        f"it removes only the files an hfssl run recorded in {MANIFEST_FILE}")


def is_legacy_run(output_dir: Path) -> bool:
    """A run folder of an hfssl version before manifests: a full hfssl model, or a checkpoint of one."""
    return read_manifest(output_dir) is None and (is_hfssl_run(output_dir) or latest_checkpoint(output_dir) is not None)


def clear_previous_run(output_dir: Path) -> list[str]:
    """Remove exactly what ``output_dir``'s manifest records (``--overwrite``, a restart); returns the
    removed entries. Folders that still hold other files are kept and named in a warning."""
    manifest = read_manifest(output_dir)
    if manifest is None:
        return []
    removed, kept = remove_recorded(output_dir, manifest)
    if kept:
        logger.warning("kept %s in %s: they hold files hfssl did not write", ", ".join(kept), output_dir)
    return removed
