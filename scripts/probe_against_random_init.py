#!/usr/bin/env python
"""Does a method's encoder beat a randomly initialised one? Train a recipe, then on its eval splits:

1. the held-out pretext accuracy, for a method that serves ``pretext-task`` (RotNet): the task built from the
   clean test images (the eval transform) with a generator seeded 0, scored by the trained model and by the
   untrained one;
2. a linear probe on the pooled features of every stage/block (``get_layer_embeddings``; the last entry is the
   encoder's output): standardised features, scikit-learn logistic regression (C=1) fit on the eval-train split,
   top-1 on the eval-test split, for the trained model and for the same architecture at its random initialisation
   (``torch.manual_seed(train.seed)``, as the engine builds it).

Usage::

    PYTHONPATH=. python scripts/probe_against_random_init.py recipes/rotnet/digits.yaml --output-dir runs/rotnet-digits
    PYTHONPATH=. python scripts/probe_against_random_init.py recipes/rotnet/digits.yaml model.classifier_hidden_dim=null
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def _features(model, transform, dataset, pretext: bool) -> tuple[list[np.ndarray], np.ndarray, float | None]:  # noqa: ANN001
    from hfssl.evaluation.features import iter_image_batches

    layers, labels, correct, total = None, [], 0, 0
    model.eval()
    with torch.no_grad():
        for pixels, batch_labels in iter_image_batches(dataset, 512):
            images = transform(torch.from_numpy(pixels))
            per_layer = model.get_layer_embeddings(images)
            layers = [[x] for x in per_layer] if layers is None else [acc + [x] for acc, x in zip(layers, per_layer)]
            labels.append(batch_labels)
            if pretext:
                logits, targets = model.get_pretext_predictions(images, torch.Generator().manual_seed(0))
                correct += int((logits.argmax(-1) == targets).sum())
                total += int(targets.numel())
    return [torch.cat(layer).numpy() for layer in layers], np.concatenate(labels), (correct / total if pretext else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--output-dir", default="runs/probe-against-random-init")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from sklearn.linear_model import LogisticRegression

    from hfssl.recipe import load_recipe
    from hfssl.registry import PRETEXT_TASK, get_method
    from hfssl.training.trainer import build_model, train
    from hfssl.views import build_eval_transform

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, ["train.progress_bar=false", "train.trackers=[]", "train.knn_every=null",
                                       "eval.protocols=[]", *args.overrides])
    start = time.perf_counter()
    result = train(recipe, args.output_dir, overwrite=True)
    print(f"trained {result.steps} steps in {time.perf_counter() - start:.0f} s: {args.output_dir}")
    torch.manual_seed(recipe.train.seed)
    untrained = build_model(recipe, result.data.config_updates)
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    pretext = PRETEXT_TASK in get_method(recipe.method).provides
    for name, model in (("trained", result.model), ("random init", untrained)):
        train_layers, train_labels, _ = _features(model, transform, result.data.eval_train_dataset, False)
        test_layers, test_labels, accuracy = _features(model, transform, result.data.eval_test_dataset, pretext)
        scores = []
        for fit, held_out in zip(train_layers, test_layers):
            mean, std = fit.mean(0), fit.std(0) + 1e-6
            probe = LogisticRegression(max_iter=3000, C=1.0).fit((fit - mean) / std, train_labels)
            scores.append(f"{100 * probe.score((held_out - mean) / std, test_labels):.1f} %")
        line = f"{name}: linear probe per stage (first to last) {', '.join(scores)}"
        if accuracy is not None:
            line += f"; held-out pretext accuracy {100 * accuracy:.1f} %"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
