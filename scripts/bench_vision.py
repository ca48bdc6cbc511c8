#!/usr/bin/env python
"""Vision benchmark: any vision method (SimCLR, BYOL, MAE, DINO, SwAV, ...) on the full Fashion-MNIST (60k train, 10k test).

For each method, in its own process (so peak memory is the method's own):

1. throughput: whole training steps (views on the device + forward + backward + optimizer) on
   real batches, after warm-up, as images/s (an image = one dataset image, whatever the number
   of views: DINO's and SwAV's 2 global + 4 local crops count once) and seconds/step, median over
   the timed steps;
2. training with ``train.max_steps`` set so that training takes the stated time budget at the
   measured speed (the cosine schedule then completes, unlike a run cut at a wall-clock limit);
3. the run's own evaluation: kNN (k=20, 200) and a linear probe on frozen features, next to the
   same protocols on raw pixels, on the same split;
4. for a method with a pretext task (capability ``pretext-task``: RotNet, jigsaw, relative patch
   position) whose recipe lists them, the run's ``pretext`` protocol (held-out pretext accuracy: the
   task built from the clean test images with a fixed seed) and ``layer-linear`` (a linear probe per
   stage), printed as a column and as a layer x accuracy table;
5. for a method that serves ``reconstruction`` (the autoencoders, the context encoder, MAE) whose recipe lists it, the held-out
   reconstruction error (per-pixel MSE in the loss's space, over the masked region where the loss has one,
   and PSNR in dB), printed as two columns.

Usage::

    python scripts/bench_vision.py --minutes 20 --methods simclr byol mae --output bench_vision.json
    python scripts/bench_vision.py --quick      # digits, seconds: a smoke test of the script
    # colour data (issue 22): colorization and split-brain on builtin:emoji, SimCLR on the same ResNet as reference
    python scripts/bench_vision.py --dataset emoji --methods colorization split_brain simclr --minutes 2 \
        --override train.mixed_precision=no "model.backbone_config={model_type: resnet, layer_type: basic, \
        embedding_size: 32, hidden_sizes: [32, 64, 128], depths: [1, 1, 1]}"
    # the accuracy-per-minute curve: budgets as fixed step counts from an idle machine's seconds per step
    # (measured with --throughput-only), so the runs themselves may share the cores, one thread each:
    python scripts/bench_vision.py --methods simclr --dataset fashion_mnist_tuned --minutes 5 10 20 \
        --seconds-per-step simclr=0.0575 --threads 1 --linear-c-grid 0.001 0.01 0.1 1 10
    python scripts/bench_vision.py --throughput-only --repeats 5   # step 1 only, repeated
    python scripts/bench_vision.py --throughput-only --methods simclr byol \\
        --modes fp32 bf16 bf16+cl bf16+cl+compile --repeats 7 --calibration-steps 6   # precision/layout/compile table
    python scripts/bench_vision.py --throughput-only --methods simclr byol --dataset fashion_mnist_wide \
        --modes fp32 auto+cl fp32+cl bf16+cl --repeats 5   # train.mixed_precision: auto on this CPU (issue 28)

``--throughput-only`` also runs against an older checkout (``PYTHONPATH=../old-checkout``), whose
API it detects, so that two commits can be measured side by side in one session.

Results are printed as a Markdown table (paste into BENCHMARKS.md with the command).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: ``--modes`` of ``--throughput-only``: what each sets (the recipe keys of hfssl.training.acceleration).
#: fp32 is explicit everywhere: the recipes' default, ``auto``, is bf16 on CPUs with native bf16.
MODES = {
    "fp32": {"mixed_precision": "no"},
    "bf16": {"mixed_precision": "bf16"},
    "auto": {"mixed_precision": "auto"},
    "fp32+cl": {"mixed_precision": "no", "channels_last": True},
    "bf16+cl": {"mixed_precision": "bf16", "channels_last": True},
    "auto+cl": {"mixed_precision": "auto", "channels_last": True},  # the *_wide recipes' setting
    "fp32+compile": {"mixed_precision": "no", "compile": True},
    "bf16+compile": {"mixed_precision": "bf16", "compile": True},
    "bf16+cl+compile": {"mixed_precision": "bf16", "channels_last": True, "compile": True},
}


def _device():  # noqa: ANN202 - a torch.device
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _synchronize(device) -> None:  # noqa: ANN001
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


class StepRunner:
    """Whole training steps of ``recipe`` as the engine runs them: views on the device (float32,
    outside autocast), the forward under ``torch.autocast`` when ``train.mixed_precision`` asks for
    it (what Accelerate wraps around the forward), ``train.channels_last`` and ``train.compile``
    through :mod:`hfssl.training.acceleration` (when the checkout has it), backward, optimizer, EMA."""

    def __init__(self, recipe) -> None:  # noqa: ANN001 - a Recipe
        import contextlib

        import torch
        from accelerate import Accelerator

        from hfssl.registry import get_method
        from hfssl.training import trainer
        from hfssl.training.optim import build_optimizer

        self.recipe = recipe
        spec = get_method(recipe.method)
        self.device = _device()
        accelerator = Accelerator(cpu=self.device.type == "cpu")
        if hasattr(spec, "load_training_data"):
            self.data = spec.load_training_data(recipe, accelerator)
        else:  # a checkout from before MethodSpec.load_training_data (side-by-side comparisons)
            self.data = spec.load_hook("build_data")(recipe, accelerator)
        torch.manual_seed(recipe.train.seed)
        self.model = trainer.build_model(recipe, self.data.config_updates).to(self.device).train()
        train = recipe.train
        self.forward = self.model
        if getattr(train, "channels_last", False):
            from hfssl.training.acceleration import apply_channels_last

            apply_channels_last(self.model, recipe.method)
        if getattr(train, "compile", False):
            from hfssl.training.acceleration import CompiledForward

            self.forward = CompiledForward(self.model, train.compile_mode, recipe.method,
                                           lambda: trainer._forward_buffers(self.model),
                                           lambda kept: trainer._restore_buffers(self.model, kept))
        precision = train.mixed_precision or "no"
        if precision == "auto":  # as the trainer resolves it (hfssl.training.precision)
            from hfssl.training.precision import resolve_mixed_precision

            precision = resolve_mixed_precision(recipe, self.device.type).train.mixed_precision or "no"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.autocast = ((lambda: torch.autocast(self.device.type, dtype=dtype)) if dtype is not None
                         else contextlib.nullcontext)
        self.optimizer = build_optimizer(self.model, recipe.optim)
        self.loader = torch.utils.data.DataLoader(
            self.data.train_dataset, batch_size=train.batch_size, shuffle=True, drop_last=True,
            collate_fn=self.data.collate_fn, generator=torch.Generator().manual_seed(0))
        self.batches = iter(self.loader)
        self.generator = torch.Generator(device=self.device).manual_seed(0)
        self.schedules = trainer.resolved_schedules(self.model, recipe) if hasattr(trainer, "resolved_schedules") else None
        self.step_index = 0

    def _batch(self):  # noqa: ANN202
        try:
            batch = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            batch = next(self.batches)
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}

    def step(self) -> tuple[float, float]:
        """One whole step; returns its (wall seconds, process CPU seconds); the batch's decoding is not timed."""
        import time

        batch = self._batch()
        _synchronize(self.device)
        start, cpu = time.perf_counter(), time.process_time()
        inputs = self.data.make_inputs(batch, self.generator)
        with self.autocast():
            loss = self.forward(**inputs).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_index += 1
        if self.schedules is not None:
            self.model.on_train_step_end(self.step_index, {name: schedule(self.step_index, 1000)
                                                           for name, schedule in self.schedules.items()})
        elif self.model.teacher_pairs:
            self.model.update_teacher(0.99)
        _synchronize(self.device)
        return time.perf_counter() - start, time.process_time() - cpu


