#!/usr/bin/env python
"""Label efficiency on Fashion-MNIST (issue 24): SSL pre-training + fine-tuning + distillation.

Every step is a real ``hfssl`` command (printed, with its wall time and CPU seconds), in this order:

1. SimCLR and BYOL pre-training (``recipes/{simclr,byol}/fashion_mnist.yaml``) at a fixed step budget, each
   followed by its run's linear probe (``--linear-c-grid``, default C = 0.1 only; no raw-pixel baselines: they are
   the same for every run and in the sections above) and fine-tuning at 1 % and 10 % of the labels (``eval.finetune``
   defaults: 5 epochs, batch 128, AdamW 1e-3, crop 0.5-1 + flip, seed 0; class-balanced subsets of
   ``hfssl.evaluation.subsets``);
2. SimCLRv2 distillation (``hfssl eval --protocol distill``) at each fraction from the better fine-tuned
   classifier at that fraction into (a) the same backbone starting from its SSL encoder and (b) a smaller
   ResNet (16/32/64) from scratch, over every train image (labels unused beyond the teacher's fine-tuning);
3. feature distillation (``recipes/feature_distill/fashion_mnist.yaml``) from the better SSL encoder (linear
   probe) into the smaller ResNet, then its kNN, linear probe and fine-tuning at 1 % and 10 %.

All float32 (``train.mixed_precision=no``; the fine-tuning and distillation runs resolve ``auto`` to float32 on a
CPU without native bf16). Run it under the benchmark lock::

    flock /tmp/hfssl-bench.lock python scripts/bench_label_efficiency.py --output runs/label-efficiency
    python scripts/bench_label_efficiency.py --quick     # builtin:digits, a smoke test of the script

Prints the Markdown table for BENCHMARKS.md and writes ``OUTPUT/label_efficiency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMALL = {"model_type": "resnet", "num_channels": 1, "layer_type": "basic", "embedding_size": 16,
         "hidden_sizes": [16, 32, 64], "depths": [1, 1, 1], "downsample_in_first_stage": False}
FRACTIONS = (0.01, 0.1)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: list[str], log: list[dict]) -> dict:
    """Run one hfssl command; record its wall time and the CPU seconds of its process tree."""
    printable = "hfssl " + " ".join(command)
    print(f"$ {printable}", flush=True)
    cpu, start = _children_cpu(), time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "hfssl.cli", *command], cwd=REPO, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if completed.returncode != 0:
        print(completed.stdout[-3000:], completed.stderr[-6000:], file=sys.stderr)
        raise SystemExit(f"failed ({completed.returncode}): {printable}")
    entry = {"command": printable, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
    log.append(entry)
    print(f"  {wall:.0f} s wall, {cpu:.0f} CPU s ({cpu / wall:.2f} cores)", flush=True)
    return entry


def results(path: Path) -> list[dict]:
    return json.loads(path.read_text())["results"]


def top1(rows: list[dict], protocol: str, fraction: float | None = None) -> float | None:
    for row in rows:
        if row["protocol"] == protocol and row.get("features", "model") == "model" and (
                fraction is None or row.get("label_fraction") == fraction):
            if protocol == "knn" and row.get("k") != 20:
                continue
            return row["top1"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="runs/label-efficiency")
    parser.add_argument("--steps", nargs=2, type=int, default=(100, 50), metavar=("SIMCLR", "BYOL"))
    parser.add_argument("--distill-steps", type=int, default=100)
    parser.add_argument("--feature-distill-steps", type=int, default=150)
    parser.add_argument("--finetune-steps", type=int, default=None,
                        help="fine-tuning optimiser steps at each fraction (default: the protocol's 5 epochs of the "
                             "labelled subset; set it to the semi-supervised rows' steps to compare at equal steps)")
    parser.add_argument("--finetune-batch-size", type=int, default=None, help="fine-tuning batch (default: 128)")
    parser.add_argument("--linear-c-grid", nargs="+", type=float, default=[0.1],
                        help="the linear probe's C values (one C skips the validation split: minutes saved per run)")
    parser.add_argument("--quick", action="store_true", help="builtin:digits, a few steps: a smoke test")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    dataset = "digits" if args.quick else "fashion_mnist"
    steps = (6, 4) if args.quick else tuple(args.steps)
    distill_steps = 4 if args.quick else args.distill_steps
    feature_steps = 6 if args.quick else args.feature_distill_steps
    small = dict(SMALL)
    log: list[dict] = []
    common = ["train.mixed_precision=no", "train.knn_every=null", "train.progress_bar=false", "train.checkpoint_every=1000",
              "eval.protocols=[linear,finetune]", "eval.finetune.label_fractions=[0.01,0.1]", "eval.baselines=false",
              f"eval.linear.c_grid=[{','.join(f'{c:g}' for c in args.linear_c_grid)}]"]
    if args.finetune_steps is not None or args.quick:
        common += [f"eval.finetune.max_steps={3 if args.quick else args.finetune_steps}"]
    if args.finetune_batch_size is not None:
        common += [f"eval.finetune.batch_size={args.finetune_batch_size}"]
    rows: dict[str, dict] = {}
    # 1. SSL pre-training + fine-tuning
    for method, count in zip(("simclr", "byol"), steps):
        entry = run(["train", f"recipes/{method}/{dataset}.yaml", "--output-dir", str(out / method), "--overwrite",
                     f"train.max_steps={count}", *common], log)
        found = results(out / method / "eval_results.json")
        rows[method] = {"entry": entry, "steps": count, "knn": top1(found, "knn"), "linear": top1(found, "linear"),
                        **{f"finetune-{f:g}": top1(found, "finetune", f) for f in FRACTIONS}}
    best_encoder = max(("simclr", "byol"), key=lambda name: rows[name]["linear"])
    # 2. SimCLRv2 distillation from the better fine-tuned classifier at each fraction
    for fraction in FRACTIONS:
        teacher_run = max(("simclr", "byol"), key=lambda name: rows[name][f"finetune-{fraction:g}"])
        teacher = out / teacher_run / "finetune" / f"fraction-{fraction:g}"
        for student, extra in (("same", []), ("small", ["--set", "distill.init=random", "--set",
                                                        "distill.student_config=" + json.dumps(small)])):
            name = f"distill-{student}-{fraction:g}"
            command = ["eval", str(out / teacher_run), "--protocol", "distill", "--no-baselines",
                       "--output", str(out / f"{name}.json"), "--set", f"distill.teacher={teacher}",
                       "--set", f"distill.label_fraction={fraction}", "--set",
                       f"distill.max_steps={distill_steps}", "--set",
                       f"distill.output_dir={out / teacher_run / 'distill' / name}", *extra]
            entry = run(command, log)
            row = results(out / f"{name}.json")[0]
            rows[name] = {"entry": entry, "teacher": teacher_run, "top1": row["top1"], "teacher_top1": row["teacher_top1"],
                          "student_parameters": row["student_parameters"], "steps": row["steps"]}
    # 3. feature distillation from the better SSL encoder into the small ResNet
    recipe = f"recipes/feature_distill/{dataset}.yaml"
    overrides = [f"model.teacher_name_or_path={out / best_encoder / 'encoder'}", f"train.max_steps={feature_steps}"]
    if args.quick:
        overrides += ["model.backbone_config.num_channels=1"]
    entry = run(["train", recipe, "--output-dir", str(out / "feature_distill"), "--overwrite", *overrides, *common], log)
    found = results(out / "feature_distill" / "eval_results.json")
    rows["feature_distill"] = {"entry": entry, "teacher": best_encoder, "steps": feature_steps, "knn": top1(found, "knn"),
                               "linear": top1(found, "linear"),
                               **{f"finetune-{f:g}": top1(found, "finetune", f) for f in FRACTIONS}}
    summary = {"cpu_capability": _capability(), "threads": os.environ.get("OMP_NUM_THREADS"), "rows": rows, "log": log}
    (out / "label_efficiency.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(rows, indent=1))


def _capability() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()


if __name__ == "__main__":
    main()
