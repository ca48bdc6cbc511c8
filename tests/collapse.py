"""Does a short real training run of a recipe collapse? Shared by the method tests.

The recipe's ResNet (128-d features) for 12 steps of 64 images. The effective rank is that of the
uncentred test-split features (hfssl.training.monitor.effective_rank): a collapsed encoder (every
image on one point) has 1; the freshly initialised network measures 14 (MoCo v3's seed) to 22
(MoCo v2's); runs of this length measured 50-64 (2 steps already gave 54, 30 steps 63). 30 lies
above every untrained network with margin and well below what the short runs reach, so the check
fails on collapse (or on a run that does not move the encoder) and not on run-to-run spread.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hfssl.evaluation.features import extract_features_with
from hfssl.recipe import load_recipe
from hfssl.training.monitor import effective_rank
from hfssl.training.trainer import train
from hfssl.views import build_eval_transform

REPO = Path(__file__).resolve().parents[1]
MIN_EFFECTIVE_RANK = 30.0
SHORT_RUN = ["train.progress_bar=false", "train.trackers=[]", "train.knn_every=null", "eval.protocols=[]",
             "train.batch_size=64", "train.max_steps=12", "train.checkpoint_every=1000"]


def assert_short_digits_run_does_not_collapse(method: str, out_dir: Path, overrides: list[str] = ()) -> None:
    """Train ``recipes/<method>/digits.yaml`` for 12 steps; its features' effective rank must be above
    :data:`MIN_EFFECTIVE_RANK` and an untrained copy's below it (so the threshold says something)."""
    recipe = load_recipe(REPO / "recipes" / method / "digits.yaml", [*SHORT_RUN, *overrides])
    result = train(recipe, out_dir)
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    model = result.model
    features, _ = extract_features_with(model.get_embeddings, transform, result.data.eval_test_dataset, model=model)
    untrained = type(model)(model.config)
    untrained_features, _ = extract_features_with(untrained.get_embeddings, transform, result.data.eval_test_dataset,
                                                  model=untrained)
    rank = effective_rank(torch.from_numpy(features))
    untrained_rank = effective_rank(torch.from_numpy(untrained_features))
    assert rank > MIN_EFFECTIVE_RANK, (rank, untrained_rank)
    assert untrained_rank < MIN_EFFECTIVE_RANK, (rank, untrained_rank)
