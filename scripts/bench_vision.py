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
   same protocols on raw pixels, on the same split.

Usage::

    python scripts/bench_vision.py --minutes 20 --methods simclr byol mae --output bench_vision.json
    python scripts/bench_vision.py --quick      # digits, seconds: a smoke test of the script
    python scripts/bench_vision.py --throughput-only --repeats 5   # step 1 only, repeated

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


def measure_throughput(recipe, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per whole training step on real batches of the recipe's training data."""
    import torch
    from accelerate import Accelerator

    from hfssl.registry import get_method
    from hfssl.training import trainer
    from hfssl.training.optim import build_optimizer

    spec = get_method(recipe.method)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if hasattr(spec, "load_training_data"):
        data = spec.load_training_data(recipe, accelerator)
    else:  # a checkout from before MethodSpec.load_training_data (side-by-side comparisons)
        data = spec.load_hook("build_data")(recipe, accelerator)
    build_model = trainer.build_model
    model = build_model(recipe, data.config_updates).to(accelerator.device).train()
    optimizer = build_optimizer(model, recipe.optim)
    loader = torch.utils.data.DataLoader(data.train_dataset, batch_size=recipe.train.batch_size, shuffle=True,
                                         drop_last=True, collate_fn=data.collate_fn,
                                         generator=torch.Generator().manual_seed(0))
    generator = torch.Generator(device=accelerator.device).manual_seed(0)
    schedules = trainer.resolved_schedules(model, recipe) if hasattr(trainer, "resolved_schedules") else None
    times = []
    batches = iter(loader)
    for index in range(warmup + steps):
        batch = {k: v.to(accelerator.device) if hasattr(v, "to") else v for k, v in next(batches).items()}
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        inputs = data.make_inputs(batch, generator)
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if schedules is not None:
            model.on_train_step_end(index + 1, {name: schedule(index + 1, 1000) for name, schedule in schedules.items()})
        elif model.teacher_pairs:
            model.update_teacher(0.99)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"seconds_per_step": seconds, "images_per_second": recipe.train.batch_size / seconds,
            "timed_steps": steps}


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
    speed = measure_throughput(recipe, args.calibration_steps, warmup=2)
    max_steps = max(1, int(args.minutes * 60 / speed["seconds_per_step"]))
    recipe = load_recipe(recipe_path, overrides + [f"train.max_steps={max_steps}",
                                                   f"train.checkpoint_every={max_steps}"])
    output_dir = Path(args.runs_dir) / f"{method}-{args.dataset}"
    start = time.perf_counter()
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
        **speed,
        "eval": results,
    }


def _load_recipe(path: Path, overrides: list[str]):  # noqa: ANN202 - a Recipe
    try:
        from hfssl.recipe import load_recipe
    except ImportError:  # a checkout from before hfssl.recipe
        from hfssl.training.recipe import load_recipe
    return load_recipe(path, overrides)


def throughput_only(args: argparse.Namespace) -> int:
    """Step 1 alone, ``--repeats`` times per method: median images/s, with the process's cores used."""
    import torch

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
    header = ("| method | images/s (whole step) | s/step | peak RSS MiB | steps x batch (epochs) | "
              "kNN k=20 | kNN k=200 | linear | raw kNN k=20 | raw linear |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [header]
    for row in rows:
        ev = row["eval"]
        def pct(value):
            return "-" if value is None else f"{100 * value:.1f} %"
        lines.append(
            f"| {row['method']} | {row['images_per_second']:.0f} | {row['seconds_per_step']:.3f} | {row['peak_rss_mib']:.0f} | "
            f"{row['steps']} x {row['batch_size']} ({row['epochs']:.1f}) | {pct(_metric(ev['results'], 'knn', k=20))} | "
            f"{pct(_metric(ev['results'], 'knn', k=200))} | {pct(_metric(ev['results'], 'linear'))} | "
            f"{pct(_metric(ev['baselines'], 'knn', k=20))} | {pct(_metric(ev['baselines'], 'linear'))} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["simclr", "byol", "mae"])
    parser.add_argument("--dataset", default="fashion_mnist", help="recipes/<method>/<dataset>.yaml")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per method")
    parser.add_argument("--calibration-steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--linear-c-grid", type=float, nargs="*", default=[0.01, 0.1, 1.0])
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "bench"))
    parser.add_argument("--output", help="JSON file for all results")
    parser.add_argument("--override", nargs="*", default=[], help="recipe overrides for every method")
    parser.add_argument("--quick", action="store_true", help="digits, 0.2 minutes: checks the script works")
    parser.add_argument("--throughput-only", action="store_true", help="measure whole training steps only, no training")
    parser.add_argument("--repeats", type=int, default=3, help="with --throughput-only: measurements per method")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.dataset, args.minutes, args.calibration_steps = "digits", 0.2, 3
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.throughput_only:
        return throughput_only(args)

    if args.single:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for noisy in ("httpx", "urllib3", "matplotlib", "PIL", "accelerate"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        row = run_single(args.single, args)
        Path(args.result_file).write_text(json.dumps(row, indent=2))
        return 0

    rows = []
    for method in args.methods:
        result_file = Path(args.runs_dir) / f"{method}-{args.dataset}.bench.json"
        result_file.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, __file__, "--single", method, "--result-file", str(result_file),
                   "--dataset", args.dataset, "--minutes", str(args.minutes),
                   "--calibration-steps", str(args.calibration_steps), "--threads", str(args.threads),
                   "--runs-dir", args.runs_dir, "--linear-c-grid", *map(str, args.linear_c_grid)]
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
