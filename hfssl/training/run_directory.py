"""Where a run starts: a new run in a new (or empty) folder, or ``--resume`` of the run there.

Checked on every process before anything is loaded, built or written:

* a new run needs ``--output-dir`` to be new or empty; a folder holding another run is refused
  with the three ways on (``--resume``, another folder, ``--overwrite``); ``overwrite=True``
  deletes exactly the files the earlier run recorded in its manifest (:mod:`hfssl.files`) and
  keeps every other file. A folder without a manifest is never cleared: files of another program
  are refused, also with ``--overwrite``; a run of an hfssl version before manifests (a full hfssl
  model or a checkpoint, and no manifest) may be continued with ``--resume`` (its checkpoints are
  then recorded) but not overwritten: the message names ``rm -r`` as the way to start over there
  (:func:`hfssl.training.checkpoint.check_new_run_directory`);
* ``resume=True`` (``--resume``) needs an intact checkpoint and is an error without one (a run
  killed before its first checkpoint is named as such, with ``--resume-or-start``);
  ``resume="auto"`` (``--resume-or-start``) continues when there is one and starts a new run
  otherwise, also in a folder that holds only the start files its manifest records of a run killed
  before its first checkpoint (they are removed first); a path (``--resume-from``) names the
  checkpoint;
* a resumed recipe may differ from the checkpoint's only where that is safe: the length
  (``train.max_steps`` / ``train.epochs``, never below the step reached), logging, checkpoint
  cadence, online kNN, evaluation, the hub section and the optimiser's settings (a lower
  ``optim.lr`` after a non-finite loss). A changed ``method``, ``model``, ``data`` (but
  ``data.num_workers``), ``views``, ``optim.name``, ``train.seed``, ``train.batch_size``,
  ``train.gradient_accumulation_steps``, ``train.mixed_precision``, ``train.channels_last`` or
  ``train.compile`` / ``train.compile_mode`` (each changes the rounding of every step, so the
  resumed run would not follow the uninterrupted one bit for bit), or ``optim.parameter_groups``
  (the optimiser's groups and their saved moments must match), would continue another
  experiment, so it is refused with the differing keys.

One process per run folder: :func:`run_folder` holds the folder's lock (:func:`hfssl.files.folder_lock`)
and records what the command writes there; :func:`guard_run_folder` wraps the trainer's ``train`` with
it on the main process (the process Accelerate makes the main one: global rank 0), so the checks of
:func:`plan_run` and every write happen under the lock. The final model goes through a staging
folder and is moved into place with the recipe last (:func:`save_final_model`), so a full disk
leaves the earlier model and the recipe beside it as they were.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hfssl.errors import ResumeError, RunDirectoryError
from hfssl.files import (
    DIR,
    apply_umask,
    atomic_write_text,
    FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    RUN,
    TREE,
    folder_lock,
    foreign_entries,
    make_staging_directory,
    read_manifest,
    recording,
    storage_error,
    update_manifest,
)
from hfssl.recipe import Recipe
from hfssl.registry import is_hfssl_run
from hfssl.settings import load_yaml
from hfssl.training.checkpoint import (
    RECIPE_FILE,
    check_new_run_directory,
    checkpoint_root,
    clear_previous_run,
    complete_checkpoints,
    foreign_folder_error,
    is_legacy_run,
    new_run_id,
    read_trainer_state,
    find_resume_checkpoint,
    remove_stale_staging,
    started_only,
)

logger = logging.getLogger(__name__)

#: Recipe keys (dotted; a trailing dot for a whole section) a resumed run may not change.
FIXED_ON_RESUME = ("method", "model.", "data.", "views.", "optim.name", "optim.parameter_groups.", "train.seed", "train.batch_size",
                   "train.gradient_accumulation_steps", "train.mixed_precision", "train.channels_last", "train.compile",
                   "train.compile_mode")
#: Exceptions inside the fixed sections: they do not change what is computed.
FREE_ON_RESUME = ("data.num_workers",)


@dataclass
class RunStart:
    """How a run starts: ``checkpoint`` is ``None`` for a new run; ``changes`` lists the
    ``key: old -> new`` differences of a resumed recipe from the checkpoint's."""

    run_id: str
    checkpoint: Path | None = None
    step: int = 0
    changes: list[str] = field(default_factory=list)
    overwrite: bool = False  # remove the files the folder's manifest records before starting
    damaged: list[str] = field(default_factory=list)


