"""The reconstruction methods publish like every other: a real (tiny) run of the variational and denoising
autoencoders and the context encoder through the whole pipeline (train, `reconstruction` evaluation, export,
pictures, card), pushed to the local Hub server; the card carries the reconstruction error in its model-index
and the method's own pictures, and the encoder loads from the Hub in a fresh process without hfssl, equal to
the run's own."""

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
#: Each method's own pictures besides the input / corrupted / reconstruction triplets.
METHODS = {"vae": ["prior_samples.png"], "denoising_autoencoder": [], "context_encoder": []}


def test_the_reconstruction_methods_publish_their_card_and_an_encoder_that_loads_without_hfssl(hub_env, tmp_path):
    torch.set_num_threads(1)
    runs = {}
    for method, pictures in METHODS.items():
        recipe = load_recipe(REPO / "recipes" / method / "digits.yaml", [
            f"model.backbone_config={TINY_BACKBONE}", "train.batch_size=16", "train.max_steps=4",
            "train.checkpoint_every=4", "train.progress_bar=false", "train.trackers=[]", "train.knn_every=null",
            "eval.protocols=[reconstruction]", "eval.max_train_samples=200", "eval.max_test_samples=64",
            "eval.baselines=false", "hub.license=mit"])
        runs[method] = run(recipe, tmp_path / method).output_dir
        push_run(runs[method], f"{USER}/{method}-tiny", retries=2, retry_wait=0.01)

        files = hub_env.files(f"{USER}/{method}-tiny")
        card = ModelCard(files["README.md"].decode())
        assert card.data.library_name == "hfssl"
        metrics = {result.metric_type: result.metric_value for result in card.data.eval_results}
        assert {"mse", "psnr"} <= metrics.keys(), metrics  # the reconstruction protocol's held-out error
        assert 0 < metrics["mse"] < 10 and metrics["psnr"] > 0, metrics
        text = str(card)
        for picture in ["reconstruction_triplets.png", *pictures]:
            assert f"(images/{picture})" in text, (method, picture)
            assert f"images/{picture}" in files, (method, picture)
        assert files.keys() >= {"encoder/config.json", "encoder/model.safetensors"}
        assert not any(name.startswith("encoder/") and "decoder" in name for name in files)

    check_hub_resnet_encoders(hub_env.endpoint, runs, 16, tmp_path)
