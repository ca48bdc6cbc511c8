#!/usr/bin/env python
"""Held-out pretext accuracy of a trained pretext-task run, and its encoder against a randomly initialised one.

For a run of a method that serves ``pretext-task`` (jigsaw, relative patch position, RotNet):

1. the pretext task built from the *test* split's clean images with a fixed seed
   (``model.get_pretext_predictions``, the same builder as training) and the model's accuracy on it,
   next to chance (1 / number of classes);
2. the run's probes (``--protocols``, default kNN and the linear probe, with the recipe's ``eval`` settings:
   frozen features of the train split, test top-1) for the trained encoder and for a randomly initialised
   model of the same config (``torch.manual_seed(0)``); ``--protocols`` with no name skips them (the
   pretext accuracy alone, e.g. for a Fashion-MNIST benchmark run whose probes bench_vision.py made).

Usage::

    python scripts/pretext_check.py /work/runs/jigsaw21/jigsaw-digits /work/runs/jigsaw21/relative_patch-digits
    python scripts/pretext_check.py /work/runs/bench21/jigsaw-fashion_mnist-3min --protocols
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def pretext_accuracy(model, context, seed: int) -> tuple[float, int]:  # noqa: ANN001
    """Accuracy of the model on the pretext task of the test split, and the number of classes."""
    from hfssl.evaluation.features import extract_features_with

    splits = context.image_splits()
    _, _, transform, device, _ = context.image_encoder()
    generator = torch.Generator(device=device).manual_seed(seed)
    classes = []

    def correct(pixel_values: torch.Tensor) -> torch.Tensor:
        logits, labels = model.get_pretext_predictions(pixel_values, generator)
        classes.append(logits.shape[1])
        return (logits.argmax(dim=1) == labels).float().reshape(pixel_values.shape[0], -1).mean(dim=1, keepdim=True)

    with torch.no_grad():
        hits, _ = extract_features_with(correct, transform, splits.test, 256, device=device, model=model)
    return float(hits.mean()), classes[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out pretext task")
    parser.add_argument("--protocols", nargs="*", default=["knn", "linear"],
                        help="probes of the trained and the random encoder (none: pretext accuracy only)")
    parser.add_argument("--output", help="JSON file for the results")
    args = parser.parse_args()

    from transformers import AutoModel

    from hfssl.evaluation.context import EvaluationContext
    from hfssl.evaluation.runner import evaluate
    from hfssl.recipe import load_recipe
    from hfssl.registry import discover_methods, get_method

    discover_methods()

    rows = []
    for run in args.runs:
        recipe = load_recipe(Path(run) / "recipe.yaml")
        trained = AutoModel.from_pretrained(run).eval()
        spec = get_method(recipe.method)
        torch.manual_seed(0)
        random = spec.model_class(trained.config).eval()
        row = {"run": str(run), "method": recipe.method}
        for name, model in (("trained", trained), ("random_init", random)):
            context = EvaluationContext(eval_config=recipe.eval, data_config=recipe.data, model=model, recipe=recipe)
            accuracy, classes = pretext_accuracy(model, context, args.seed)
            row[name] = {"pretext_accuracy": accuracy}
            if args.protocols:
                for result in evaluate(context, args.protocols)["results"]:
                    setting = f"k{result['k']}" if "k" in result else f"C{result.get('C')}"
                    row[name][f"{result['protocol']}_{setting}_top1"] = result["top1"]
            row["chance"] = 1 / classes
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
