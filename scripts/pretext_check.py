#!/usr/bin/env python
"""A trained run against the same model at its random initialisation, under the run's own protocols.

The issue-21 check "the encoder beats a randomly initialised one": for each run directory, the
protocols (default: ``pretext`` for a method that serves ``pretext-task``, ``knn``, ``linear`` and
``layer-linear``) with the run's ``eval`` settings and evaluation data, once on the trained model and
once on a model of the same config initialised with ``torch.manual_seed(train.seed)`` (as the engine
builds it before the first step). The protocols are the registered ones (``hfssl.evaluation``): the
numbers are those ``hfssl eval RUN --protocol NAME`` gives for the trained model.

Usage::

    python scripts/pretext_check.py runs/rotnet-digits runs/jigsaw-digits
    python scripts/pretext_check.py runs/bench21/rotnet-fashion_mnist-3min --protocols pretext layer-linear --output out.json
    python scripts/pretext_check.py runs/digits22/vae --protocols reconstruction knn linear   # MSE and PSNR too
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_PROTOCOLS = ("pretext", "knn", "linear", "layer-linear")


def _label(row: dict) -> str:
    if row["protocol"] == "knn":
        return f"kNN k={row['k']}"
    if row["protocol"] == "layer-linear":
        return f"linear, layer {row['layer']} ({row['width']}-d)"
    return row["protocol"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="hfssl run directories")
    parser.add_argument("--protocols", nargs="+", default=None,
                        help=f"protocols to run (default: {', '.join(DEFAULT_PROTOCOLS)}; pretext only where served)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output", help="JSON file for the rows")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModel

    from hfssl.evaluation.context import EvaluationContext
    from hfssl.evaluation.runner import evaluate
    from hfssl.recipe import load_recipe
    from hfssl.registry import PRETEXT_TASK, discover_methods, get_method

    discover_methods()
    table = []
    for run in args.runs:
        recipe = load_recipe(Path(run) / "recipe.yaml")
        spec = get_method(recipe.method)
        protocols = list(args.protocols or [name for name in DEFAULT_PROTOCOLS
                                            if name != "pretext" or PRETEXT_TASK in spec.provides])
        trained = AutoModel.from_pretrained(run).eval()
        torch.manual_seed(recipe.train.seed)
        random_init = spec.model_class(trained.config).eval()
        scores: dict[str, dict[str, float]] = {}
        for name, model in (("trained", trained), ("random init", random_init)):
            context = EvaluationContext(eval_config=recipe.eval, data_config=recipe.data, model=model, recipe=recipe)
            for row in evaluate(context, protocols)["results"]:
                if row["protocol"] == "reconstruction":  # held-out error, not an accuracy (issue 22)
                    scores.setdefault("reconstruction MSE", {})[name] = row["mse"]
                    scores.setdefault("reconstruction PSNR dB", {})[name] = row["psnr"]
                elif row.get("label_fraction") is None:  # all the labels (not a label-fraction row)
                    scores.setdefault(_label(row), {})[name] = row["top1"]
        print(f"\n{run} ({recipe.method})\n| protocol | trained | random init | difference |\n|---|---|---|---|")
        for label, pair in scores.items():
            if label.startswith("reconstruction"):
                print(f"| {label} | {pair['trained']:.4f} | {pair['random init']:.4f} | "
                      f"{pair['trained'] - pair['random init']:+.4f} (x{pair['trained'] / pair['random init']:.3f}) |")
            else:
                print(f"| {label} | {100 * pair['trained']:.1f} % | {100 * pair['random init']:.1f} % | "
                      f"{100 * (pair['trained'] - pair['random init']):+.1f} |")
            table.append({"run": str(run), "method": recipe.method, "protocol": label, **pair})
    if args.output:
        Path(args.output).write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
