#!/usr/bin/env python
"""Label efficiency on Fashion-MNIST (issue 24): supervised from scratch against the semi-supervised baselines.

Every row starts from the same randomly initialised backbone (the ResNet of ``recipes/simclr/fashion_mnist.yaml``:
basic blocks, widths 32-64-128, one block per stage, grey 28 x 28 input, normalisation 0.286 / 0.353), trains on the
class-balanced seeded label subset of each ``--fractions`` (``hfssl.evaluation.subsets.balanced_subset``, seed
``--seed``) for a fixed number of optimiser steps with ``B = --batch-size`` labelled images per step, float32, and
is scored top-1 on the 10,000 test images:

* ``supervised``: the ``finetune`` protocol with ``init: random`` (labelled images only);
* ``pseudo-label``, ``mean-teacher``, ``fixmatch``: the semi-supervised protocols with their defaults
  (:mod:`hfssl.evaluation.semi_supervised`) and ``init: random``; ``--unlabelled-ratio`` (mu) is the same for all
  three so their steps see the same images.

Each row reports its wall time and the cores it used (CPU s / wall s, this process), next to torch's CPU
capability. Usage::

    python scripts/bench_semi_supervised.py --steps 300 --fractions 0.01 0.1 --output bench_semisup.json
    python scripts/bench_semi_supervised.py --quick      # digits, a few steps: a smoke test of the script
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
from transformers import ResNetConfig, ResNetModel, ViTImageProcessor

from hfssl.data.config import ImageDataConfig
from hfssl.data.images import load_image_splits
from hfssl.evaluation.finetune import FineTuneSettings, finetune
from hfssl.evaluation.semi_supervised import (
    FixMatchSettings, MeanTeacherSettings, PseudoLabelSettings, semi_supervised,
)

METHODS = ("supervised", "pseudo-label", "mean-teacher", "fixmatch")
SETTINGS = {"pseudo-label": PseudoLabelSettings, "mean-teacher": MeanTeacherSettings, "fixmatch": FixMatchSettings}


def make_encoder(folder: Path, channels: int, size: int, mean: float, std: float) -> str:
    """The SimCLR Fashion-MNIST recipe's backbone, randomly initialised, with its image processor."""
    config = ResNetConfig(num_channels=channels, layer_type="basic", embedding_size=32, hidden_sizes=[32, 64, 128],
                          depths=[1, 1, 1], downsample_in_first_stage=False)
    ResNetModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": size, "width": size}, image_mean=[mean] * channels,
                      image_std=[std] * channels).save_pretrained(folder)
    return str(folder)


def run_row(method: str, encoder: str, splits, fraction: float, args, output: Path) -> dict:
    shared = dict(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_ratio=0.05, init="random", seed=args.seed,
                  mixed_precision="no", checkpoint_every=10**6)
    start, cpu = time.perf_counter(), time.process_time()
    if method == "supervised":
        result = finetune(encoder, splits.train, splits.test, splits.label_names, 10, FineTuneSettings(**shared),
                          output, fraction)
    else:
        settings = SETTINGS[method](**shared, unlabelled_ratio=args.unlabelled_ratio)
        result = semi_supervised(encoder, splits.train, splits.test, splits.label_names, 10, settings, output, fraction)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    row = {"method": method, **result.row, "label_fraction": fraction, "wall_s": wall, "cpu_s": cpu,
           "cores_used": cpu / wall}
    logging.getLogger("bench").warning("%s", json.dumps(row))
    return row


def table(rows: list[dict], capability: str) -> str:
    lines = [f"CPU capability {capability}, float32, torch threads {torch.get_num_threads()}", "",
             "| method | label fraction | labelled | steps | top-1 | top-5 | wall s | CPU s (cores) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['label_fraction']:g} | {row['num_labelled']} | {row['steps']} | "
                     f"{100 * row['top1']:.1f} | {100 * row['top5']:.1f} | {row['wall_s']:.0f} | "
                     f"{row['cpu_s']:.0f} ({row['cores_used']:.2f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.1])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32, help="labelled images per step (B)")
    parser.add_argument("--unlabelled-ratio", type=int, default=2, help="mu, for all three semi-supervised rows")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="JSON file of the rows")
    parser.add_argument("--quick", action="store_true", help="builtin:digits at 16 px, 3 steps")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        data, args.steps, args.batch_size = ImageDataConfig(source="builtin:digits", image_size=16, channels=1), 3, 16
        mean, std = 0.5, 0.5
    else:
        data = ImageDataConfig(source="builtin:fashion_mnist", image_size=28, channels=1)
        mean, std = 0.286, 0.353  # recipes/simclr/fashion_mnist.yaml
    splits = load_image_splits(data)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-semisup-") as scratch:
        encoder = make_encoder(Path(scratch) / "encoder", 1, data.image_size, mean, std)
        for fraction in args.fractions:
            for method in args.methods:
                rows.append(run_row(method, encoder, splits, fraction, args, Path(scratch) / f"{method}-{fraction:g}"))
    capability = torch.backends.cpu.get_cpu_capability()
    if args.output:
        Path(args.output).write_text(json.dumps({"cpu_capability": capability, "args": vars(args), "rows": rows},
                                                indent=2) + "\n")
    print(table(rows, capability))


if __name__ == "__main__":
    main()
