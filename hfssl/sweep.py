"""``hfssl sweep RECIPE --grid key=v1,v2 ... [--variant NAME key=v ...] [--seeds N] --output-dir DIR``.

The product of the variants (named sets of overrides: an augmentation ablation's ``crop``,
``crop+colour``, ``full``), the grid's values and the seeds, each point trained as its own run
in ``DIR/<name>`` by ``hfssl train ... --resume-or-start`` in a child process, one at a time, then
compared (:mod:`hfssl.compare`, ``DIR/report``).

* **Checked first.** Every point's recipe is loaded and checked (keys, values, protocols) before
  anything trains: a typo in a grid key fails at once, naming it.
* **Resumable.** ``DIR/sweep.json`` holds the plan and each run's status. Running the same command
  again skips the finished runs, resumes a killed one from its newest checkpoint and starts the
  rest; a changed plan (grid, variants, seeds, overrides or the recipe file's text) is refused,
  naming what changed, so one folder never mixes two experiments.
* **One process at a time on a CPU**; with several GPUs each run is started by Accelerate's launcher
  on all of them (``--launcher accelerate``, the default ``auto`` picks it when more than one CUDA
  device is visible). Each run's output goes to ``DIR/sweep-logs/<name>.log``.
* **Failures are results.** A run that fails (a diverged configuration, exit code 3) is recorded
  with its exit code and the sweep goes on; the command exits with the first failure's code. A run that
  missed its ``train.early_stop`` milestone (exit code 5) is recorded as ``stopped-early``, left out of
  the report and not trained again by a later call. Ctrl-C
  (or SIGTERM / SIGUSR1, forwarded to the running child) stops the run at its step boundary with a
  checkpoint, and the sweep with it: the same command continues.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hfssl.compare import compare
from hfssl.errors import EXIT_EARLY_STOP, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USER_SIGNAL
from hfssl.files import atomic_write_text, folder_lock
from hfssl.pipeline import load_training_recipe
from hfssl.settings import RecipeError

logger = logging.getLogger(__name__)

PLAN_FILE = "sweep.json"
LOG_FOLDER = "sweep-logs"
REPORT_FOLDER = "report"
_STOPS = (EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USER_SIGNAL)


@dataclass
class SweepRun:
    name: str
    overrides: list[str]
    status: str = "pending"  # pending | done | stopped-early | failed | interrupted
    exit_code: int | None = None
    seconds: float | None = None


@dataclass
class SweepPlan:
    recipe: str
    recipe_sha256: str
    overrides: list[str]
    variants: list[tuple[str, list[str]]]
    grid: list[tuple[str, list[str]]]
    seeds: list[int]
    runs: list[SweepRun] = field(default_factory=list)

    def identity(self) -> dict[str, Any]:
        """What makes two plans the same experiment (not the runs' statuses)."""
        return {"recipe": self.recipe, "recipe_sha256": self.recipe_sha256, "overrides": self.overrides,
                "variants": [list(item) for item in self.variants], "grid": [list(item) for item in self.grid],
                "seeds": self.seeds}

    def to_json(self) -> str:
        return json.dumps({**self.identity(), "runs": [asdict(run) for run in self.runs]}, indent=2) + "\n"


def split_values(text: str) -> list[str]:
    """``"0.1,0.3"`` -> ``["0.1", "0.3"]``; commas inside brackets or quotes stay (``[0.08,1.0],[0.2,1.0]``)."""
    values, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    if any(not value for value in values) or depth != 0 or quote:
        raise RecipeError(f"--grid values {text!r}: give comma-separated values, each a YAML value "
                          "(for example optim.lr=0.1,0.3 or views.crop_scale=[0.08,1.0],[0.2,1.0])")
    return values


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        key, equals, values = item.partition("=")
        if not equals or not key or "." not in key:
            raise RecipeError(f"--grid {item!r} must look like section.key=value1,value2 (for example "
                              "train.batch_size=64,128,256)")
        if key in (name for name, _ in grid):
            raise RecipeError(f"--grid names {key} twice; give all its values in one --grid {key}=v1,v2")
        grid.append((key, split_values(values)))
    return grid


def parse_variants(items: list[list[str]]) -> list[tuple[str, list[str]]]:
    variants: list[tuple[str, list[str]]] = []
    for item in items:
        name, overrides = item[0], item[1:]
        if "=" in name or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise RecipeError(f"--variant {' '.join(item)!r}: the first word is the variant's name (letters, digits, "
                              "'_', '.', '+', '-'), then its overrides: --variant crop views.color_jitter_prob=0")
        bad = [override for override in overrides if "=" not in override]
        if bad:
            raise RecipeError(f"--variant {name}: {bad[0]!r} is not an override section.key=value")
        if name in (existing for existing, _ in variants):
            raise RecipeError(f"--variant {name} is given twice")
        variants.append((name, overrides))
    return variants


def _slug(text: str) -> str:
    """A folder name: ``views.crop_scale=[0.2, 1.0]`` -> ``views.crop_scale=0.2-1.0``."""
    text = re.sub(r"[\[\]{}()'\" ]+", "", text).replace(",", "-")
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-")


def plan_runs(variants: list[tuple[str, list[str]]], grid: list[tuple[str, list[str]]],
              seeds: list[int]) -> list[SweepRun]:
    """Every point of variants x grid x seeds, named by what sets it apart."""
    runs = []
    for variant in (variants or [("", [])]):
        for values in itertools.product(*[[(key, value) for value in options] for key, options in grid]):
            for seed in (seeds or [None]):
                overrides = [*variant[1], *(f"{key}={value}" for key, value in values)]
                parts = ([variant[0]] if variant[0] else []) + [f"{key}={value}" for key, value in values]
                if seed is not None:
                    overrides.append(f"train.seed={seed}")
                    parts.append(f"seed={seed}")
                runs.append(SweepRun(_slug("_".join(parts)) or "run", overrides))
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise RecipeError("two points of the sweep get the same folder name; give values that differ in letters or "
                          "digits")
    return runs


def build_plan(recipe: str | Path, overrides: list[str], grid: list[tuple[str, list[str]]],
               variants: list[tuple[str, list[str]]], seeds: int | None) -> SweepPlan:
    recipe_path = Path(recipe)
    if not recipe_path.is_file():
        raise FileNotFoundError(f"recipe {recipe_path} does not exist: give a recipe YAML such as "
                                "recipes/simclr/digits.yaml")
    if not grid and not variants and not seeds:
        raise RecipeError("a sweep needs at least one --grid key=v1,v2, --variant or --seeds N")
    if seeds is not None and seeds < 1:
        raise RecipeError(f"--seeds must be at least 1, got {seeds}")
    if seeds and any(key == "train.seed" for key, _ in grid):
        raise RecipeError("give the seeds either with --seeds N or with --grid train.seed=..., not both")
    base = load_training_recipe(recipe_path, overrides)  # the base recipe and overrides, checked
    seed_values = [base.train.seed + index for index in range(seeds)] if seeds else []
    plan = SweepPlan(str(recipe_path), hashlib.sha256(recipe_path.read_bytes()).hexdigest(), list(overrides),
                     variants, grid, seed_values, plan_runs(variants, grid, seed_values))
    for run in plan.runs:  # every point's recipe, before anything trains
        try:
            load_training_recipe(recipe_path, [*overrides, *run.overrides])
        except (RecipeError, ValueError) as error:
            raise RecipeError(f"sweep point {run.name}: {error}") from error
    return plan


def _merge_saved(plan: SweepPlan, output_dir: Path) -> SweepPlan:
    """The saved statuses of the same plan; a different saved plan is refused."""
    saved_path = output_dir / PLAN_FILE
    if not saved_path.is_file():
        return plan
    saved = json.loads(saved_path.read_text())
    identity = json.loads(json.dumps(plan.identity()))
    changed = [key for key in identity if saved.get(key) != identity[key]]
    if changed:
        raise RecipeError(f"{output_dir} holds another sweep ({saved_path}: its {', '.join(changed)} differ from this "
                          "command's); give a new --output-dir, or the same command to continue that sweep")
    statuses = {run["name"]: run for run in saved.get("runs", [])}
    for run in plan.runs:
        if run.name in statuses:
            previous = statuses[run.name]
            run.status, run.exit_code, run.seconds = previous["status"], previous["exit_code"], previous["seconds"]
    return plan


def _finished(run_dir: Path) -> bool:
    """A run whose training and evaluation ended (the card is written last)."""
    return all((run_dir / name).is_file() for name in ("config.json", "recipe.yaml", "README.md"))


def launcher_command(launcher: str, num_processes: int | None) -> tuple[list[str], dict[str, str]]:
    """The command that trains one run and the environment it adds: ``hfssl train`` in one process, or
    Accelerate's launcher with ``num_processes`` processes on one machine (default: every CUDA device; on a
    machine without one, CPU processes: ``ACCELERATE_USE_CPU=1``, which the tests use)."""
    import torch

    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if launcher == "auto":
        launcher = "accelerate" if devices > 1 or (num_processes or 1) > 1 else "none"
    if launcher == "none":
        if num_processes and num_processes > 1:
            raise RecipeError("--num-processes needs --launcher accelerate (or auto)")
        return [sys.executable, "-m", "hfssl.cli", "train"], {}
    if launcher != "accelerate":
        raise RecipeError(f"--launcher must be auto, none or accelerate, got {launcher!r}")
    processes = num_processes or max(devices, 1)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--num_processes",
               str(processes)]
    if processes > 1:
        command.append("--multi_gpu")  # Accelerate's name for one process per device, CPU processes included
    return [*command, "-m", "hfssl.train"], ({} if devices else {"ACCELERATE_USE_CPU": "1"})


