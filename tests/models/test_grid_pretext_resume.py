"""Jigsaw and relative patch position resume exactly: their tiles, jitter and labels come from the engine's
generator only, so a run continued from a checkpoint ends with the uninterrupted run's weights. The run's
card (the ``patch-pretext`` family) says what the encoder was trained on, and the training pretext accuracy
is logged at every logged step."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hfssl.hub.card import build_card, validate_card
from hfssl.recipe import load_recipe
from hfssl.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
TINY_BACKBONE = "{model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 8, hidden_sizes: [8, 16], " \
                "depths: [1, 1]}"
#: What the card says the encoder saw (JigsawConfig / RelativePatchConfig.task_summary).
TRAINED_ON = {
    "jigsaw": "The encoder was trained on 9 tiles of 8 px (3x3 grid, gap 2 px, jitter up to 1 px, each tile normalised "
              "on its own) shuffled by one of 10 permutations of maximal Hamming distance, never on whole images",
    "relative_patch": "The encoder was trained on pairs of 8-px patches, the centre of a 3x3 grid and one of its 8 "
                      "neighbours (gap 2 px, jitter up to 1 px, 0.5 of the patches shrunk 2x and blown back up), never "
                      "on whole images",
}
#: 8-px tiles / patches (what the two-stage ResNet needs) in 10-px cells of 30-px digits.
OVERRIDES = {
    "jigsaw": ["model.tile_size=8", "model.gap=2", "model.jitter=1", "model.num_permutations=10",
               "model.tile_embedding_dim=8", "model.classifier_hidden_dim=16"],
    "relative_patch": ["model.patch_size=8", "model.gap=2", "model.jitter=1", "model.downsample_prob=0.5",
                       "model.patch_embedding_dim=8", "model.classifier_hidden_dim=16"],
}


@pytest.mark.parametrize("method", sorted(OVERRIDES))
def test_a_resumed_run_ends_with_the_uninterrupted_runs_weights(method, tmp_path):
    recipe = load_recipe(REPO / "recipes" / method / "digits.yaml", [
        *OVERRIDES[method], f"model.backbone_config={TINY_BACKBONE}", "data.image_size=30", "train.batch_size=16",
        "train.max_steps=6", "train.checkpoint_every=3", "train.log_every=1", "train.progress_bar=false",
        "train.trackers=[tensorboard]", "train.knn_every=null", "eval.protocols=[]"])
    full = train(recipe, tmp_path / "full")
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(full.output_dir / "checkpoints" / "step-00000003", resumed_dir / "checkpoints" / "step-00000003")
    resumed = train(recipe, resumed_dir, resume=True)
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step-00000003"
    expected, actual = load_file(full.output_dir / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    middle = load_file(full.output_dir / "checkpoints" / "step-00000003" / "model.safetensors")
    assert expected.keys() == actual.keys()
    assert any(not torch.equal(middle[name], expected[name]) for name in expected)  # steps 4-6 changed the weights
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    accuracy = []
    for events in sorted((full.output_dir / "logs").rglob("events.out.tfevents.*")):  # the hparams file has none
        accumulator = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        accumulator.Reload()
        if "train/pretext_accuracy" in accumulator.Tags()["scalars"]:
            accuracy += [event.value for event in accumulator.Scalars("train/pretext_accuracy")]
    assert len(accuracy) == 6 and all(0.0 <= value <= 1.0 for value in accuracy)
    card = build_card(full.output_dir)
    validate_card(card)
    assert TRAINED_ON[method] in str(card)
    assert card.data.pipeline_tag == "image-feature-extraction" and "pretext-task" in card.data.tags
