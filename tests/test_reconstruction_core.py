"""The shared reconstruction core (issue 22): the image decoders of every backbone kind, the Reconstruction
record's checks, and the errors the ``reconstruction`` protocol reports (against loops, with and without a mask)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import ConvNextConfig, ResNetConfig, ViTConfig

from hfssl.decoders import ConvImageDecoder, TokenImageDecoder, build_image_decoder
from hfssl.reconstruction import Reconstruction, reconstruction_errors


@pytest.mark.parametrize("image_size", [16, 28])
def test_decoders_map_every_backbone_output_to_the_image(image_size):
    resnet = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    convnext = ConvNextConfig(num_channels=3, patch_size=2, num_stages=2, depths=[1, 1], hidden_sizes=[8, 16])
    vit = ViTConfig(image_size=image_size, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    cases = [(resnet, torch.randn(2, 16, 2, 2), {}), (convnext, torch.randn(2, 16, 3, 3), {}),
             (vit, torch.randn(2, 1 + (image_size // 4) ** 2, 16), {}),
             (resnet, torch.randn(2, 5), {"input_kind": "vector", "in_features": 5})]
    for config, features, options in cases:
        decoder = build_image_decoder(config, 2, image_size, hidden_size=8, **options)
        assert isinstance(decoder, TokenImageDecoder if config is vit else ConvImageDecoder)
        assert decoder(features).shape == (2, 2, image_size, image_size)
    with pytest.raises(ValueError, match="unknown options"):
        build_image_decoder(resnet, 1, 16, width=3)


def test_token_decoder_puts_each_patch_back_in_its_place():
    decoder = TokenImageDecoder(4, patch_size=2, out_channels=1, image_size=4, has_cls=False)
    decoder.mlp = torch.nn.Identity()  # token i's 4 values become patch i, row-major
    tokens = torch.arange(16.0).view(1, 4, 4)
    expected = torch.tensor([[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]], dtype=torch.float32)
    assert torch.equal(decoder(tokens)[0, 0], expected)


def test_errors_are_the_per_image_mse_and_psnr_over_the_mask():
    generator = torch.Generator().manual_seed(0)
    original = torch.randn(3, 1, 4, 4, generator=generator)
    reconstructed = original + 0.1 * torch.randn(3, 1, 4, 4, generator=generator)
    mask = (torch.rand(3, 1, 4, 4, generator=generator) < 0.5).float()
    mask[:, :, 0, 0] = 1.0
    mean, std = (0.5,), (0.25,)
    mse, psnr = reconstruction_errors(Reconstruction(original, original, reconstructed, mask), mean, std)
    for i in range(3):
        inside = mask[i, 0].bool()
        expected = float(((reconstructed[i, 0] - original[i, 0])[inside] ** 2).mean())
        assert float(mse[i]) == pytest.approx(expected, rel=1e-5)
        shown = [(min(max(r * 0.25 + 0.5, 0), 1) - min(max(o * 0.25 + 0.5, 0), 1)) ** 2
                 for r, o in zip(reconstructed[i, 0][inside].tolist(), original[i, 0][inside].tolist())]
        assert float(psnr[i]) == pytest.approx(10 * math.log10(1 / (sum(shown) / len(shown))), rel=1e-4)
    whole, _ = reconstruction_errors(Reconstruction(original, original, reconstructed), mean, std)
    torch.testing.assert_close(whole, ((reconstructed - original) ** 2).flatten(1).mean(1))
    with pytest.raises(ValueError, match="mask must be"):
        Reconstruction(original, original, reconstructed, mask[:, :, :2])
    with pytest.raises(ValueError, match="one shape"):
        Reconstruction(original, original, reconstructed[:, :, :2])
