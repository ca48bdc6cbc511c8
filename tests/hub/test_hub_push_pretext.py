"""The three pretext-task methods publish like every other: a real (tiny) run of RotNet, jigsaw and relative
patch position through the whole pipeline (train, `pretext` and `layer-linear` evaluation, export, card),
pushed to the local Hub server; the card carries the pretext accuracy and the layer table, and the encoder
loads from the Hub in a fresh process without hfssl, equal to the run's own."""

from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import ModelCard

from hfssl.hub.push import push_run
from hfssl.pipeline import run
from hfssl.recipe import load_recipe
from hub_fixtures import USER, check_hub_resnet_encoders

REPO = Path(__file__).resolve().parents[2]
TINY_BACKBONE = "{model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 8, hidden_sizes: [8, 16], " \
                "depths: [1, 1]}"
#: Tiny tasks on 30-px digits (8-px tiles and patches in 10-px cells; RotNet on the whole image).
OVERRIDES = {
    "rotnet": ["data.image_size=30", "model.classifier_hidden_dim=16"],
    "jigsaw": ["data.image_size=30", "model.tile_size=8", "model.gap=2", "model.jitter=1", "model.num_permutations=10",
               "model.tile_embedding_dim=8", "model.classifier_hidden_dim=16"],
    "relative_patch": ["data.image_size=30", "model.patch_size=8", "model.gap=2", "model.jitter=1",
                       "model.patch_embedding_dim=8", "model.classifier_hidden_dim=16"],
}


def test_the_pretext_methods_publish_their_card_and_an_encoder_that_loads_without_hfssl(hub_env, tmp_path):
    torch.set_num_threads(1)
    runs = {}
    for method, overrides in OVERRIDES.items():
        recipe = load_recipe(REPO / "recipes" / method / "digits.yaml", [
            *overrides, f"model.backbone_config={TINY_BACKBONE}", "train.batch_size=16", "train.max_steps=4",
            "train.checkpoint_every=4", "train.progress_bar=false", "train.trackers=[]", "train.knn_every=null",
            "eval.protocols=[pretext, layer-linear]", "eval.max_train_samples=200", "eval.baselines=false",
            "hub.license=mit"])
        runs[method] = run(recipe, tmp_path / method).output_dir
        push_run(runs[method], f"{USER}/{method}-tiny", retries=2, retry_wait=0.01)

        card = ModelCard(hub_env.files(f"{USER}/{method}-tiny")["README.md"].decode())
        assert card.data.library_name == "hfssl" and "pretext-task" in card.data.tags
        results = {(result.task_type, result.metric_type) for result in card.data.eval_results}
        assert ("other", "accuracy") in results, results  # the pretext task's held-out accuracy
        text = str(card)
        assert "Pretext task" in text
        table = [line for line in text.splitlines() if line.startswith(("| 1 | 8 |", "| 2 (output) | 16 |"))]
        assert len(table) == 2, text  # the layer x accuracy table: both stages of the tiny ResNet (width 8, 16)
        assert hub_env.files(f"{USER}/{method}-tiny").keys() >= {"encoder/config.json", "encoder/model.safetensors"}

    check_hub_resnet_encoders(hub_env.endpoint, runs, 30, tmp_path)
