"""Decoding rules of hfssl.data.decode: modes, value ranges, layouts, crop/resize, vectorised parity."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest
import torch
from image_files import encode, gradient_rgb, special_images

from hfssl.data.decode import arrays_to_pixels, decode_image, to_uint8


def reference_rgb(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def transformers_pixels(image: PIL.Image.Image) -> np.ndarray:
    """What transformers' pipelines give an image processor: ``load_image`` (EXIF, ``convert("RGB")``)."""
    from transformers.image_utils import load_image

    return np.asarray(load_image(image)).transpose(2, 0, 1)


def test_rgba_is_read_as_transformers_pipelines_read_it() -> None:
    """Alpha dropped, the stored colour kept: a pipeline on the file sees what training saw (issue 26)."""
    image = special_images()["rgba"]
    pixels = decode_image(image, channels=3, image_size=20)
    assert pixels.shape == (3, 20, 20) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, transformers_pixels(image))
    assert (pixels == np.array([200, 0, 0]).reshape(3, 1, 1)).all()  # the transparent half too: not white


def test_half_transparent_pixels_keep_their_stored_colour() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 1] = 90
    rgba[..., 3] = 128
    image = PIL.Image.fromarray(rgba, mode="RGBA")
    np.testing.assert_array_equal(decode_image(image, channels=3, image_size=8), transformers_pixels(image))
    grey = decode_image(image, channels=1, image_size=8)
    assert (grey == round(90 * 0.587)).all()  # the luma of (0, 90, 0), alpha ignored


def test_palette_cmyk_and_la_follow_pil_rgb_conversion() -> None:
    images = special_images()
    for name, file_format in (("palette", "PNG"), ("cmyk", "JPEG")):
        stored = encode(images[name], file_format)
        decoded = decode_image(PIL.Image.open(io.BytesIO(stored)), channels=3, image_size=20)
        np.testing.assert_array_equal(decoded, reference_rgb(PIL.Image.open(io.BytesIO(stored))))
    la = PIL.Image.fromarray(np.stack([np.full((6, 6), 40, np.uint8), np.full((6, 6), 255, np.uint8)], -1), mode="LA")
    assert (decode_image(la, channels=3, image_size=6) == 40).all()


def test_palette_with_transparency_keeps_its_palette_colour() -> None:
    image = PIL.Image.new("P", (6, 6), 0)
    image.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    image.info["transparency"] = 0
    decoded = decode_image(image, channels=3, image_size=6)
    np.testing.assert_array_equal(decoded, transformers_pixels(image))
    assert (decoded == np.array([10, 20, 30]).reshape(3, 1, 1)).all()


def test_16_bit_grey_maps_0_65535_to_0_255() -> None:
    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 257 * 4)  # k * 257 -> k
    decoded = decode_image(encode(PIL.Image.fromarray(values), "PNG"), channels=1, image_size=8)
    np.testing.assert_array_equal(decoded[0], (np.arange(64).reshape(8, 8) * 4).astype(np.uint8))


def test_one_bit_float_and_grey_to_rgb() -> None:
    bits = PIL.Image.fromarray(np.eye(8, dtype=bool))
    assert bits.mode == "1"
    decoded = decode_image(bits, channels=3, image_size=8)
    np.testing.assert_array_equal(decoded, np.repeat((np.eye(8) * 255).astype(np.uint8)[None], 3, axis=0))
    floats = PIL.Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), mode="F")
    assert (decode_image(floats, channels=1, image_size=8) == 128).all()


def test_rgb_to_grey_uses_luma_weights() -> None:
    picture = np.zeros((4, 4, 3), dtype=np.uint8)
    picture[..., 0] = 255
    # ITU-R 601-2: 0.299 * 255 = 76.2 -> 76
    assert (decode_image(picture, channels=1, image_size=4) == 76).all()


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((5, 5), 0.25, dtype=np.float32), 64),  # floats in [0, 1]
        (np.full((5, 5), 100.0, dtype=np.float64), 100),  # floats in [0, 255]
        (np.full((5, 5), 255 * 257, dtype=np.int32), 255),  # 16-bit range
        (np.full((5, 5), 7, dtype=np.int64), 7),  # 8-bit values in a wide integer type
    ],
)
def test_value_ranges(array: np.ndarray, expected: int) -> None:
    assert (to_uint8(array) == expected).all()
    assert (decode_image(array, channels=1, image_size=5) == expected).all()


def test_layouts_hwc_chw_lists_and_tensors_agree() -> None:
    picture = gradient_rgb(12, 12, seed=1)
    expected = decode_image(picture, channels=3, image_size=12)
    np.testing.assert_array_equal(expected, picture.transpose(2, 0, 1))
    np.testing.assert_array_equal(decode_image(picture.transpose(2, 0, 1), 3, 12), expected)
    np.testing.assert_array_equal(decode_image(picture.tolist(), 3, 12), expected)
    np.testing.assert_array_equal(decode_image(torch.from_numpy(picture), 3, 12), expected)


def test_not_an_image_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"shape \(5, 6, 7\) is not an image"):
        decode_image(np.zeros((5, 6, 7)), 3, 8)
    with pytest.raises(ValueError, match="different lengths"):
        decode_image([[1, 2], [3]], 3, 8)
    with pytest.raises(ValueError, match="NaN"):
        decode_image(np.full((4, 4), np.nan), 3, 8)
    with pytest.raises(FileNotFoundError, match="no image file at 'missing.png'"):
        decode_image("missing.png", 3, 8)


def test_non_square_keeps_the_centre_square() -> None:
    # 10 x 30: red 10-pixel borders left and right, blue centre square -> only blue survives
    picture = np.zeros((10, 30, 3), dtype=np.uint8)
    picture[:, :10, 0] = picture[:, 20:, 0] = 255
    picture[:, 10:20, 2] = 255
    decoded = decode_image(picture, channels=3, image_size=10)
    assert (decoded[0] == 0).all() and (decoded[2] == 255).all()
    np.testing.assert_array_equal(arrays_to_pixels(picture[None], 3, 10)[0], decoded)


def test_constant_images_stay_constant_through_resizing() -> None:
    for size in (7, 16, 45):
        assert (decode_image(np.full((23, 23), 77, np.uint8), 1, size) == 77).all()
        assert (arrays_to_pixels(np.full((2, 23, 23), 77, np.uint8), 1, size) == 77).all()


@pytest.mark.parametrize(("shape", "size"), [((28, 28), 32), ((28, 28), 16), ((30, 40, 3), 16), ((4, 18, 18), 8)])
def test_vectorised_path_matches_pil_within_rounding(shape: tuple[int, ...], size: int) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, *shape)).astype(np.uint8)
    if shape[0] == 4:  # an RGBA (C, H, W) batch
        images[:, 3] = rng.integers(0, 256, size=(4, *shape[1:]))
    for channels in (1, 3):
        vectorised = arrays_to_pixels(images, channels, size)
        one_by_one = np.stack([decode_image(image, channels, size) for image in images])
        assert vectorised.shape == (4, channels, size, size)
        assert np.abs(vectorised.astype(int) - one_by_one.astype(int)).max() <= 1
