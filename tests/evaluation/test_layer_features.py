"""Per-layer image features (the capability ``layer-features``): hfssl models, exported encoders and any
transformers vision model give one pooled feature per stage (ResNet, ConvNeXt) or block (ViT)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import ViTImageProcessor

from hfssl.backbones import layer_features
from hfssl.evaluation.features import load_feature_extractor
from tiny import TINY_CONVNEXT, TINY_RESNET, TINY_VIT, TINY_VIT_MAE, tiny_model

SIZE = 16


def _images(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize(("method", "backbone", "count"), [
    ("simclr", TINY_RESNET, len(TINY_RESNET["depths"])),
    ("simclr", TINY_CONVNEXT, len(TINY_CONVNEXT["depths"])),
    ("dino", TINY_VIT, TINY_VIT["num_hidden_layers"]),
], ids=["simclr-resnet", "simclr-convnext", "dino-vit"])
def test_an_hfssl_model_gives_one_feature_per_stage_or_block(method, backbone, count):
    model = tiny_model(method, backbone_config=dict(backbone)).eval()
    pixel_values = _images()
    with torch.no_grad():
        layers = model.get_layer_embeddings(pixel_values)
        embeddings = model.get_embeddings(pixel_values)
        reference = layer_features(model.get_backbone(), pixel_values, model.config.pooling)
    assert len(layers) == count
    widths = backbone.get("hidden_sizes") or [backbone["hidden_size"]] * count
    assert [tuple(layer.shape) for layer in layers] == [(3, width) for width in widths]
    for layer, expected in zip(layers, reference):
        torch.testing.assert_close(layer, expected)
    torch.testing.assert_close(layers[-1], embeddings)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_mae_gives_every_unmasked_block_equal_to_its_exported_vit(pooling):
    model = tiny_model("mae", pooling=pooling).eval()
    pixel_values = _images()
    with torch.no_grad():
        layers = model.get_layer_embeddings(pixel_values)
        exported = model.export_backbone()
        reference = exported(pixel_values=pixel_values, output_hidden_states=True)
    blocks = [exported.layernorm(hidden) for hidden in reference.hidden_states[1:]]
    expected = [block[:, 1:].mean(dim=1) if pooling == "mean" else block[:, 0] for block in blocks]
    assert len(layers) == TINY_VIT_MAE["num_hidden_layers"]
    for layer, value in zip(layers, expected):
        torch.testing.assert_close(layer, value, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(layers[-1], model.get_embeddings(pixel_values))


def _processor() -> ViTImageProcessor:
    return ViTImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.5] * 3, image_std=[0.25] * 3)


@pytest.mark.parametrize("backbone", [TINY_RESNET, TINY_VIT], ids=["resnet", "vit"])
def test_feature_extractors_embed_layers_of_a_run_and_of_its_encoder(backbone, tmp_path: Path):
    model = tiny_model("simclr", backbone_config=dict(backbone)).eval()
    run = tmp_path / "run"
    model.save_pretrained(run)
    model.get_backbone().save_pretrained(run / "encoder")
    _processor().save_pretrained(run / "encoder")
    pixels = torch.randint(0, 256, (4, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    results = []
    for path in (run, run / "encoder"):
        extractor = load_feature_extractor(str(path), device="cpu")
        assert extractor.embed_layers is not None
        with torch.no_grad():
            pixel_values = extractor.transform(pixels)
            layers = extractor.embed_layers(pixel_values)
            torch.testing.assert_close(layers[-1], extractor.embed(pixel_values))
        results.append(layers)
    count = len(backbone.get("depths") or []) or backbone["num_hidden_layers"]
    assert len(results[0]) == len(results[1]) == count
    for from_run, from_encoder in zip(*results):
        torch.testing.assert_close(from_run, from_encoder, rtol=1e-5, atol=1e-5)