def plan_run(recipe: Recipe, output_dir: Path, resume: bool | str, overwrite: bool) -> RunStart:
    """Check the output folder and the checkpoint before any work; see the module docstring."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise RunDirectoryError(f"--output-dir {str(output_dir)!r} is a file, not a folder; choose a folder")
    if resume and overwrite:
        raise ResumeError("--overwrite starts a new run and --resume continues one: pass only one of them")
    checkpoint, damaged = find_resume_checkpoint(output_dir, resume)
    if checkpoint is None:
        if resume is True or resume in ("true", "latest"):
            if output_dir.is_dir() and started_only(output_dir):
                where = ("holds a run that stopped before its first checkpoint (only its start files, which its "
                         f"{MANIFEST_FILE} records)")
            else:
                where = ("does not exist" if not output_dir.exists()
                         else f"holds no checkpoint ({checkpoint_root(output_dir)})")
            raise nothing_to_resume(output_dir, where)
        clear = check_new_run_directory(output_dir, overwrite, restart=resume == "auto")
        return RunStart(run_id=new_run_id(), overwrite=clear)
    trainer_state = read_trainer_state(checkpoint)
    step = int(trainer_state["state"]["global_step"])
    changes, refused = recipe_differences(checkpoint, recipe)
    if refused:
        raise ResumeError(f"--resume: the recipe differs from the one of checkpoint {checkpoint} in "
                          f"{'; '.join(refused)}. A resumed run keeps its model, data and batch; undo these "
                          "overrides, or start a new run in another --output-dir")
    if recipe.train.max_steps is not None and recipe.train.max_steps < step:
        raise ResumeError(f"--resume: train.max_steps={recipe.train.max_steps} is below step {step} of checkpoint "
                          f"{checkpoint}; set train.max_steps to at least {step}")
    run_id = str(trainer_state.get("run_id", ""))
    return RunStart(run_id=run_id, checkpoint=checkpoint, step=step, changes=changes, damaged=damaged)


def nothing_to_resume(output_dir: Path, where: str) -> ResumeError:
    return ResumeError(f"--resume: {str(output_dir)!r} {where}, so there is nothing to continue. Check "
                       "--output-dir, drop --resume to start a new run, or pass --resume-or-start to continue "
                       "when there is a checkpoint and start otherwise")


def recipe_differences(checkpoint: Path, recipe: Recipe) -> tuple[list[str], list[str]]:
    """``(allowed, refused)`` differences ``key: old -> new`` between a checkpoint's recipe and ``recipe``."""
    # Read as recipes are read (scientific notation as floats), so a recipe saved by an older hfssl
    # with "2e-1" for a number compares equal to the same number now.
    saved = load_yaml((Path(checkpoint) / RECIPE_FILE).read_text()) or {}
    current = load_yaml(recipe.to_yaml()) or {}
    old, new = _flatten(saved), _flatten(current)
    if new.get("train.mixed_precision") == "auto":  # a resumed auto run keeps its precision (hfssl.training.precision)
        for key in ("train.mixed_precision", "train.mixed_precision_reason"):
            if key in old:
                new[key] = old[key]
            else:
                new.pop(key, None)
    allowed, refused = [], []
    for key in sorted(set(old) | set(new)):
        if old.get(key, "(unset)") == new.get(key, "(unset)"):
            continue
        text = f"{key}: {old.get(key, '(unset)')!r} -> {new.get(key, '(unset)')!r}"
        fixed = any(key == name or (name.endswith(".") and key.startswith(name)) for name in FIXED_ON_RESUME)
        (refused if fixed and key not in FREE_ON_RESUME else allowed).append(text)
    return allowed, refused


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    if not isinstance(values, dict):
        return {prefix.rstrip("."): values}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# ---------------------------------------------------------------- the folder while a run writes it

T = TypeVar("T")


def is_main_process(accelerator: Any = None) -> bool:
    """Whether this is the run's main process, as Accelerate decides it (global rank 0), also before
    the Accelerator exists: the launchers set ``RANK`` (torchrun, ``accelerate launch``) or their MPI rank."""
    if accelerator is not None:
        return bool(accelerator.is_main_process)
    from accelerate import PartialState

    if PartialState._shared_state:
        return bool(PartialState().is_main_process)
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):  # torchrun, then MPI launchers
        if os.environ.get(name, "").strip().isdigit():
            return int(os.environ[name]) == 0
    return True


