"""The three pretext-task methods publish like every other: a real (tiny) run of RotNet, jigsaw and relative
patch position through the whole pipeline (train, `pretext` and `layer-linear` evaluation, export, card),
pushed to the local Hub server; the card carries the pretext accuracy and the layer table, and the encoder
loads from the Hub in a fresh process without hfssl, equal to the run's own."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import ModelCard
from transformers import AutoModel

from hfssl.hub.push import push_run
from hfssl.pipeline import run
from hfssl.recipe import load_recipe
from hub_fixtures import BLOCK_HFSSL, USER, run_python, subprocess_env

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

    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 30, 30)  # grey encoders are exported for RGB input (hfssl/export.py)
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    run_python(BLOCK_HFSSL + textwrap.dedent(f"""
        import numpy, torch
        from transformers import AutoModel
        torch.set_num_threads(1)
        pixels = torch.from_numpy(numpy.load("{tmp_path}/pixels.npy"))
        for method in {sorted(OVERRIDES)!r}:
            encoder = AutoModel.from_pretrained(f"{USER}/{{method}}-tiny", subfolder="encoder").eval()
            assert type(encoder).__name__ == "ResNetModel" and encoder.config.num_channels == 3, (method, encoder.config)
            with torch.no_grad():
                numpy.save(f"{tmp_path}/{{method}}.npy", encoder(pixel_values=pixels).pooler_output.numpy())
        assert not any(name.startswith("hfssl") for name in sys.modules)
    """), subprocess_env(hub_env.endpoint, tmp_path / "hf_home_load"), tmp_path)
    for method, run_dir in runs.items():
        local = AutoModel.from_pretrained(run_dir / "encoder").eval()
        with torch.no_grad():
            np.testing.assert_array_equal(np.load(tmp_path / f"{method}.npy"),
                                          local(pixel_values=pixels).pooler_output.numpy())