def measure_throughput(recipe, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per whole training step on real batches of the recipe's training data."""
    runner = StepRunner(recipe)
    for _ in range(warmup):
        runner.step()
    times = [runner.step()[0] for _ in range(steps)]
    seconds = statistics.median(times)
    return {"seconds_per_step": seconds, "images_per_second": recipe.train.batch_size / seconds,
            "timed_steps": steps}


def _mode_worker(connection, recipe_path: str, overrides: list[str], threads: int, warmup: int) -> None:  # noqa: ANN001
    """One mode's process (``--modes``): build, warm up (compile), then run slices of steps on request."""
    import time

    import torch

    torch.set_num_threads(threads)
    try:
        recipe = _load_recipe(Path(recipe_path), overrides)
        runner = StepRunner(recipe)
        first_wall, _ = runner.step()  # the compiled modes compile here (forward and backward)
        warm = [runner.step()[0] for _ in range(max(warmup - 1, 1))]
        failed = getattr(runner.forward, "failed", None)
        connection.send({"batch_size": recipe.train.batch_size, "first_step_seconds": first_wall, "warm_step_seconds": statistics.median(warm),
                         "compile_failed": failed})
        while True:
            command = connection.recv()
            if command is None:
                break
            if isinstance(command, tuple):  # ("profile", steps): self time per operator and step
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU]) as profiler:
                    for _ in range(command[1]):
                        runner.step()
                connection.send({"ops": {event.key: (event.self_cpu_time_total / 1000 / command[1], event.count / command[1])
                                         for event in profiler.key_averages()}})
                continue
            results = [runner.step() for _ in range(command)]
            peak = {"peak_rss_mib": _peak_rss_mib()}
            if runner.device.type == "cuda":
                peak["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
            connection.send({"steps": results, **peak})
    except Exception as error:  # noqa: BLE001 - reported to the parent, which names the mode
        import traceback

        connection.send({"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()})
    finally:
        time.sleep(0.1)
        connection.close()


def throughput_modes(args: argparse.Namespace) -> int:
    """``--throughput-only --modes ...``: every mode of every method in its own process, all alive at
    once and timed in turns (round r runs ``--calibration-steps`` steps of each mode, the order
    rotating each round), so that a change of the machine's load hits every mode alike. Speed-ups
    are the median over rounds of the per-round ratio to the first mode."""
    import multiprocessing

    import hfssl

    checkout = Path(hfssl.__file__).resolve().parents[1]
    context = multiprocessing.get_context("spawn")
    rows, began = [], time.perf_counter()
    print(f"load before: {_load()}", flush=True)
    for method in args.methods:
        recipe_path = checkout / "recipes" / method / f"{args.dataset}.yaml"
        workers = {}
        for mode in args.modes:
            settings = [f"train.{key}={str(value).lower() if isinstance(value, bool) else json.dumps(value)}"
                        for key, value in MODES[mode].items()]  # strings quoted: YAML reads a bare no as false
            parent, child = context.Pipe()
            process = context.Process(target=_mode_worker, daemon=True,
                                      args=(child, str(recipe_path), list(args.override) + settings, args.threads, 2))
            process.start()
            workers[mode] = (process, parent)
            ready = parent.recv()  # one at a time: compilations and warm-ups do not overlap
            if "error" in ready:
                raise SystemExit(f"{method} {mode}: {ready['error']}\n{ready['traceback']}")
            workers[mode] += (ready,)
            print(f"{method} {mode}: ready, first step {ready['first_step_seconds']:.1f} s, warm step "
                  f"{ready['warm_step_seconds']:.3f} s" + (f", COMPILE FAILED ({ready['compile_failed']})"
                                                          if ready["compile_failed"] else ""), flush=True)
        slices: dict[str, list[dict]] = {mode: [] for mode in args.modes}
        for round_index in range(args.repeats):
            order = args.modes[round_index % len(args.modes):] + args.modes[:round_index % len(args.modes)]
            for mode in order:
                workers[mode][1].send(args.calibration_steps)
                answer = workers[mode][1].recv()
                if "error" in answer:
                    raise SystemExit(f"{method} {mode}: {answer['error']}\n{answer['traceback']}")
                walls = [wall for wall, _ in answer["steps"]]
                cpus = [cpu for _, cpu in answer["steps"]]
                slices[mode].append({"seconds_per_step": statistics.median(walls),
                                     "cpu_seconds_per_step": statistics.median(cpus),
                                     "cores_used": sum(cpus) / sum(walls), **{k: v for k, v in answer.items() if k != "steps"}})
            print(f"{method} round {round_index + 1}/{args.repeats}: " + ", ".join(
                f"{mode} {slices[mode][-1]['seconds_per_step']:.3f} s" for mode in args.modes), flush=True)
        if args.profile:
            _print_profiles(method, args, workers)
        for process, connection, _ in workers.values():
            connection.send(None)
            process.join(timeout=30)
        base = args.modes[0]
        for mode in args.modes:
            mine, ready = slices[mode], workers[mode][2]
            seconds = statistics.median(s["seconds_per_step"] for s in mine)
            compile_seconds = max(ready["first_step_seconds"] - seconds, 0.0) if "compile" in mode else None
            rows.append({
                "method": method, "mode": mode, "settings": MODES[mode], "batch_size": ready["batch_size"],
                "seconds_per_step": seconds, "images_per_second": ready["batch_size"] / seconds,
                "cpu_seconds_per_step": statistics.median(s["cpu_seconds_per_step"] for s in mine),
                "cores_used": statistics.median(s["cores_used"] for s in mine),
                "speedup": statistics.median(b["seconds_per_step"] / s["seconds_per_step"]
                                             for b, s in zip(slices[base], mine)),
                "speedup_range": [min(b["seconds_per_step"] / s["seconds_per_step"] for b, s in zip(slices[base], mine)),
                                  max(b["seconds_per_step"] / s["seconds_per_step"] for b, s in zip(slices[base], mine))],
                "cpu_speedup": statistics.median(b["cpu_seconds_per_step"] / s["cpu_seconds_per_step"]
                                                 for b, s in zip(slices[base], mine)),
                "peak_rss_mib": mine[-1]["peak_rss_mib"], "peak_cuda_mib": mine[-1].get("peak_cuda_mib"),
                "compile_seconds": compile_seconds, "compile_failed": ready["compile_failed"],
                "rounds": args.repeats, "steps_per_round": args.calibration_steps, "slices": mine,
            })
    print(f"load after: {_load()}; {time.perf_counter() - began:.0f} s in all; hfssl from {checkout}; "
          f"device {_device()}; {args.threads} threads")
    print(cpu_line())
    print(modes_markdown(rows))
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2))
    return 0


def _print_profiles(method: str, args: argparse.Namespace, workers: dict) -> None:  # noqa: ANN001
    """``--profile``: torch.profiler's self CPU time per operator and step for each mode, side by side
    (alternating rounds, as the timing), the operators that take the most time in any mode first."""
    import collections

    tables = {mode: collections.Counter() for mode in args.modes}
    calls = {mode: {} for mode in args.modes}
    for _ in range(args.profile_rounds):
        for mode in args.modes:
            workers[mode][1].send(("profile", args.profile))
            for op, (milliseconds, count) in workers[mode][1].recv()["ops"].items():
                tables[mode][op] += milliseconds / args.profile_rounds
                calls[mode][op] = count
    top = collections.Counter()
    for table in tables.values():
        for op, milliseconds in table.items():
            top[op] = max(top[op], milliseconds)
    print(f"\n{method}: self CPU ms per step (calls per step), {args.profile} steps x {args.profile_rounds} rounds per mode")
    print("| operator | " + " | ".join(args.modes) + " |\n|---|" + "---|" * len(args.modes))
    for op, _ in top.most_common(args.profile_top):
        print(f"| `{op[:48]}` | " + " | ".join(f"{tables[m][op]:.1f} ({calls[m].get(op, 0):.0f})" for m in args.modes) + " |")
    print("| total | " + " | ".join(f"{sum(tables[m].values()):.1f}" for m in args.modes) + " |", flush=True)


def _load() -> str:
    try:
        return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "load average unknown"


def cpu_line() -> str:
    """The CPU beside a ``--modes`` table: torch's capability and whether it has native bf16 (what
    ``train.mixed_precision: auto`` decides by; bf16 rows measured without it are emulated)."""
    import torch

    try:
        from hfssl.training.precision import cpu_bf16_support
    except ImportError:  # a checkout from before issue 28
        return f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    native, description = cpu_bf16_support()  # the description names torch's CPU capability
    return (f"CPU: native bf16 {'yes' if native else 'no'} ({description}); "
            f"train.mixed_precision=auto picks {'bf16' if native else 'fp32'} here")


def modes_markdown(rows: list[dict]) -> str:
    lines = ["| method | mode | images/s | s/step | CPU s/step (cores) | speed-up vs first mode: median (min-max) | "
             "CPU-time speed-up | peak RSS MiB | compile s (share of 3 min) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        low, high = row["speedup_range"]
        if row["compile_failed"]:
            compile_text = f"failed: eager ({row['compile_failed'][:60]})"
        elif row["compile_seconds"] is not None:
            compile_text = f"{row['compile_seconds']:.0f} ({100 * row['compile_seconds'] / 180:.0f} %)"
        else:
            compile_text = "-"
        memory = f"{row['peak_rss_mib']:.0f}" + (f" (GPU {row['peak_cuda_mib']:.0f})" if row.get("peak_cuda_mib") else "")
        lines.append(f"| {row['method']} | {row['mode']} | {row['images_per_second']:.0f} | {row['seconds_per_step']:.3f} | "
                     f"{row['cpu_seconds_per_step']:.3f} ({row['cores_used']:.2f}) | {row['speedup']:.2f}x "
                     f"({low:.2f}-{high:.2f}) | {row['cpu_speedup']:.2f}x | {memory} | {compile_text} |")
    return "\n".join(lines)


def run_single(method: str, args: argparse.Namespace) -> dict:
    import torch

    from hfssl.pipeline import run as train  # the whole run: training, then the run's own evaluation
    from hfssl.recipe import load_recipe

    torch.set_num_threads(args.threads)
    recipe_path = REPO / "recipes" / method / f"{args.dataset}.yaml"
    overrides = ["train.progress_bar=false", "train.knn_every=null"] + list(args.override)
    if args.linear_c_grid:
        overrides.append(f"eval.linear.c_grid=[{','.join(str(c) for c in args.linear_c_grid)}]")
    recipe = load_recipe(recipe_path, overrides)
    if args.seconds_per_step is None:
        speed = measure_throughput(recipe, args.calibration_steps, warmup=2)
    else:  # measured before, on an idle machine: the run itself may then share the cores
        speed = {"seconds_per_step": args.seconds_per_step, "timed_steps": 0,
                 "images_per_second": recipe.train.batch_size / args.seconds_per_step}
    max_steps = max(1, int(args.minutes * 60 / speed["seconds_per_step"]))
    recipe = load_recipe(recipe_path, overrides + [f"train.max_steps={max_steps}",
                                                   f"train.checkpoint_every={max_steps}"])
    output_dir = Path(args.runs_dir) / _run_name(method, args.dataset, args.minutes)
    from accelerate.state import AcceleratorState

    # The throughput measurement's Accelerator (float32) must not fix the precision of the run's own,
    # which train.mixed_precision (auto: chosen by the CPU) decides.
    AcceleratorState._reset_state(reset_partial_state=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = train(recipe, output_dir, overwrite=True)  # the benchmark's own folder: a rerun replaces it
    wall = time.perf_counter() - start
    results = json.loads((output_dir / "eval_results.json").read_text())
    return {
        "method": method,
        "dataset": recipe.data.source,
        "recipe": str(recipe_path.relative_to(REPO)),
        "steps": result.steps,
        "batch_size": recipe.train.batch_size,
        "epochs": result.steps * recipe.train.batch_size / results["num_train"],
        "budget_minutes": args.minutes,
        "run_wall_seconds": wall,
        "final_loss": result.final_loss,
        "peak_rss_mib": _peak_rss_mib(),
        "threads": args.threads,
        "pretext_accuracy": _metric(results["results"], "pretext"),
        "reconstruction_mse": _metric(results["results"], "reconstruction", "mse"),
        "reconstruction_psnr": _metric(results["results"], "reconstruction", "psnr"),
        "cpu_seconds": time.process_time() - cpu_start,  # the run's (training + evaluation), this process's threads
        **speed,
        "eval": results,
    }


def _run_name(method: str, dataset: str, minutes: float) -> str:
    return f"{method}-{dataset}-{minutes:g}min"


def _seconds_per_step(values: list[str]) -> dict[str, float]:
    """``--seconds-per-step simclr=0.0575 byol=0.0703`` -> {"simclr": 0.0575, "byol": 0.0703}."""
    table = {}
    for value in values:
        method, _, seconds = value.partition("=")
        try:
            table[method] = float(seconds)
        except ValueError:
            raise SystemExit(f"--seconds-per-step takes METHOD=SECONDS (e.g. simclr=0.0575), got {value!r}") from None
    return table


def _load_recipe(path: Path, overrides: list[str]):  # noqa: ANN202 - a Recipe
    try:
        from hfssl.recipe import load_recipe
    except ImportError:  # a checkout from before hfssl.recipe
        from hfssl.training.recipe import load_recipe
    return load_recipe(path, overrides)


def throughput_only(args: argparse.Namespace) -> int:
    """Step 1 alone, ``--repeats`` times per method: median images/s, with the process's cores used."""
    import torch

    if args.modes:
        return throughput_modes(args)

    import hfssl

    torch.set_num_threads(args.threads)
    checkout = Path(hfssl.__file__).resolve().parents[1]  # each checkout measured with its own recipes
    rows = []
    for method in args.methods:
        recipe = _load_recipe(checkout / "recipes" / method / f"{args.dataset}.yaml", list(args.override))
        for repeat in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            speed = measure_throughput(recipe, args.calibration_steps, warmup=2)
            cores = (time.process_time() - cpu) / (time.perf_counter() - wall)
            rows.append({"method": method, "repeat": repeat, "cores_used": cores, **speed})
            print(json.dumps(rows[-1]), flush=True)
    print(f"hfssl from {checkout}")
    for method in args.methods:
        mine = [row for row in rows if row["method"] == method]
        print(f"{method}: median {statistics.median(r['images_per_second'] for r in mine):.0f} images/s over "
              f"{len(mine)} repeats, cores used {statistics.median(r['cores_used'] for r in mine):.2f}")
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2))
    return 0


def _metric(entries: list[dict], protocol: str, key: str = "top1", k: int | None = None) -> float | None:
    for entry in entries:
        if entry["protocol"] == protocol and (k is None or entry.get("k") == k):
            return entry[key]
    return None


def markdown(rows: list[dict]) -> str:
    header = ("| method | budget min | images/s (whole step) | s/step | peak RSS MiB | steps x batch (epochs) | "
              "pretext | recon MSE | PSNR dB | kNN k=20 | kNN k=200 | linear | raw kNN k=20 | raw linear | run wall s | "
              "run CPU s / wall s |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [header]
    for row in rows:
        ev = row["eval"]
        def pct(value):
            return "-" if value is None else f"{100 * value:.1f} %"

        def number(value, digits):
            return "-" if value is None else f"{value:.{digits}f}"

        def cores(row):
            return "-" if row.get("cpu_seconds") is None else f"{row['cpu_seconds'] / row['run_wall_seconds']:.2f}"
        lines.append(
            f"| {row['method']} | {row['budget_minutes']:g} | {row['images_per_second']:.0f} | {row['seconds_per_step']:.3f} | {row['peak_rss_mib']:.0f} | "
            f"{row['steps']} x {row['batch_size']} ({row['epochs']:.1f}) | {pct(row.get('pretext_accuracy'))} | "
            f"{number(row.get('reconstruction_mse'), 4)} | {number(row.get('reconstruction_psnr'), 2)} | "
            f"{pct(_metric(ev['results'], 'knn', k=20))} | "
            f"{pct(_metric(ev['results'], 'knn', k=200))} | {pct(_metric(ev['results'], 'linear'))} | "
            f"{pct(_metric(ev.get('baselines', []), 'knn', k=20))} | {pct(_metric(ev.get('baselines', []), 'linear'))} | "
            f"{row['run_wall_seconds']:.0f} | {cores(row)} |"
        )
    layers = [(row["method"], entry) for row in rows for entry in row["eval"]["results"]
              if entry["protocol"] == "layer-linear" and entry.get("label_fraction") is None]
    if layers:  # the per-layer probe: one column per layer (stage or block), first to last
        depth = max(entry["layer"] for _, entry in layers)
        lines += ["", "| method | " + " | ".join(f"layer {i}" for i in range(1, depth + 1)) + " |",
                  "|---|" + "---|" * depth]
        for method in dict.fromkeys(method for method, _ in layers):
            cells = {entry["layer"]: f"{100 * entry['top1']:.1f} % ({entry['width']}-d)"
                     for name, entry in layers if name == method}
            lines.append(f"| {method} | " + " | ".join(cells.get(i, "-") for i in range(1, depth + 1)) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["simclr", "byol", "mae"])
    parser.add_argument("--dataset", default="fashion_mnist", help="recipes/<method>/<dataset>.yaml")
    parser.add_argument("--minutes", type=float, nargs="+", default=[20.0],
                        help="training budget per method; several values give the accuracy-per-minute curve, "
                             "one run per method and budget")
    parser.add_argument("--seconds-per-step", nargs="*", default=[], metavar="METHOD=SECONDS",
                        help="use these seconds per step (measured earlier on an idle machine, e.g. with "
                             "--throughput-only) instead of calibrating in the run: the budget becomes a fixed "
                             "step count, so the runs may share the cores (accuracy at fixed steps does not "
                             "depend on load)")
    parser.add_argument("--calibration-steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--linear-c-grid", type=float, nargs="*", default=[0.01, 0.1, 1.0])
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "bench"))
    parser.add_argument("--output", help="JSON file for all results")
    parser.add_argument("--override", nargs="*", action="extend", default=[],
                        help="recipe overrides for every method (a repeated --override adds to the list)")
    parser.add_argument("--quick", action="store_true", help="digits, 0.2 minutes: checks the script works")
    parser.add_argument("--throughput-only", action="store_true", help="measure whole training steps only, no training")
    parser.add_argument("--repeats", type=int, default=3, help="with --throughput-only: measurements per method")
    parser.add_argument("--modes", nargs="+", choices=list(MODES),
                        help="with --throughput-only: time these modes side by side, each in its own process, in "
                             "alternating rounds (--repeats rounds of --calibration-steps steps); the first is the "
                             "baseline of the speed-ups, e.g. --modes fp32 bf16 bf16+cl bf16+cl+compile")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="with --modes: also profile STEPS steps of each mode per round (torch.profiler, "
                             "self CPU time by operator) and print the table")
    parser.add_argument("--profile-rounds", type=int, default=2)
    parser.add_argument("--profile-top", type=int, default=20)
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.dataset, args.minutes, args.calibration_steps = "digits", [0.2], 3
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.throughput_only:
        return throughput_only(args)

    if args.single:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for noisy in ("httpx", "urllib3", "matplotlib", "PIL", "accelerate"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        args.minutes = args.minutes[0]
        args.seconds_per_step = _seconds_per_step(args.seconds_per_step).get(args.single)
        row = run_single(args.single, args)
        Path(args.result_file).write_text(json.dumps(row, indent=2))
        return 0

    rows = []
    given = _seconds_per_step(args.seconds_per_step)
    for method, minutes in [(method, minutes) for method in args.methods for minutes in args.minutes]:
        result_file = Path(args.runs_dir) / f"{_run_name(method, args.dataset, minutes)}.bench.json"
        result_file.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, __file__, "--single", method, "--result-file", str(result_file),
                   "--dataset", args.dataset, "--minutes", str(minutes),
                   "--calibration-steps", str(args.calibration_steps), "--threads", str(args.threads),
                   "--runs-dir", args.runs_dir, "--linear-c-grid", *map(str, args.linear_c_grid)]
        if method in given:
            command += ["--seconds-per-step", f"{method}={given[method]}"]
        if args.override:
            command += ["--override", *args.override]
        print(f"== {method}: {' '.join(command[1:])}", flush=True)
        subprocess.run(command, check=True)
        rows.append(json.loads(result_file.read_text()))
        print(markdown(rows[-1:]), flush=True)
    print()
    print(markdown(rows))
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
