#!/usr/bin/env python
"""Evaluation benchmark on Fashion-MNIST: the torch linear probe against scikit-learn's, label
fractions, few-shot episodes and fine-tuning, for exported encoders next to random initialisation.

Stages (each one process, run them one after the other under the heavy lock):

* ``features``: frozen features of every encoder on the 60,000 / 10,000 split (cached as .npz);
* ``probes``: the linear probe with ``solver=torch`` and ``solver=sklearn`` on the same features
  (test top-1, wall seconds and CPU seconds of each), the torch probe on 1 % / 10 % of the labels,
  5-way 1-shot / 5-shot episodes (nearest centroid, logistic regression; 600 episodes);
* ``finetune``: each encoder and a randomly initialised encoder of the same architecture
  fine-tuned with the same settings on 1 %, 10 % and 100 % of the labels.

Usage::

    python scripts/bench_eval.py features --encoders simclr=runs/x/encoder ... --out runs/bench_eval
    python scripts/bench_eval.py probes --out runs/bench_eval [--raw-pixels]
    python scripts/bench_eval.py finetune --encoders ... --out runs/bench_eval --epochs 1 10 50
    python scripts/bench_eval.py table --out runs/bench_eval     # the Markdown tables

Fine-tuning epochs are per label fraction (100 %, 10 %, 1 %), so that the small subsets get
enough steps (SimCLRv2 fine-tunes longer on fewer labels).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = {"source": "builtin:fashion_mnist", "image_size": 28, "channels": 1}
FRACTIONS = (1.0, 0.1, 0.01)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall and CPU seconds (this process, all threads) of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu_seconds() - self.cpu


def _encoders(pairs: list[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        name, _, path = pair.partition("=")
        if not path:
            raise SystemExit(f"--encoders takes NAME=PATH pairs, got {pair!r}")
        result[name] = path
    return result


def _splits():
    from hfssl.data.config import ImageDataConfig
    from hfssl.data.images import load_image_splits

    return load_image_splits(ImageDataConfig(**DATA))


def stage_features(args: argparse.Namespace) -> None:
    import numpy as np

    from hfssl.evaluation.context import EvaluationContext
    from hfssl.data.config import ImageDataConfig
    from hfssl.recipe import EvalConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, path in _encoders(args.encoders).items():
        target = out / f"features-{name}.npz"
        if target.is_file():
            continue
        context = EvaluationContext.for_path(path, ImageDataConfig(**DATA), EvalConfig())
        with Clock() as clock:
            features = context.image_features()
        np.savez(target, *features.as_tuple())
        print(f"{name}: features {features.train_features.shape} in {clock.wall:.1f} s", flush=True)
    if args.raw_pixels and not (out / "features-raw_pixels.npz").is_file():
        context = EvaluationContext.for_path(next(iter(_encoders(args.encoders).values())), ImageDataConfig(**DATA),
                                             EvalConfig())
        np.savez(out / "features-raw_pixels.npz", *context.raw_pixel_features().as_tuple())


def _load(path: Path):
    import numpy as np

    arrays = np.load(path)
    return tuple(arrays[f"arr_{index}"] for index in range(4))


def stage_probes(args: argparse.Namespace) -> None:
    from hfssl.evaluation.few_shot import few_shot_evaluate
    from hfssl.evaluation.linear_probe import linear_probe
    from hfssl.evaluation.subsets import balanced_subset

    out = Path(args.out)
    results = json.loads((out / "probes.json").read_text()) if (out / "probes.json").is_file() else {}
    names = [path.stem.removeprefix("features-") for path in sorted(out.glob("features-*.npz"))]
    for name in names:
        if args.only and name not in args.only:
            continue
        train_f, train_y, test_f, test_y = _load(out / f"features-{name}.npz")
        entry = results.setdefault(name, {})
        for solver in args.solvers:
            with Clock() as clock:
                row = linear_probe(train_f, train_y, test_f, test_y, tuple(args.c_grid), 0.1, 10, solver=solver)
            entry[f"linear-{solver}"] = {**row, "wall_s": clock.wall, "cpu_s": clock.cpu}
            print(f"{name} linear {solver}: top-1 {row['top1']:.4f} C={row['C']:g} wall {clock.wall:.1f} s "
                  f"cpu {clock.cpu:.1f} s", flush=True)
        if name == "raw_pixels" and args.raw_pixels_linear_only:
            continue
        for fraction in (0.1, 0.01):
            rows = balanced_subset(train_y, fraction, 0)
            row = linear_probe(train_f[rows], train_y[rows], test_f, test_y, tuple(args.c_grid), 0.1, 10)
            entry[f"linear-{fraction:g}"] = {**row, "num_labelled": int(len(rows))}
            print(f"{name} linear {fraction:g}: top-1 {row['top1']:.4f} ({len(rows)} rows)", flush=True)
        with Clock() as clock:
            shots = few_shot_evaluate(test_f, test_y, ways=5, shots=(1, 5), episodes=600)
        entry["few-shot"] = shots
        print(f"{name} few-shot ({clock.wall:.1f} s): " + ", ".join(
            f"{row['classifier']} {row['shots']}-shot {100 * row['accuracy']:.1f} +- {100 * row['ci95']:.1f}"
            for row in shots), flush=True)
        (out / "probes.json").write_text(json.dumps(results, indent=2) + "\n")


def stage_finetune(args: argparse.Namespace) -> None:
    from hfssl.evaluation.finetune import FineTuneSettings, finetune

    out = Path(args.out)
    results = json.loads((out / "finetune.json").read_text()) if (out / "finetune.json").is_file() else {}
    splits = _splits()
    epochs = dict(zip(FRACTIONS, args.epochs))
    for name, path in _encoders(args.encoders).items():
        for init in args.inits:
            for fraction in args.fractions:
                key = f"{name}/{init}/{fraction:g}"
                if key in results:
                    continue
                settings = FineTuneSettings(epochs=epochs[fraction], batch_size=args.batch_size, lr=args.lr,
                                            layer_decay=args.layer_decay, init=init, label_fractions=(fraction,),
                                            checkpoint_every=10**6)
                with Clock() as clock:
                    result = finetune(path, splits.train, splits.test, splits.label_names, 10, settings,
                                      out / "finetune" / f"{name}-{init}-{fraction:g}", fraction)
                results[key] = {**result.row, "wall_s": clock.wall, "cpu_s": clock.cpu}
                print(f"{key}: top-1 {result.row['top1']:.4f} in {result.steps} steps, wall {clock.wall:.0f} s "
                      f"cpu {clock.cpu:.0f} s", flush=True)
                (out / "finetune.json").write_text(json.dumps(results, indent=2) + "\n")


def stage_table(args: argparse.Namespace) -> None:
    out = Path(args.out)
    probes = json.loads((out / "probes.json").read_text()) if (out / "probes.json").is_file() else {}
    tuned = json.loads((out / "finetune.json").read_text()) if (out / "finetune.json").is_file() else {}
    print("| features | torch probe top-1 | wall s | CPU s | sklearn probe top-1 | wall s | CPU s | speed-up (wall) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, entry in probes.items():
        torch_row, sk_row = entry.get("linear-torch"), entry.get("linear-sklearn")
        if not torch_row or not sk_row:
            continue
        print(f"| {name} | {100 * torch_row['top1']:.2f} % (C={torch_row['C']:g}) | {torch_row['wall_s']:.1f} | "
              f"{torch_row['cpu_s']:.1f} | {100 * sk_row['top1']:.2f} % (C={sk_row['C']:g}) | {sk_row['wall_s']:.1f} | "
              f"{sk_row['cpu_s']:.1f} | {sk_row['wall_s'] / torch_row['wall_s']:.1f}x |")
    print()
    print("| encoder | linear 1 % | linear 10 % | linear 100 % | fine-tuned 1 % | 10 % | 100 % | random init fine-tuned 1 % | 10 % | 100 % | 5-way 1-shot NC / LR | 5-way 5-shot NC / LR |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, entry in probes.items():
        def pct(row):
            return f"{100 * row['top1']:.1f}" if row else "-"

        def shot(k):
            rows = {row["classifier"]: row for row in entry.get("few-shot", []) if row["shots"] == k}
            return " / ".join(f"{100 * rows[c]['accuracy']:.1f} ± {100 * rows[c]['ci95']:.1f}"
                              for c in ("nearest-centroid", "logistic") if c in rows) or "-"

        cells = [pct(entry.get("linear-0.01")), pct(entry.get("linear-0.1")), pct(entry.get("linear-torch"))]
        cells += [pct(tuned.get(f"{name}/pretrained/{fraction:g}")) for fraction in (0.01, 0.1, 1.0)]
        cells += [pct(tuned.get(f"{name}/random/{fraction:g}")) for fraction in (0.01, 0.1, 1.0)]
        print(f"| {name} | " + " | ".join(cells + [shot(1), shot(5)]) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("features", "probes", "finetune", "table"))
    parser.add_argument("--out", default="runs/bench_eval")
    parser.add_argument("--encoders", nargs="*", default=[], metavar="NAME=PATH")
    parser.add_argument("--raw-pixels", action="store_true", help="features: also the 784-d raw pixels")
    parser.add_argument("--raw-pixels-linear-only", action="store_true", help="probes: only the full linear probes on raw pixels")
    parser.add_argument("--only", nargs="*", help="probes: only these feature sets")
    parser.add_argument("--solvers", nargs="*", default=["torch", "sklearn"])
    parser.add_argument("--c-grid", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--epochs", type=float, nargs=3, default=[2, 10, 50], metavar=("ALL", "TEN", "ONE"),
                        help="fine-tuning epochs at 100 %%, 10 %% and 1 %% of the labels")
    parser.add_argument("--fractions", type=float, nargs="*", default=list(FRACTIONS))
    parser.add_argument("--inits", nargs="*", default=["pretrained", "random"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--layer-decay", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import logging

    logging.basicConfig(level=logging.WARNING)
    {"features": stage_features, "probes": stage_probes, "finetune": stage_finetune, "table": stage_table}[args.stage](args)


if __name__ == "__main__":
    main()
