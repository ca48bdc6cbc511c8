"""A whole run: check the recipe, train, then export, evaluate, draw and write the model card.

This is what ``hfssl train`` and ``accelerate launch -m hfssl.train`` run. It sits above every other
layer (ARCHITECTURE.md) and only composes them:

1. :func:`check_training_recipe`: everything that can be checked before work starts (the
   recipe's protocols and their settings against what the method's model provides, and that the
   Hugging Face caches the run will write can be written);
2. :func:`hfssl.training.trainer.train` with the online-kNN callback when ``train.knn_every`` is set, the
   online linear probe when ``train.online_linear`` is and the online zero-shot classifier when
   ``train.zero_shot_every`` is (:mod:`hfssl.evaluation.online`); a run stopped by
   ``train.early_stop`` ends there (:class:`hfssl.errors.EarlyStopped`, exit code 5: nothing is exported or
   evaluated);
3. on the main process, :func:`finish_run`: the image features are checked to be finite first (a
   diverged model is neither exported, scored nor described: exit code 3), ``MethodSpec.export``
   writes ``RUN/encoder``, the evaluation dispatcher writes ``eval_results.json``, the projection plot and the method's own
   pictures go to ``RUN/images``, and :func:`hfssl.hub.card.write_model_card` writes ``README.md``.

The main process holds the run folder's lock through all of it and the folder's manifest records every
file written (:func:`hfssl.training.run_directory.run_folder`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets as hf_datasets
import torch
from accelerate import Accelerator

from hfssl.data.sources import check_cache_writable, writes_datasets_cache
from hfssl.data.training import TrainingData
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.metrics import metric_cache_folders
from hfssl.evaluation.online import OnlineKNN, OnlineLinear, OnlineZeroShot, draw_zero_shot_curve, zero_shot_settings
from hfssl.evaluation.protocols import get_protocol
from hfssl.evaluation.protocols.knn import KNNSettings
from hfssl.evaluation.runner import check_recipe, draw_protocol_pictures, evaluate, write_eval_results
from hfssl.export import ExportContext
from hfssl.hub.card import write_model_card
from hfssl.hub.checkpoints import CheckpointMirror, download_checkpoint, is_hub_checkpoint, parse_hub_checkpoint
from hfssl.evaluation.pictures import draw_evaluation_pictures
from hfssl.plots import PictureContext
from hfssl.recipe import Recipe, load_recipe
from hfssl.registry import IMAGE_FEATURES, TEXT_FEATURES, get_method
from hfssl.settings import build_section
from hfssl.training.launch import check_launch
from hfssl.training.run_directory import is_main_process, run_folder
from hfssl.training.trainer import TrainerCallback, TrainResult, check_schedule_names, train

logger = logging.getLogger(__name__)

#: Test embeddings drawn in the card's projection plot.
PLOT_POINTS = 2000


def check_training_recipe(recipe: Recipe) -> None:
    """Everything about a recipe that can fail after training, checked before it starts: the
    evaluation protocols and their settings against what the model provides, and the names in
    ``train.schedules`` against the scalars the model class declares (no model is built)."""
    check_recipe(recipe)
    if recipe.train.zero_shot_every:
        zero_shot_settings(recipe)  # eval.zero-shot, read also when the protocol is not in eval.protocols
    check_writable_caches(recipe)
    check_schedule_names(recipe)


def check_writable_caches(recipe: Recipe) -> None:
    """The Hugging Face caches this run will write, probed before any work (a read-only cache used to
    fail only in the evaluation after the whole training): ``datasets``' cache when the data source is
    read by a builder, ``evaluate``'s module and metric caches when a protocol scores features with
    the top-k metric module (the protocols on image or text features, and online kNN)."""
    data = recipe.data
    if writes_datasets_cache(data.source, data.streaming):
        check_cache_writable(hf_datasets.config.HF_DATASETS_CACHE, f"datasets, loading data.source={data.source!r},")
    scored = [name for name in recipe.eval.protocols
              if {IMAGE_FEATURES, TEXT_FEATURES} & set(get_protocol(name).needs)]
    if scored or recipe.train.knn_every:
        user = f"evaluate, loading the top-k accuracy metric for {', '.join(scored) or 'train.knn_every'},"
        for folder in metric_cache_folders():
            check_cache_writable(folder, user)


def load_training_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """:func:`hfssl.recipe.load_recipe` followed by :func:`check_training_recipe`, for callers that
    want a recipe checked before they do anything else with it; :func:`run` checks its recipe itself
    (``hfssl train`` loads with :func:`~hfssl.recipe.load_recipe` and lets :func:`run` check, once)."""
    recipe = load_recipe(path, overrides)
    check_training_recipe(recipe)
    return recipe


def run(recipe: Recipe, output_dir: str | Path, resume: bool | str = False,
        accelerator: Accelerator | None = None, overwrite: bool = False,
        hub_checkpoints: str | None = None) -> TrainResult:
    """Train ``recipe`` into ``output_dir`` and finish the run (export, evaluation, pictures, card).

    ``resume`` and ``overwrite`` are :func:`hfssl.training.trainer.train`'s: the folder and the
    checkpoint are checked before any work, and nothing is written from non-finite weights (the
    trainer raises before its final save, so no export, evaluation or card follows). ``resume`` may
    also name a Hub branch of checkpoints, ``hf://OWNER/NAME[@BRANCH]`` (its newest is downloaded first),
    and ``hub_checkpoints`` (the same form) mirrors every checkpoint to one
    (:mod:`hfssl.hub.checkpoints`; the repo, branch and token are checked before any work).
    """
    if accelerator is None:
        check_launch()  # before the folder's lock: a launch that would train alone is refused first
    check_training_recipe(recipe)
    mirror = None
    if hub_checkpoints is not None:
        ref = parse_hub_checkpoint(hub_checkpoints)  # every process: a bad value is refused by all
        if is_main_process(accelerator):
            mirror = CheckpointMirror(ref).open()
    if is_hub_checkpoint(resume):
        resume = str(download_checkpoint(str(resume)))
    if is_main_process(accelerator):  # the folder's lock and record span training and what follows it
        with run_folder(output_dir, resume, overwrite, "hfssl train"):
            return _run(recipe, output_dir, resume, accelerator, overwrite, mirror)
    return _run(recipe, output_dir, resume, accelerator, overwrite, mirror)


def _run(recipe: Recipe, output_dir: str | Path, resume: bool | str, accelerator: Accelerator | None,
         overwrite: bool, mirror: CheckpointMirror | None = None) -> TrainResult:
    callbacks: list[TrainerCallback] = []
    if recipe.train.knn_every:
        knn = build_section(KNNSettings, "eval.knn", recipe.eval.protocol_settings("knn"))
        callbacks.append(OnlineKNN(recipe, temperature=knn.temperature))
    if recipe.train.online_linear is not None:
        callbacks.append(OnlineLinear(recipe))
    if recipe.train.zero_shot_every:
        callbacks.append(OnlineZeroShot(recipe))
    result = train(recipe, output_dir, resume=resume, accelerator=accelerator, callbacks=callbacks,
                   overwrite=overwrite, checkpoint_hooks=[mirror.on_checkpoint] if mirror is not None else None)
    if result.accelerator.is_main_process:
        # The recipe as trained (train.mixed_precision: auto resolved), as recipe.yaml holds it.
        result.outputs = finish_run(result.output_dir, result.model, result.recipe or recipe, result.data)
    result.accelerator.wait_for_everyone()
    return result


def finish_run(run_dir: Path, model: torch.nn.Module, recipe: Recipe, data: TrainingData) -> dict[str, Any]:
    """Export, evaluate, draw and describe a trained run (main process)."""
    spec = get_method(recipe.method)
    run_dir = Path(run_dir)
    model.eval()
    context = EvaluationContext(
        eval_config=recipe.eval, data_config=recipe.data, model=model, recipe=recipe,
        train_split=data.eval_train_dataset, test_split=data.eval_test_dataset, label_names=data.label_names,
        run_dir=run_dir,
    )
    protocols = _servable(recipe, data)
    if any(IMAGE_FEATURES in get_protocol(name).needs for name in protocols):
        # Finite weights can still give non-finite features (a diverged run): the features are checked
        # (and cached for the protocols) before the encoder, the results or the card are written.
        context.image_features()
    outputs: dict[str, Any] = {
        "encoder": str(spec.export(model, run_dir / "encoder", ExportContext(recipe, run_dir, run_dir))),
    }
    if protocols:
        results = evaluate(context, protocols)
        outputs["eval_results"] = write_eval_results(results, run_dir / "eval_results.json", merge=False)
    images = run_dir / "images"
    pictures: list[Path] = []
    # Projections of the test features the evaluation computed, and the probes' confusion matrices.
    pictures += draw_evaluation_pictures(context, images, label_names=data.label_names, points=PLOT_POINTS)
    pictures += draw_protocol_pictures(context, images)
    if recipe.train.zero_shot_every:
        pictures += draw_zero_shot_curve(run_dir, images, recipe.train.zero_shot_every)
    if spec.pictures is not None:
        images.mkdir(parents=True, exist_ok=True)
        pictures += spec.pictures(model, PictureContext(images, recipe, data.eval_test_dataset, data.label_names))
    outputs["pictures"] = [str(path) for path in pictures]
    outputs["card"] = str(write_model_card(run_dir))
    return outputs


def _servable(recipe: Recipe, data: TrainingData) -> list[str]:
    """The recipe's protocols, less those that measure on the held-out split when the data has none."""
    protocols = list(recipe.eval.protocols)
    if data.eval_test_dataset is None:
        skipped = [name for name in protocols if get_protocol(name).held_out]
        if skipped:
            logger.info("%s has no labelled test split: skipping %s", recipe.data.source, ", ".join(skipped))
        protocols = [name for name in protocols if name not in skipped]
    return protocols
