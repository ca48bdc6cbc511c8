"""The evaluation transform against the image processor exported with every encoder."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import ViTImageProcessorPil

from hfssl.data.decode import arrays_to_pixels, decode_image
from hfssl.export import build_image_processor
from hfssl.recipe import ViewsConfig
from hfssl.views import build_eval_transform

NORMALISATION = {1: dict(mean=(0.45,), std=(0.22,)), 3: dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))}


def _pixels(batch: int, channels: int, size: int | tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Smooth images with noise: like photos, and with every grey level in use."""
    height, width = (size, size) if isinstance(size, int) else size
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((batch, channels, 5, 5), generator=generator) * 255
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    noise = torch.randn((batch, channels, height, width), generator=generator) * 20
    return (smooth + noise).round().clamp(0, 255).to(torch.uint8)


def _processors(size: int, channels: int, mean: tuple[float, ...], std: tuple[float, ...]) -> list:
    explicit = ViTImageProcessorPil(
        do_resize=True, size={"height": size, "width": size}, resample=2, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=list(mean), image_std=list(std),
    )
    return [explicit]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("source_size", [20, 32, 45, 96, (28, 40)])
def test_eval_transform_matches_a_pil_resize(channels: int, source_size: int | tuple[int, int]) -> None:
    views = ViewsConfig(**NORMALISATION[channels])
    pixels = _pixels(4, channels, source_size)
    transform = build_eval_transform(views, image_size=32)
    values = transform(pixels)
    assert values.shape == (4, channels, 32, 32) and values.dtype == torch.float32
    for processor in _processors(32, channels, **NORMALISATION[channels]):
        expected = processor(images=list(pixels.numpy()), input_data_format="channels_first", return_tensors="pt")
        expected = expected["pixel_values"]
        # The same picture up to PIL's fixed-point rounding: at most one grey level here and there.
        one_level = 1.0 / 255 / min(NORMALISATION[channels]["std"])
        difference = (values - expected).abs()
        assert difference.max().item() <= one_level + 1e-5
        assert (difference > 1e-4).double().mean().item() < 0.05
        if source_size == 32:
            torch.testing.assert_close(values, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("source_size", [20, 32, 96, (28, 40), (53, 30)])
def test_the_exported_image_processor_does_what_the_data_module_and_eval_transform_do(
        channels: int, source_size: int | tuple[int, int]) -> None:
    """A raw image of any size through the exported processor (what a pipeline does) against hfssl's own
    path: decode (shorter side resized, centre square cropped) then the evaluation transform. Train/serve
    skew of the resize would show here (a squashing processor fails the non-square sizes)."""
    views = ViewsConfig(**NORMALISATION[channels])
    pixels = _pixels(3, channels, source_size, seed=1)
    images = [PIL.Image.fromarray(image[0] if channels == 1 else image.transpose(1, 2, 0)) for image in pixels.numpy()]
    decoded = torch.from_numpy(np.stack([decode_image(image, channels, 32) for image in images]))
    values = build_eval_transform(views, image_size=32)(decoded)
    vectorised = torch.from_numpy(arrays_to_pixels(pixels.numpy(), channels, 32))
    processor = build_image_processor(32, NORMALISATION[channels]["mean"], NORMALISATION[channels]["std"], channels)
    expected = processor(images=images, return_tensors="pt")["pixel_values"]
    one_level = 1.0 / 255 / min(NORMALISATION[channels]["std"])
    torch.testing.assert_close(values, expected, atol=1e-5, rtol=0)  # PIL path: the same PIL resize and crop
    assert (vectorised.int() - decoded.int()).abs().max().item() <= 1  # vectorised decode: within a grey level
    assert (values - build_eval_transform(views, image_size=32)(vectorised)).abs().max().item() <= one_level + 1e-5


def test_eval_transform_uses_crop_size_and_is_deterministic() -> None:
    views = ViewsConfig(crop_size=24, **NORMALISATION[3])
    pixels = _pixels(3, 3, 32)
    transform = build_eval_transform(views, image_size=32)
    values = transform(pixels)
    assert values.shape == (3, 3, 24, 24)
    assert torch.equal(values, transform(pixels))
    # Per-channel normalisation: undoing it gives grey levels in [0, 1].
    raw = values * torch.tensor(views.std).reshape(1, 3, 1, 1) + torch.tensor(views.mean).reshape(1, 3, 1, 1)
    np.testing.assert_allclose((raw * 255).numpy(), (raw * 255).round().numpy(), atol=1e-3)


def test_eval_transform_reports_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match=r"views\.mean has 3 value"):
        build_eval_transform(ViewsConfig(), 32, channels=1)
    with pytest.raises(ValueError, match=r"views\.mean must have 1 or 3 values"):
        build_eval_transform(ViewsConfig(mean=(0.5, 0.5), std=(0.5, 0.5)), 32)
    transform = build_eval_transform(ViewsConfig(), 32)
    with pytest.raises(ValueError, match="3-channel"):
        transform(_pixels(2, 1, 32))
    with pytest.raises(ValueError, match="uint8 batch"):
        transform(torch.rand(2, 3, 32, 32))
