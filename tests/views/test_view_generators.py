"""build_views end to end: shapes, seeding, probabilities 0 and 1, per-view probabilities, errors."""

from __future__ import annotations

import pytest
import torch

from hfssl.recipe import ViewsConfig
from hfssl.views import VIEW_KINDS, build_views
from hfssl.views.functional import gaussian_blur, rgb_to_grayscale, solarize

GREY = {1: dict(mean=(0.5,), std=(0.25,)), 3: dict(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))}

# Everything off and the crop covering the whole image: the views are the normalised images.
IDENTITY = dict(
    crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, color_jitter_prob=0.0,
    grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0,
)


def _pixels(batch: int = 4, channels: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, channels, size, size), generator=generator, dtype=torch.uint8)


def _normalised(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    mean_t = torch.tensor(mean).reshape(1, -1, 1, 1)
    std_t = torch.tensor(std).reshape(1, -1, 1, 1)
    return (pixels.float() / 255 - mean_t) / std_t


def _unnormalised(values: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    shape = (1,) * (values.ndim - 3) + (-1, 1, 1)
    return values * torch.tensor(std).reshape(shape) + torch.tensor(mean).reshape(shape)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("channels", [1, 3])
def test_multi_view_shapes_and_dtypes(channels: int) -> None:
    views = ViewsConfig(num_views=3, num_local_views=2, local_crop_size=8, crop_size=12, blur_prob=0.5,
                        solarize_prob=0.5, **GREY[channels])
    outputs = build_views("multi_view", views, image_size=16, channels=channels)(_pixels(5, channels), _seeded())
    assert set(outputs) == {"pixel_values", "local_pixel_values"}
    assert outputs["pixel_values"].shape == (5, 3, channels, 12, 12)
    assert outputs["local_pixel_values"].shape == (5, 2, channels, 8, 8)
    for tensor in outputs.values():
        assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_single_view_shape_and_no_local_views_by_default(channels: int) -> None:
    views = ViewsConfig(**GREY[channels])
    single = build_views("single_view", views, image_size=16, channels=channels)(_pixels(3, channels), _seeded())
    assert set(single) == {"pixel_values"} and single["pixel_values"].shape == (3, channels, 16, 16)
    multi = build_views("multi_view", views, image_size=16, channels=channels)(_pixels(3, channels), _seeded())
    assert set(multi) == {"pixel_values"} and multi["pixel_values"].shape == (3, 2, channels, 16, 16)


@pytest.mark.parametrize("kind", VIEW_KINDS)
def test_same_seed_same_views_other_seed_other_views(kind: str) -> None:
    views = ViewsConfig(num_local_views=2, local_crop_size=8, blur_prob_per_view=(1.0, 0.1),
                        solarize_prob_per_view=(0.0, 0.2), blur_prob=0.5, **GREY[3])
    generate = build_views(kind, views, image_size=16, channels=3)
    pixels = _pixels(6)
    first, again, other = generate(pixels, _seeded(7)), generate(pixels, _seeded(7)), generate(pixels, _seeded(8))
    for key in first:
        assert torch.equal(first[key], again[key])
        assert not torch.allclose(first[key], other[key])
    if kind == "multi_view":  # the two views of one image differ from each other
        assert not torch.allclose(first["pixel_values"][:, 0], first["pixel_values"][:, 1])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", VIEW_KINDS)
def test_probability_zero_and_full_crop_leave_images_unchanged(kind: str, channels: int) -> None:
    views = ViewsConfig(**IDENTITY, **GREY[channels])
    pixels = _pixels(4, channels)
    values = build_views(kind, views, image_size=16, channels=channels)(pixels, _seeded())["pixel_values"]
    expected = _normalised(pixels, **GREY[channels])
    if kind == "multi_view":
        expected = expected[:, None].expand(-1, 2, -1, -1, -1)
    torch.testing.assert_close(values, expected, atol=1e-5, rtol=0)


def test_flip_probability_one_mirrors_every_image() -> None:
    views = ViewsConfig(**{**IDENTITY, "flip_prob": 1.0}, **GREY[3])
    pixels = _pixels(4)
    values = build_views("single_view", views, image_size=16, channels=3)(pixels, _seeded())["pixel_values"]
    torch.testing.assert_close(values, _normalised(pixels, **GREY[3]).flip(-1), atol=1e-5, rtol=0)


def test_grayscale_probability_one_greys_every_image() -> None:
    views = ViewsConfig(**{**IDENTITY, "grayscale_prob": 1.0}, **GREY[3])
    pixels = _pixels(4)
    values = build_views("multi_view", views, image_size=16, channels=3)(pixels, _seeded())["pixel_values"]
    grey = rgb_to_grayscale(pixels.float() / 255)  # (B, 1, H, W)
    torch.testing.assert_close(_unnormalised(values, **GREY[3]), grey[:, None].expand(-1, 2, 3, -1, -1), atol=1e-5, rtol=0)


def test_brightness_jitter_probability_one_scales_every_image_by_its_own_factor() -> None:
    views = ViewsConfig(**{**IDENTITY, "color_jitter_prob": 1.0}, brightness=0.4, contrast=0.0, saturation=0.0,
                        hue=0.0, **GREY[3])
    pixels = _pixels(8)
    values = build_views("multi_view", views, image_size=16, channels=3)(pixels, _seeded())
    output = _unnormalised(values["pixel_values"], **GREY[3])  # (B, 2, C, H, W)
    source = (pixels.float() / 255)[:, None].expand_as(output)
    unclamped = (output < 1 - 1e-6) & (source > 0.05)
    ratios = torch.where(unclamped, output / source.clamp(min=1e-6), torch.nan).flatten(2)
    factors = ratios.nanmedian(dim=2).values  # (B, 2): one brightness factor per view
    assert (factors >= 0.6 - 1e-4).all() and (factors <= 1.4 + 1e-4).all()
    assert ((factors - 1).abs() > 1e-3).all()  # always applied
    expected = (source * factors[..., None, None, None]).clamp(0, 1)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=0)


def test_per_view_probabilities_one_and_zero() -> None:
    """BYOL-style asymmetry at its extremes: view 0 always blurred and solarized, view 1 never."""
    pixels = _pixels(6)
    source = pixels.float() / 255
    solarized = ViewsConfig(**IDENTITY, solarize_prob_per_view=(1.0, 0.0), **GREY[3])
    values = _unnormalised(build_views("multi_view", solarized, 16, 3)(pixels, _seeded())["pixel_values"], **GREY[3])
    torch.testing.assert_close(values[:, 0], solarize(source), atol=1e-5, rtol=0)
    torch.testing.assert_close(values[:, 1], source, atol=1e-5, rtol=0)

    blurred = ViewsConfig(**IDENTITY, blur_prob_per_view=(1.0, 0.0), blur_sigma=(1.0, 1.0), **GREY[3])
    values = _unnormalised(build_views("multi_view", blurred, 16, 3)(pixels, _seeded())["pixel_values"], **GREY[3])
    # sigma fixed at 1 and a 3-tap kernel for 16 px views (SimCLR's 10 % rule, at least 3)
    torch.testing.assert_close(values[:, 0], gaussian_blur(source, torch.ones(6), 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(values[:, 1], source, atol=1e-5, rtol=0)


def test_intermediate_probabilities_apply_to_the_expected_fraction() -> None:
    batch = 2000
    pixels = _pixels(batch, size=8)
    pixels[:, 0] = 255  # red channel saturated, so solarize and grey are both visible
    pixels[:, 1:] = 0
    views = ViewsConfig(**{**IDENTITY, "grayscale_prob": 0.5}, solarize_prob_per_view=(0.2, 0.7), **GREY[3])
    values = _unnormalised(build_views("multi_view", views, 8, 3)(pixels, _seeded())["pixel_values"], **GREY[3])
    greyed = (values[:, :, 1] > 0.1).flatten(2).all(dim=2)  # green > 0 only after grayscale, (B, 2)
    red = values[:, :, 0, 0, 0]
    # Red 1.0 -> 0.0 when solarized; grey 0.299 stays below 0.5 and is never solarized.
    solarized = ~greyed & (red < 0.5)
    assert abs(greyed.double().mean().item() - 0.5) < 0.04
    not_grey = (~greyed).double().sum(dim=0)
    rates = solarized.double().sum(dim=0) / not_grey
    assert abs(rates[0].item() - 0.2) < 0.05 and abs(rates[1].item() - 0.7) < 0.05


def test_one_channel_colour_settings_are_accepted_and_keep_one_channel() -> None:
    views = ViewsConfig(color_jitter_prob=1.0, grayscale_prob=1.0, saturation=0.8, hue=0.5, blur_prob=1.0,
                        solarize_prob=0.5, **GREY[1])
    values = build_views("multi_view", views, 28, 1)(_pixels(4, channels=1, size=28), _seeded())["pixel_values"]
    assert values.shape == (4, 2, 1, 28, 28) and torch.isfinite(values).all()


def test_views_keep_pixels_in_range_before_normalisation() -> None:
    views = ViewsConfig(color_jitter_prob=1.0, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.5,
                        blur_prob=0.5, solarize_prob=0.5, num_local_views=2, local_crop_size=8, **GREY[3])
    outputs = build_views("multi_view", views, 16, 3)(_pixels(16), _seeded())
    for tensor in outputs.values():
        raw = _unnormalised(tensor, **GREY[3])
        assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


# --- errors -----------------------------------------------------------------------------------


def test_unknown_kind_names_the_known_kinds() -> None:
    with pytest.raises(ValueError, match="'triple_view'.*multi_view, single_view"):
        build_views("triple_view", ViewsConfig(), 16, 3)


@pytest.mark.parametrize(
    "settings, channels, message",
    [
        (dict(), 1, r"views\.mean has 3 value"),
        (dict(mean=(0.5,), std=(0.5,)), 3, r"views\.mean has 1 value"),
        (dict(mean=(0.5,), std=(0.5, 0.5, 0.5)), 1, r"views\.std has 3 value"),
        (dict(mean=(0.5,), std=(0.0,)), 1, r"views\.std must be positive"),
        (dict(blur_prob_per_view=(1.0,)), 3, r"views\.blur_prob_per_view has 1 value.*num_views is 2"),
        (dict(solarize_prob_per_view=(0.0, 1.5)), 3, r"views\.solarize_prob_per_view must hold probabilities"),
        (dict(crop_ratio=(0.0, 1.0)), 3, r"views\.crop_ratio"),
        (dict(blur_sigma=(2.0, 1.0)), 3, r"views\.blur_sigma"),
        (dict(hue=0.7), 3, r"views\.hue"),
        (dict(num_local_views=2, local_crop_size=2), 3, r"views\.local_crop_size"),
    ],
)
def test_bad_settings_name_the_key(settings: dict, channels: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_views("multi_view", ViewsConfig(**settings), 16, channels)


def test_bad_batches_are_reported() -> None:
    generate = build_views("multi_view", ViewsConfig(), 16, 3)
    with pytest.raises(ValueError, match="uint8 batch"):
        generate(torch.rand(2, 3, 16, 16), _seeded())
    with pytest.raises(ValueError, match="3-channel"):
        generate(_pixels(2, channels=1), _seeded())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_views_are_seeded_and_stay_on_the_device() -> None:
    views = ViewsConfig(num_local_views=2, local_crop_size=8, blur_prob_per_view=(1.0, 0.1),
                        solarize_prob_per_view=(0.0, 0.2), **GREY[3])
    generate = build_views("multi_view", views, 16, 3)
    pixels = _pixels(8).cuda()
    first = generate(pixels, torch.Generator(device="cuda").manual_seed(3))
    again = generate(pixels, torch.Generator(device="cuda").manual_seed(3))
    for key in first:
        assert first[key].device.type == "cuda" and torch.equal(first[key], again[key])
    with pytest.raises(ValueError, match="generator is on cpu"):
        generate(pixels, _seeded())


def test_views_ignore_an_enclosing_autocast() -> None:
    """Views are float32 and computed in float32 even inside a mixed-precision training step."""
    views = ViewsConfig(blur_prob=1.0, solarize_prob=0.3, num_local_views=2, local_crop_size=8, **GREY[3])
    generate = build_views("multi_view", views, 16, 3)
    pixels = _pixels(4)
    plain = generate(pixels, _seeded())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = generate(pixels, _seeded())
    for key in plain:
        assert mixed[key].dtype == torch.float32 and torch.equal(mixed[key], plain[key])


def test_empty_batch_is_reported() -> None:
    with pytest.raises(ValueError, match="empty batch"):
        build_views("multi_view", ViewsConfig(), 16, 3)(_pixels(0), _seeded())