def check_not_foreign(output_dir: Path, resume: bool | str, overwrite: bool) -> None:
    """Refuse a folder that holds files but no manifest before anything (the lock file) is put in it;
    an earlier hfssl run without a manifest is let through to ``--resume`` alone."""
    output_dir = Path(output_dir)
    if (resume is True or resume in ("true", "latest")) and not output_dir.exists():
        raise nothing_to_resume(output_dir, "does not exist")  # before the lock would create it
    _refuse_part_of_another_folder(output_dir)
    manifest = read_manifest(output_dir) if (output_dir / MANIFEST_FILE).is_file() else None
    if manifest is not None and manifest.kind != RUN:
        raise RunDirectoryError(f"--output-dir {str(output_dir)!r} holds an hfssl {manifest.kind}, not a run; nothing "
                                "was changed. Train into a new --output-dir")
    if not output_dir.is_dir() or (output_dir / MANIFEST_FILE).is_file():
        return
    if not [path for path in output_dir.iterdir() if path.name != LOCK_FILE]:
        return
    if is_legacy_run(output_dir):
        if resume and not overwrite:
            return  # continued by plan_run, which also refuses what cannot be continued
        raise foreign_folder_error(output_dir, overwrite, resume=False)
    if resume is True or resume in ("true", "latest"):
        shown = ", ".join(foreign_entries(output_dir, None)[:6])
        raise ResumeError(f"--resume: {str(output_dir)!r} holds no hfssl run (only files hfssl did not write: {shown}), "
                          "so there is nothing to continue. Check --output-dir")
    raise foreign_folder_error(output_dir, overwrite, resume=bool(resume))


def _refuse_part_of_another_folder(output_dir: Path) -> None:
    """A run never goes inside what another run or export recorded as its own (a checkpoint, ``encoder/``)."""
    target = output_dir.absolute()
    for folder in target.parents:
        if not (folder / MANIFEST_FILE).is_file():
            continue
        manifest = read_manifest(folder)
        relative = target.relative_to(folder).as_posix()
        parts = relative.split("/")
        owned = [name for name, entry in manifest.entries.items() if entry in (TREE, FILE)
                 and name in ("/".join(parts[:index]) for index in range(1, len(parts) + 1))]
        own = read_manifest(target) if (target / MANIFEST_FILE).is_file() else None
        if owned == [relative] and own is not None and own.kind == RUN:
            continue  # a run inside a run (the fine-tuning protocol's RUN/finetune/<fraction>) is a run itself
        if owned or manifest.kind != RUN:
            raise RunDirectoryError(
                f"--output-dir {str(output_dir)!r} lies inside {'the export' if manifest.kind != RUN else 'the run'} "
                f"{str(folder)!r}, in {'what' if not owned else owned[0]} it recorded as its own; nothing was changed. "
                "Train into a folder outside it")


@contextmanager
def run_folder(output_dir: str | Path, resume: bool | str, overwrite: bool, what: str) -> Iterator[None]:
    """Hold ``output_dir``'s lock and record what is written there while the block runs (main process)."""
    output_dir = Path(output_dir)
    check_not_foreign(output_dir, resume, overwrite)
    with folder_lock(output_dir, what), recording(output_dir):
        yield


def guard_run_folder(train: Callable[..., T]) -> Callable[..., T]:
    """Wrap the trainer's ``train(recipe, output_dir, resume, accelerator, callbacks, overwrite, ...)``
    in :func:`run_folder` on the main process; the other processes train without it."""
    signature = inspect.signature(train)

    @functools.wraps(train)
    def guarded(*args: Any, **kwargs: Any) -> T:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = bound.arguments
        if not is_main_process(values.get("accelerator")):
            return train(*args, **kwargs)
        with run_folder(values["output_dir"], values.get("resume", False), values.get("overwrite", False),
                        "hfssl train"):
            return train(*args, **kwargs)

    return guarded


def write_run_start(output_dir: Path, recipe: Recipe, start: RunStart, trackers: bool = False,
                    recipe_text: str | None = None) -> None:
    """The first writes of a run (main process, under the lock): the recorded files of an earlier run
    removed (``--overwrite``, a restart), the manifest, stale staging folders removed, and for a new run
    the resolved recipe. A resumed run rewrites its recipe only beside its final model
    (:func:`save_final_model`), so ``recipe.yaml`` always describes the model it sits beside."""
    output_dir = Path(output_dir)
    if start.overwrite:
        removed = clear_previous_run(output_dir)
        if removed:
            logger.warning("removed the files the earlier run recorded in %s: %s", output_dir,
                           ", ".join(sorted(removed)[:12]) + (", ..." if len(removed) > 12 else ""))
    existed = output_dir.is_dir() and any(path.name != LOCK_FILE for path in output_dir.iterdir())
    output_dir.mkdir(parents=True, exist_ok=True)
    if start.checkpoint is None:
        manifest = read_manifest(output_dir)
        add = {"logs": TREE} if trackers and not (output_dir / "logs").exists() else {}
        update_manifest(output_dir, add=add, kind=RUN, run_id=start.run_id,
                        created=manifest.created if manifest else not existed)
        remove_stale_staging(checkpoint_root(output_dir))
        atomic_write_text(output_dir / RECIPE_FILE, recipe_text or recipe.to_yaml(), "recipe")
        update_manifest(output_dir, add={RECIPE_FILE: FILE})
        return
    if read_manifest(output_dir) is None:  # a run of an earlier hfssl version: record what is surely its own
        adopted = {"checkpoints": DIR, **{f"checkpoints/{path.name}": TREE
                                          for path in complete_checkpoints(checkpoint_root(output_dir))}}
        legacy_staging = [path for path in checkpoint_root(output_dir).glob(".tmp-step-*")
                          if len(path.name) == len(".tmp-step-00000000")]
        adopted.update({f"checkpoints/{path.name}": TREE for path in legacy_staging})
        update_manifest(output_dir, add=adopted, kind=RUN, run_id=start.run_id)
        logger.info("%s was written by an earlier hfssl version: recorded its checkpoints in %s", output_dir,
                    MANIFEST_FILE)
    remove_stale_staging(checkpoint_root(output_dir))


