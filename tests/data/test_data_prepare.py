"""prepare_image_dataset: column mapping and its errors, bad images, caps, order, caching, statistics."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
from image_files import encode, gradient_rgb

from hfssl.data import images as images_module
from hfssl.data.decode import decode_image
from hfssl.data.images import BadImageError, dataset_mean_std, load_image_splits, prepare_image_dataset
from hfssl.data.sources import DataSourceError
from hfssl.data.config import ImageDataConfig


def labelled_images(count: int, size: int = 10) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "photo": [PIL.Image.fromarray(gradient_rgb(size, size, seed=index)) for index in range(count)],
            "kind": [index % 3 for index in range(count)],
            "caption": [f"picture number {index}" for index in range(count)],
            "score": [float(index) / 2 for index in range(count)],
        },
        features=datasets.Features({
            "photo": datasets.Image(),
            "kind": datasets.ClassLabel(names=["x", "y", "z"]),
            "caption": datasets.Value("string"),
            "score": datasets.Value("float32"),
        }),
    )


def config(**values: object) -> ImageDataConfig:
    return ImageDataConfig(**{"source": "memory", "image_size": 10, **values})


def test_auto_detects_image_and_label_columns() -> None:
    prepared = prepare_image_dataset(labelled_images(6), config(), "train")
    assert prepared.column_names == ["pixels", "label"]
    assert prepared.features["label"].names == ["x", "y", "z"]
    row = prepared[0]
    assert tuple(row["pixels"].shape) == (3, 10, 10) and str(row["pixels"].dtype) == "torch.uint8"
    assert sorted(int(row["label"]) for row in prepared) == [0, 0, 1, 1, 2, 2]


def test_unlabelled_sets_get_minus_one() -> None:
    dataset = labelled_images(4).remove_columns(["kind"])
    prepared = prepare_image_dataset(dataset, config(), "train")
    assert [int(row["label"]) for row in prepared] == [-1, -1, -1, -1]


def test_missing_image_column_lists_the_columns() -> None:
    with pytest.raises(DataSourceError) as error:
        prepare_image_dataset(labelled_images(2), config(image_column="picture"), "train")
    message = str(error.value)
    assert "data.image_column='picture' is not a column of dataset 'memory' split 'train'" in message
    assert "'photo' (images)" in message and "'kind' (ClassLabel (3 classes))" in message


def test_non_image_columns_are_refused() -> None:
    with pytest.raises(DataSourceError, match=r"'kind' .* holds ClassLabel \(3 classes\), not images.*'photo'"):
        prepare_image_dataset(labelled_images(2), config(image_column="kind"), "train")
    with pytest.raises(DataSourceError, match=r"'score' .* holds float32 values, not images"):
        prepare_image_dataset(labelled_images(2), config(image_column="score"), "train")
    with pytest.raises(DataSourceError, match=r"'caption' .* holds text such as 'picture number 0', not image file"):
        prepare_image_dataset(labelled_images(2), config(image_column="caption"), "train")


def test_no_detectable_image_column() -> None:
    dataset = labelled_images(2).rename_column("photo", "thing")
    dataset = dataset.cast_column("thing", datasets.Image(decode=False)).map(
        lambda row: {"thing": row["thing"]["bytes"]}, features=datasets.Features({
            "thing": datasets.Value("binary"), "kind": dataset.features["kind"], "caption": datasets.Value("string"),
            "score": datasets.Value("float32")})
    )
    with pytest.raises(DataSourceError, match=r"found no image column .* set data.image_column to one of its columns"):
        prepare_image_dataset(dataset, config(), "train")
    # naming it works: encoded bytes are an image column
    prepared = prepare_image_dataset(dataset, config(image_column="thing"), "train")
    assert len(prepared) == 2


def test_label_column_errors() -> None:
    with pytest.raises(DataSourceError, match=r"data.label_column='class' is not a column.*available columns"):
        prepare_image_dataset(labelled_images(2), config(label_column="class"), "train")
    with pytest.raises(DataSourceError, match=r"data.label_column='score' .* holds float32 values, not class labels"):
        prepare_image_dataset(labelled_images(2), config(label_column="score"), "train")


def test_empty_split_names_it_and_lists_the_splits(tmp_path: Path) -> None:
    full = labelled_images(3)
    datasets.DatasetDict({"train": full, "test": full.select([])}).save_to_disk(tmp_path / "d")
    with pytest.raises(DataSourceError, match=r"split 'test' of dataset .* is empty \(0 rows\); available splits: "
                                              r"train \(3 rows\), test \(0 rows\)"):
        load_image_splits(ImageDataConfig(source=str(tmp_path / "d"), image_size=8))
    with pytest.raises(DataSourceError, match=r"split 'train' is empty"):
        prepare_image_dataset(full.select([]), config(), "train")


def with_broken_rows(count: int, broken: list[int]) -> datasets.Dataset:
    good = [encode(PIL.Image.fromarray(gradient_rgb(10, 10, seed=index)), "PNG") for index in range(count)]
    values = [b"not an image at all" if index in broken else image for index, image in enumerate(good)]
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": value, "path": None} for value in values], "label": list(range(count))},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )


def test_unreadable_image_error_names_the_row() -> None:
    with pytest.raises(BadImageError) as error:
        prepare_image_dataset(with_broken_rows(8, [5]), config(), "train")
    message = str(error.value)
    assert "row 5 of column 'image' of dataset 'memory' split 'train'" in message
    assert "UnidentifiedImageError" in message and "data.on_bad_image=skip" in message


def test_skip_drops_bad_rows_and_logs_the_count(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hfssl.data.images"):
        prepared = prepare_image_dataset(with_broken_rows(8, [1, 6]), config(on_bad_image="skip"), "train")
    assert sorted(int(row["label"]) for row in prepared) == [0, 2, 3, 4, 5, 7]
    assert "skipped 2 of 8 unreadable images in column 'image'" in caplog.text
    for row in prepared:  # the surviving rows keep their own pixels
        index = int(row["label"])
        np.testing.assert_array_equal(row["pixels"].numpy(), decode_image(gradient_rgb(10, 10, seed=index), 3, 10))
    with pytest.raises(BadImageError, match="every one of the 3 images"):
        prepare_image_dataset(with_broken_rows(3, [0, 1, 2]), config(on_bad_image="skip"), "train")


def test_caps_are_a_fixed_random_subset() -> None:
    dataset = with_broken_rows(40, [])
    first = prepare_image_dataset(dataset, config(max_train_samples=10), "train")
    again = prepare_image_dataset(dataset, config(max_train_samples=10), "train")
    labels = [int(row["label"]) for row in first]
    assert len(labels) == 10 and len(set(labels)) == 10
    assert labels == [int(row["label"]) for row in again]  # deterministic
    assert labels != sorted(labels)  # not simply the first rows of the source
    expected = np.random.default_rng(images_module.ORDER_SEED).permutation(40)[:10].tolist()
    assert labels == expected  # the documented rule: first N of the seeded permutation
    evaluation = prepare_image_dataset(dataset, config(max_train_samples=10, max_eval_samples=4), "test")
    assert len(evaluation) == 4
    # The section refuses the cap when it is built (a RecipeError); prepare_image_dataset refuses it too.
    with pytest.raises(ValueError, match="data.max_train_samples must be at least 1"):
        prepare_image_dataset(dataset, config(max_train_samples=0), "train")


def test_error_rows_are_source_rows_even_after_the_cap() -> None:
    order = np.random.default_rng(images_module.ORDER_SEED).permutation(40)
    broken = int(order[3])  # inside the first 10 of the order, so it is decoded
    with pytest.raises(BadImageError, match=rf"row {broken} of column 'image'"):
        prepare_image_dataset(with_broken_rows(40, [broken]), config(max_train_samples=10), "train")


def test_decoding_is_cached_by_fingerprint(image_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = ImageDataConfig(source=str(image_folder), image_size=8, eval_split=None)
    first = load_image_splits(data).train
    with caplog.at_level(logging.INFO, logger="datasets"):
        second = load_image_splits(data).train
    assert first.cache_files and first.cache_files == second.cache_files
    assert "Decoding" not in caplog.text  # the map was not run again


def test_parallel_decoding_matches_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_module, "PARALLEL_MIN_ROWS", 10)
    dataset = with_broken_rows(24, [])
    serial = prepare_image_dataset(dataset, config(), "train")
    parallel = prepare_image_dataset(dataset, config(num_workers=2), "train")
    assert [int(row["label"]) for row in serial] == [int(row["label"]) for row in parallel]
    np.testing.assert_array_equal(serial[:]["pixels"].numpy(), parallel[:]["pixels"].numpy())
    with pytest.raises(BadImageError, match="row 17 of column 'image'"):
        prepare_image_dataset(with_broken_rows(24, [17]), config(num_workers=2), "train")


def test_dataset_mean_std_matches_numpy() -> None:
    prepared = prepare_image_dataset(with_broken_rows(12, []), config(), "train")
    pixels = prepared[:]["pixels"].numpy().astype(np.float64) / 255.0
    mean, std = dataset_mean_std(prepared, batch_size=5)
    np.testing.assert_allclose(mean, pixels.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(axis=(0, 2, 3)), rtol=1e-12)
    with pytest.raises(DataSourceError, match="'pixels' column"):
        dataset_mean_std(labelled_images(2))


def test_read_pixels_and_labels_match_row_access() -> None:
    from hfssl.data.images import read_labels, read_pixels

    prepared = prepare_image_dataset(with_broken_rows(12, []), config(), "train")
    pixels = read_pixels(prepared)
    assert pixels.dtype == np.uint8 and pixels.shape == (12, 3, 10, 10)
    np.testing.assert_array_equal(pixels, prepared[:]["pixels"].numpy())
    np.testing.assert_array_equal(read_labels(prepared), [int(row["label"]) for row in prepared])
    view = prepared.select([7, 2])
    np.testing.assert_array_equal(read_pixels(view), pixels[[7, 2]])
    np.testing.assert_array_equal(read_pixels(prepared, 3, 5), pixels[3:5])
