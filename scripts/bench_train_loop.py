#!/usr/bin/env python
"""The real engine loop's speed: ``hfssl.training.trainer.train`` on a recipe for a fixed number of steps.

Unlike ``bench_vision.py --throughput-only`` (which assembles the step from the engine's parts), this
times the trainer itself: data loading, views on the device, forward, backward, optimiser, the per-step
hook, logging and the final save, in one process. It prints one JSON line: the wall seconds of
``train()``, its CPU seconds (both cores or one), and examples per second over the whole call.

It runs against any checkout that has ``hfssl.training.trainer.train(recipe, output_dir)``, so two
commits are compared side by side by alternating ``PYTHONPATH``::

    for round in 1 2 3; do for tree in . ../before; do
      PYTHONPATH=$tree python scripts/bench_train_loop.py recipes/simclr/digits.yaml --steps 150
    done; done
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("overrides", nargs="*", help="more recipe overrides")
    args = parser.parse_args()

    import torch

    import hfssl
    from hfssl.recipe import load_recipe
    from hfssl.training.trainer import train

    overrides = [f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}", "train.trackers=[]",
                 "train.progress_bar=false", f"train.checkpoint_every={args.steps}", "train.knn_every=null",
                 # float32 unless an override says otherwise: the default, auto, is bf16 on CPUs with native bf16,
                 # and checkouts from before it (issue 28) train in float32: a comparison must not mix the two
                 'train.mixed_precision="no"', *args.overrides]
    recipe = load_recipe(args.recipe, overrides)
    with tempfile.TemporaryDirectory() as folder:
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = train(recipe, Path(folder) / "run")
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    print(json.dumps({"hfssl": str(Path(hfssl.__file__).parent.parent), "recipe": args.recipe, "steps": result.steps,
                      "batch_size": args.batch_size, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                      "cores_used": round(cpu / wall, 2), "examples_per_s": round(result.steps * args.batch_size / wall, 1),
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                      "mixed_precision": (getattr(result, "recipe", None) or recipe).train.mixed_precision}))


if __name__ == "__main__":
    main()
