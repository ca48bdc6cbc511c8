"""A whole run: check the recipe, train, then export, evaluate, draw and write the model card.

This is what ``hfssl train`` and ``accelerate launch -m hfssl.train`` run. It sits above every other
layer (ARCHITECTURE.md) and only composes them:

1. :func:`check_training_recipe`: everything that can be checked before work starts (the
   recipe's protocols and their settings against what the method's model provides);
2. :func:`hfssl.training.trainer.train` with the online-kNN callback when ``train.knn_every`` is set;
3. on the main process, :func:`finish_run`: ``MethodSpec.export`` writes ``RUN/encoder``, the
   evaluation dispatcher writes ``eval_results.json``, the projection plot and the method's own
   pictures go to ``RUN/images``, and :func:`hfssl.hub.card.write_model_card` writes ``README.md``.

The main process holds the run folder's lock through all of it and the folder's manifest records every
file written (:func:`hfssl.training.run_directory.run_folder`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from hfssl.data.training import TrainingData
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.online import OnlineKNN
from hfssl.evaluation.protocols import KNNSettings, get_protocol
from hfssl.evaluation.runner import check_recipe, evaluate, write_eval_results
from hfssl.export import ExportContext
from hfssl.hub.card import write_model_card
from hfssl.evaluation.pictures import draw_evaluation_pictures
from hfssl.plots import PictureContext
from hfssl.recipe import Recipe, load_recipe
from hfssl.registry import IMAGE_FEATURES, IMAGE_TEXT_EMBEDDINGS, get_method
from hfssl.settings import build_section
from hfssl.training.run_directory import is_main_process, run_folder
from hfssl.training.trainer import TrainResult, resolved_schedules, train

logger = logging.getLogger(__name__)

#: Test embeddings drawn in the card's projection plot.
PLOT_POINTS = 2000


def check_training_recipe(recipe: Recipe) -> None:
    """Everything about a recipe that can fail after training, checked before it starts: the
    evaluation protocols and their settings against what the model provides, and the names in
    ``train.schedules`` against the scalars the model schedules."""
    check_recipe(recipe)
    if recipe.train.schedules:
        spec = get_method(recipe.method)
        model = spec.model_class(spec.config_class(**recipe.model))  # a config-only build: no pretrained weights
        resolved_schedules(model, recipe)


def load_training_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """:func:`hfssl.recipe.load_recipe` followed by :func:`check_training_recipe`."""
    recipe = load_recipe(path, overrides)
    check_training_recipe(recipe)
    return recipe


def run(recipe: Recipe, output_dir: str | Path, resume: bool | str = False,
        accelerator: Accelerator | None = None, overwrite: bool = False) -> TrainResult:
    """Train ``recipe`` into ``output_dir`` and finish the run (export, evaluation, pictures, card).

    ``resume`` and ``overwrite`` are :func:`hfssl.training.trainer.train`'s: the folder and the
    checkpoint are checked before any work, and nothing is written from non-finite weights (the
    trainer raises before its final save, so no export, evaluation or card follows).
    """
    check_training_recipe(recipe)
    if is_main_process(accelerator):  # the folder's lock and record span training and what follows it
        with run_folder(output_dir, resume, overwrite, "hfssl train"):
            return _run(recipe, output_dir, resume, accelerator, overwrite)
    return _run(recipe, output_dir, resume, accelerator, overwrite)


def _run(recipe: Recipe, output_dir: str | Path, resume: bool | str, accelerator: Accelerator | None,
         overwrite: bool) -> TrainResult:
    callbacks = []
    if recipe.train.knn_every:
        knn = build_section(KNNSettings, "eval.knn", recipe.eval.protocol_settings("knn"))
        callbacks.append(OnlineKNN(recipe, temperature=knn.temperature))
    result = train(recipe, output_dir, resume=resume, accelerator=accelerator, callbacks=callbacks,
                   overwrite=overwrite)
    if result.accelerator.is_main_process:
        result.outputs = finish_run(result.output_dir, result.model, recipe, result.data)
    result.accelerator.wait_for_everyone()
    return result


def finish_run(run_dir: Path, model: torch.nn.Module, recipe: Recipe, data: TrainingData) -> dict[str, Any]:
    """Export, evaluate, draw and describe a trained run (main process)."""
    spec = get_method(recipe.method)
    run_dir = Path(run_dir)
    model.eval()
    outputs: dict[str, Any] = {
        "encoder": str(spec.export(model, run_dir / "encoder", ExportContext(recipe, run_dir, run_dir))),
    }
    context = EvaluationContext(
        eval_config=recipe.eval, data_config=recipe.data, model=model, recipe=recipe,
        train_split=data.eval_train_dataset, test_split=data.eval_test_dataset, label_names=data.label_names,
        run_dir=run_dir,
    )
    protocols = _servable(recipe, data)
    if protocols:
        results = evaluate(context, protocols)
        outputs["eval_results"] = write_eval_results(results, run_dir / "eval_results.json", merge=False)
    images = run_dir / "images"
    pictures: list[Path] = []
    # Projections of the test features the evaluation computed, and the probes' confusion matrices.
    pictures += draw_evaluation_pictures(context, images, label_names=data.label_names, points=PLOT_POINTS)
    if spec.pictures is not None:
        images.mkdir(parents=True, exist_ok=True)
        pictures += spec.pictures(model, PictureContext(images, recipe, data.eval_test_dataset, data.label_names))
    outputs["pictures"] = [str(path) for path in pictures]
    outputs["card"] = str(write_model_card(run_dir))
    return outputs


def _servable(recipe: Recipe, data: TrainingData) -> list[str]:
    """The recipe's protocols, less the image-feature ones when the data has no labelled test split."""
    protocols = list(recipe.eval.protocols)
    if data.eval_test_dataset is None:
        held_out = (IMAGE_FEATURES, IMAGE_TEXT_EMBEDDINGS)  # protocols that measure on the held-out split
        skipped = [name for name in protocols if any(need in get_protocol(name).needs for need in held_out)]
        if skipped:
            logger.info("%s has no labelled test split: skipping %s", recipe.data.source, ", ".join(skipped))
        protocols = [name for name in protocols if name not in skipped]
    return protocols
