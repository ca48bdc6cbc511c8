"""Where a run starts: a new run in a new (or empty) folder, or ``--resume`` of the run there.

Checked on every process before anything is loaded, built or written:

* a new run needs ``--output-dir`` to be new or empty; a folder holding another run or foreign
  files is refused with the three ways on (``--resume``, another folder, ``--overwrite``);
  ``overwrite=True`` deletes hfssl's own outputs there first and keeps every other file
  (:func:`hfssl.training.checkpoint.check_new_run_directory`);
* ``resume=True`` (``--resume``) needs an intact checkpoint and is an error without one;
  ``resume="auto"`` (``--resume-or-start``) continues when there is one and starts a new run
  otherwise; a path (``--resume-from``) names the checkpoint;
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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfssl.errors import ResumeError, RunDirectoryError
from hfssl.recipe import Recipe
from hfssl.settings import load_yaml
from hfssl.training.checkpoint import (
    RECIPE_FILE,
    check_new_run_directory,
    checkpoint_root,
    new_run_id,
    read_trainer_state,
    find_resume_checkpoint,
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
    overwrite: bool = False
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
            where = "does not exist" if not output_dir.exists() else f"holds no checkpoint ({checkpoint_root(output_dir)})"
            raise ResumeError(f"--resume: {str(output_dir)!r} {where}, so there is nothing to continue. Check "
                              "--output-dir, drop --resume to start a new run, or pass --resume-or-start to continue "
                              "when there is a checkpoint and start otherwise")
        check_new_run_directory(output_dir, overwrite)
        return RunStart(run_id=new_run_id(), overwrite=overwrite)
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


def recipe_differences(checkpoint: Path, recipe: Recipe) -> tuple[list[str], list[str]]:
    """``(allowed, refused)`` differences ``key: old -> new`` between a checkpoint's recipe and ``recipe``."""
    # Read as recipes are read (scientific notation as floats), so a recipe saved by an older hfssl
    # with "2e-1" for a number compares equal to the same number now.
    saved = load_yaml((Path(checkpoint) / RECIPE_FILE).read_text()) or {}
    current = load_yaml(recipe.to_yaml()) or {}
    old, new = _flatten(saved), _flatten(current)
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