def save_final_model(output_dir: Path, model: Any, save_artifacts: Callable[[Path], None] | None,
                     recipe: Recipe, recipe_text: str | None = None,
                     extra_files: dict[str, str] | None = None) -> None:
    """Save the trained model, the data's artifacts and the recipe into a staging folder, then move
    them into ``output_dir``, the recipe last: a failure (a full disk) leaves the earlier model and
    its recipe as they were and raises :class:`hfssl.errors.StorageError` (exit code 4). ``recipe_text`` is
    the recipe as written (default ``recipe.to_yaml()``; the trainer puts the launch's comments first,
    :func:`hfssl.training.launch.launch_summary`); ``extra_files`` (name -> text) are saved beside them
    (the run's cost, ``training.json``: :mod:`hfssl.training.record`)."""
    output_dir = Path(output_dir)
    staging = make_staging_directory(output_dir, ".tmp-final-")
    name = staging.name
    update_manifest(output_dir, add={name: TREE})
    try:
        model.save_pretrained(staging, safe_serialization=True)
        if save_artifacts is not None:
            save_artifacts(staging)
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text)
        (staging / RECIPE_FILE).write_text(recipe_text or recipe.to_yaml())
    except (OSError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and "write" not in str(error).lower():
            raise
        shutil.rmtree(staging, ignore_errors=True)
        update_manifest(output_dir, remove=[name])
        needed = sum(tensor.numel() * tensor.element_size() for tensor in model.state_dict().values())
        raise storage_error(error, output_dir / "model.safetensors", "trained model", needed,
                            fix="the files that were there are unchanged, and the newest checkpoint holds the trained "
                                "weights: free space and run the same command with --resume") from error
    apply_umask(staging)  # safetensors writes 0600 whatever the umask
    moved = {}
    for path in sorted(staging.iterdir(), key=lambda item: item.name == RECIPE_FILE):
        target = output_dir / path.name
        if path.is_dir():
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            moved[path.name] = TREE
        else:
            moved[path.name] = FILE
        os.replace(path, target)
    staging.rmdir()
    update_manifest(output_dir, add=moved, remove=[name])


def check_output_path(output: str | Path, option: str, is_file: bool = True, file_name: str | None = None) -> None:
    """Refuse an output path that would replace a file or folder of an hfssl run or export: any existing
    file in one (but its ``eval_results.json``), a path inside a checkpoint or ``encoder/``, hfssl's
    bookkeeping files, or a folder where a file is asked for."""
    output = Path(output)
    if is_file and output.is_dir():
        example = f" (for example {str(output / file_name)!r})" if file_name else ""
        raise RunDirectoryError(f"{option} {str(output)!r} is a folder; give a file path{example}")
    if not is_file and output.exists() and not output.is_dir():
        raise RunDirectoryError(f"{option} {str(output)!r} is a file; give a folder")
    if output.name in (MANIFEST_FILE, LOCK_FILE):
        raise RunDirectoryError(f"{option} {str(output)!r} is hfssl's own record of a folder; give another path")
    for folder in output.absolute().parents:
        manifest = read_manifest(folder) if (folder / MANIFEST_FILE).is_file() else None
        if manifest is None and not is_hfssl_run(folder):
            continue
        relative = output.absolute().relative_to(folder).as_posix()
        inside = relative.split("/")[0] in ("checkpoints", "encoder") or (
            manifest is not None and any(relative.startswith(name + "/") for name, entry in manifest.entries.items()
                                         if entry == TREE))
        replaces = is_file and output.exists() and relative != "eval_results.json"
        if inside or replaces:
            raise RunDirectoryError(
                f"{option} {str(output)!r} would replace {'a file' if replaces else 'part'} of the hfssl "
                f"{'export' if manifest is not None and manifest.kind != RUN else 'run'} {str(folder)!r}; nothing was "
                "changed. Give a path outside it, or a new file name in it")
        return
