"""How this process was launched, checked before any work: every launch form either trains on all the
processes it asked for or is refused, naming the form to use.

The forms (README.md, "Several processes" and "Beyond one machine"):

| form | processes | result |
|---|---|---|
| ``hfssl train`` / ``python -m hfssl.train`` | 1 | trains |
| ``torchrun --nproc_per_node N -m hfssl.train`` (one or several machines) | N per machine | trains |
| ``accelerate launch --multi_gpu --num_processes N`` (``ACCELERATE_USE_CPU=1`` on a CPU) | N | trains (its torchrun launcher) |
| ``accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml`` | 2 | trains (its torchrun launcher) |
| ``accelerate launch --config_file recipes/accelerate/multi_node_*.yaml`` | per machine | trains |
| ``accelerate launch --num_processes N`` on a machine without GPUs | **1** | refused |
| ``accelerate launch`` with a config whose ``distributed_type`` is ``MULTI_CPU``, without mpirun | **1** | refused |

The last two are Accelerate's *simple* launcher: without GPUs (where ``--num_processes N`` is not turned
into ``--multi_gpu``) and without an MPI host file it starts **one** process, yet it sets ``MASTER_ADDR``
and ``MASTER_PORT`` because several processes (or machines) were asked for. That process would train
alone on the whole data, silently, with a loss and a batch that are not the ones asked for: it is refused.
An MPI launch (``mpirun``, an Accelerate config with ``mpirun_hostfile``) sets the MPI world size and is
accepted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hfssl.errors import UsageError
from hfssl.recipe import Recipe

__all__ = ["LaunchError", "WORLD_SIZE_VARIABLES", "check_launch", "launch_summary", "launched_world_size",
           "machine_count"]

#: Variables that give the number of processes: torchrun (and Accelerate's torchrun launcher), then MPI.
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")

#: The launch forms that start several processes on a machine without GPUs, for the refusal's message.
WORKING_FORMS = (
    "accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml -m hfssl.train RECIPE ...",
    "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N --num_machines 1 -m hfssl.train RECIPE ...",
    "torchrun --nproc_per_node N -m hfssl.train RECIPE ...",
)


class LaunchError(UsageError):
    """A launch that would not run the processes it asked for (exit code 2, before any work)."""


def launched_world_size(environ: Mapping[str, str] | None = None) -> int | None:
    """The number of processes the launcher started, or ``None`` when no launcher said (one process)."""
    environ = os.environ if environ is None else environ
    for name in WORLD_SIZE_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def machine_count(num_processes: int, environ: Mapping[str, str] | None = None) -> int:
    """Machines of the run: torchrun's ``WORLD_SIZE / LOCAL_WORLD_SIZE`` (1 without a launcher)."""
    environ = os.environ if environ is None else environ
    local = environ.get("LOCAL_WORLD_SIZE", "").strip()
    if local.isdigit() and int(local) > 0:
        return max(1, num_processes // int(local))
    return 1


def check_launch(environ: Mapping[str, str] | None = None) -> None:
    """Refuse a process that Accelerate's simple launcher started alone although several processes or
    machines were asked for (see the module's table); anything else passes.

    The signature: ``accelerate launch`` set its ``ACCELERATE_MIXED_PRECISION`` and, because more than one
    process or machine was asked for, ``MASTER_ADDR`` and ``MASTER_PORT``, but no launcher set a world size
    (torchrun's ``WORLD_SIZE``, an MPI size).
    """
    environ = os.environ if environ is None else environ
    accelerate = "ACCELERATE_MIXED_PRECISION" in environ
    several = "MASTER_ADDR" in environ and "MASTER_PORT" in environ
    if not (accelerate and several) or launched_world_size(environ) is not None:
        return
    forms = "\n".join(f"  {form}" for form in WORKING_FORMS)
    raise LaunchError(
        "accelerate launch started this process alone although several processes or machines were asked for "
        "(it set MASTER_ADDR/MASTER_PORT but no WORLD_SIZE): without GPUs, `accelerate launch --num_processes N` "
        "and a config file with `distributed_type: MULTI_CPU` start one process unless mpirun runs them "
        "(mpirun_hostfile). Nothing was trained. Launch several processes with one of:\n" + forms
        + "\n(on one machine: --num_processes/--nproc_per_node; across machines see README's \"Beyond one machine\")")


def launch_summary(recipe: Recipe, num_processes: int, num_machines: int, steps_per_epoch: int | None,
                   total_steps: int, group_lrs: Mapping[str, float]) -> str:
    """What the batch and the learning rate are under this launch, as YAML comment lines for the head of
    the run's ``recipe.yaml`` (and its checkpoints' copies): comments, so reading the recipe back (a
    resume, ``hfssl card``) is unchanged.

    What the engine does, recorded rather than changed: ``train.batch_size`` is per process (each process's
    DataLoader yields that many examples; Accelerate's ``split_batches`` is off), so one optimiser step sees
    ``batch_size x processes x gradient_accumulation_steps`` examples; ``optim.lr`` is applied as written,
    never scaled with the process count or the batch; an epoch is the data split across the processes, so
    ``train.epochs`` gives fewer steps with more processes.
    """
    accumulation = recipe.train.gradient_accumulation_steps
    per_process = recipe.train.batch_size
    global_batch = per_process * num_processes * accumulation
    machines = f"{num_machines} machine{'s' if num_machines != 1 else ''}"
    groups = ", ".join(f"{name} {lr:.6g}" for name, lr in group_lrs.items())
    split = f" (each process reads 1/{num_processes} of the data)" if num_processes > 1 else ""
    epoch = (f"{steps_per_epoch} optimiser steps per epoch{split}" if steps_per_epoch is not None
             else "streaming data: the length is train.max_steps")
    lines = [
        f"launch: {num_processes} process{'es' if num_processes != 1 else ''} on {machines} "
        "(written by hfssl train; comments, not read back)",
        f"  train.batch_size {per_process} is per process: the global batch is {global_batch} examples per "
        f"optimiser step ({per_process} x {num_processes} processes x {accumulation} gradient_accumulation_steps)",
        f"  optim.lr {recipe.optim.lr:.6g} is applied as written, not scaled with the processes or the batch; "
        f"peak rate per parameter group: {groups}",
        f"  length: {epoch}; {total_steps} steps in all",
    ]
    return "".join(f"# {line}\n" for line in lines)