class _Forward:
    """While a child trains: SIGTERM and SIGUSR1 sent to the sweep reach the child too (Ctrl-C reaches the
    whole process group by itself), so the child checkpoints and stops."""

    def __init__(self) -> None:
        self.child: subprocess.Popen | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Forward:
        for signum in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if signum is not None:
                self.previous[signum] = signal.signal(signum, self._forward)
        return self

    def _forward(self, signum: int, frame: Any) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def run_sweep_plan(plan: SweepPlan, output_dir: str | Path, launcher: str = "auto",
                   num_processes: int | None = None, report: bool = True,
                   echo: Any = print) -> tuple[int, SweepPlan]:
    """Train every run of ``plan`` not finished yet (see the module docstring); returns the exit code (0, or
    the first failure's) and the plan with its statuses."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(output_dir, "hfssl sweep"):
        plan = _merge_saved(plan, output_dir)
        atomic_write_text(output_dir / PLAN_FILE, plan.to_json())
        (output_dir / LOG_FOLDER).mkdir(exist_ok=True)
        command, launch_env = launcher_command(launcher, num_processes)
        code = 0
        with _Forward() as forward:
            for index, run in enumerate(plan.runs, 1):
                run_dir = output_dir / run.name
                if (run.status == "done" and _finished(run_dir)) or run.status == "stopped-early":
                    echo(f"hfssl sweep: [{index}/{len(plan.runs)}] {run.name}: {run.status} earlier, skipped")
                    continue
                resumed = (run_dir / "checkpoints").is_dir()
                echo(f"hfssl sweep: [{index}/{len(plan.runs)}] {run.name}: "
                     f"{'resuming' if resumed else 'training'} ({' '.join(run.overrides)})")
                argv = [*command, plan.recipe, "--output-dir", str(run_dir), "--resume-or-start",
                        *plan.overrides, *run.overrides]
                started = time.perf_counter()
                with open(output_dir / LOG_FOLDER / f"{run.name}.log", "a") as log:
                    log.write(f"$ {' '.join(argv)}\n")
                    log.flush()
                    forward.child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **launch_env})
                    try:
                        returncode = forward.child.wait()
                    except KeyboardInterrupt:  # the child got the Ctrl-C too: it saves a checkpoint and stops
                        returncode = forward.child.wait()
                    forward.child = None
                run.exit_code = returncode
                run.seconds = round((run.seconds or 0.0) + time.perf_counter() - started, 3)
                run.status = ("done" if returncode == 0 and _finished(run_dir)
                              else "stopped-early" if returncode == EXIT_EARLY_STOP
                              else "interrupted" if returncode in _STOPS or returncode < 0 else "failed")
                atomic_write_text(output_dir / PLAN_FILE, plan.to_json())
                if run.status == "stopped-early":
                    echo(f"hfssl sweep: {run.name} stopped early: it missed train.early_stop's milestone (see "
                         f"{output_dir / LOG_FOLDER / (run.name + '.log')}); not trained again by this sweep")
                elif run.status != "done":
                    echo(f"hfssl sweep: {run.name} {run.status} (exit code {returncode}); its output: "
                         f"{output_dir / LOG_FOLDER / (run.name + '.log')}")
                    code = code or (returncode if returncode > 0 else 128 - returncode)
                if run.status == "interrupted":
                    echo("hfssl sweep: stopped; run the same command to continue from the newest checkpoints")
                    return code, plan
    done = [output_dir / run.name for run in plan.runs if run.status == "done"]
    if report and done:
        compare(done, output_dir / REPORT_FOLDER, title=f"hfssl sweep: {plan.recipe}")
    return code, plan


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML, e.g. recipes/simclr/fashion_mnist.yaml")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides shared by every run "
                                                     "(e.g. train.max_steps=500)")
    parser.add_argument("--output-dir", required=True,
                        help="the sweep's folder: one run folder per point, sweep.json (the plan and each run's "
                             "status), sweep-logs/ and report/ (hfssl compare)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="a recipe key and its values (YAML; commas inside [...] stay): the sweep is the product "
                             "of every --grid, e.g. --grid train.batch_size=64,128,256 --grid optim.lr=0.3,0.6")
    parser.add_argument("--variant", action="append", nargs="+", default=[], metavar="NAME_OR_OVERRIDE",
                        help="a named set of overrides, one axis of the product: --variant crop "
                             "views.color_jitter_prob=0 views.grayscale_prob=0 --variant full")
    parser.add_argument("--seeds", type=int, help="train every point with N seeds (train.seed, train.seed+1, ...); "
                        "the report shows their mean and standard deviation")
    parser.add_argument("--launcher", default="auto", choices=("auto", "none", "accelerate"),
                        help="how each run is started: auto (Accelerate's launcher when several CUDA devices are "
                             "visible or --num-processes is above 1, else one process), none, or accelerate")
    parser.add_argument("--num-processes", type=int, help="processes per run under Accelerate's launcher, on this "
                        "machine (default: one per CUDA device; CPU processes where there is none)")
    parser.add_argument("--dry-run", action="store_true", help="check every point's recipe and list the runs; "
                        "train nothing")


def run_sweep(args: argparse.Namespace) -> int:
    """``hfssl sweep``: the CLI's entry (see the module docstring)."""
    plan = build_plan(args.recipe, args.overrides, parse_grid(args.grid), parse_variants(args.variant), args.seeds)
    if args.dry_run:
        for run in plan.runs:
            print(f"{run.name}: {' '.join(run.overrides)}")
        print(f"hfssl sweep: {len(plan.runs)} runs checked; nothing trained (--dry-run)")
        return 0
    code, plan = run_sweep_plan(plan, args.output_dir, args.launcher, args.num_processes)
    done = sum(run.status == "done" for run in plan.runs)
    print(f"hfssl sweep: {done} of {len(plan.runs)} runs done; report: "
          f"{Path(args.output_dir) / REPORT_FOLDER / 'compare.html'}" if done else
          f"hfssl sweep: none of {len(plan.runs)} runs finished")
    return code


__all__ = ["SweepPlan", "SweepRun", "add_sweep_arguments", "build_plan", "launcher_command",
           "parse_grid", "parse_variants", "plan_runs", "run_sweep", "run_sweep_plan", "split_values"]
