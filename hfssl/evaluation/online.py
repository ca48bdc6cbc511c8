"""Online kNN during training: a trainer callback that scores the current backbone every few steps.

Given to :func:`hfssl.training.trainer.train` by :mod:`hfssl.pipeline` when ``train.knn_every`` is
set: kNN top-1 (``k = train.knn_k``) on the first ``train.knn_max_samples`` rows of the held-out
splits (a uniform sample, given their fixed random order), logged as ``knn/top1_k<k>``. The main
process computes it; the others wait.
"""

from __future__ import annotations

from typing import Any

import torch

from hfssl.evaluation.features import extract_features_with
from hfssl.evaluation.knn import knn_evaluate
from hfssl.recipe import Recipe
from hfssl.views import build_eval_transform


class OnlineKNN:
    """``on_step_end`` every ``recipe.train.knn_every`` steps; see the module docstring."""

    def __init__(self, recipe: Recipe, temperature: float = 0.07) -> None:
        self.recipe = recipe
        self.temperature = temperature

    def reads_model(self, step: int) -> bool:
        """Whether ``on_step_end`` reads the weights at ``step`` (under FSDP2 they are gathered only then)."""
        return bool(self.recipe.train.knn_every) and step % self.recipe.train.knn_every == 0

    @torch.no_grad()
    def on_step_end(self, step: int, model: torch.nn.Module, data: Any, accelerator: Any) -> dict[str, float]:
        train = self.recipe.train
        if not self.reads_model(step):
            return {}
        logs: dict[str, float] = {}
        if data.eval_train_dataset is None or data.eval_test_dataset is None:
            return logs
        if accelerator.is_main_process:
            model.eval()
            transform = build_eval_transform(self.recipe.views, self.recipe.data.image_size, self.recipe.data.channels)
            limit = train.knn_max_samples
            train_set = data.eval_train_dataset.select(range(min(limit, len(data.eval_train_dataset))))
            test_set = data.eval_test_dataset.select(range(min(limit, len(data.eval_test_dataset))))
            batch = self.recipe.eval.batch_size
            train_f, train_y = extract_features_with(model.get_embeddings, transform, train_set, batch)
            test_f, test_y = extract_features_with(model.get_embeddings, transform, test_set, batch)
            if (train_y >= 0).all():
                num_classes = int(max(train_y.max(), test_y.max())) + 1
                result = knn_evaluate(train_f, train_y, test_f, test_y, ks=[train.knn_k],
                                      temperature=self.temperature, num_classes=num_classes)
                logs[f"knn/top1_k{train.knn_k}"] = float(result[0]["top1"])
            model.train()
        accelerator.wait_for_everyone()
        return logs
