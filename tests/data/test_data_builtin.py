"""Built-in sources: builtin:digits (scikit-learn) and builtin:fashion_mnist (IDX files)."""

from __future__ import annotations

import gzip
from pathlib import Path

import datasets
import numpy as np
import pytest

from hfssl.data import builtin
from hfssl.data.images import load_image_splits
from hfssl.data.sources import DataSourceError, load_split
from hfssl.data.config import ImageDataConfig


def test_digits_splits_values_and_labels() -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    splits = builtin.load_builtin("digits")
    assert {name: len(split) for name, split in splits.items()} == {"train": 1437, "test": 360}
    train = splits["train"]
    assert train.features["image"] == datasets.Array2D((8, 8), "uint8")
    assert train.features["label"].names == [str(digit) for digit in range(10)]
    # Naive reference: the same stratified split, values scaled 0..16 -> 0..255.
    bunch = load_digits()
    index_train, index_test = train_test_split(np.arange(1797), test_size=0.2, stratify=bunch.target, random_state=0)
    images = np.asarray(train.with_format("numpy")[:]["image"])
    np.testing.assert_array_equal(images, np.rint(bunch.images[index_train] * 255 / 16))
    np.testing.assert_array_equal(train["label"], bunch.target[index_train])
    assert images.min() == 0 and images.max() == 255
    test_counts = np.bincount(splits["test"]["label"], minlength=10)
    assert np.abs(test_counts - np.bincount(bunch.target) * 0.2).max() <= 1  # stratified
    assert set(index_test) == set(range(1797)) - set(index_train)


def test_digits_cached_and_deterministic() -> None:
    first = builtin.load_builtin("digits")
    assert builtin.load_builtin("digits") is first  # in-process cache: the second load is instant
    builtin.load_digits.cache_clear()
    again = builtin.load_builtin("digits")
    assert again is not first
    np.testing.assert_array_equal(again["test"]["label"], first["test"]["label"])


def test_prepared_digits_shapes() -> None:
    splits = load_image_splits(ImageDataConfig(source="builtin:digits", image_size=16, channels=3))
    assert (len(splits.train), len(splits.test)) == (1437, 360)
    assert splits.num_classes == 10 and splits.label_names == [str(digit) for digit in range(10)]
    batch = splits.train[:4]
    assert tuple(batch["pixels"].shape) == (4, 3, 16, 16) and str(batch["pixels"].dtype) == "torch.uint8"
    # prepared twice from the cached source: the same rows in the same order
    again = load_image_splits(ImageDataConfig(source="builtin:digits", image_size=16, channels=3))
    assert again.train[:50]["label"] == splits.train[:50]["label"]


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    header = (magic if magic is not None else 0x800 + array.ndim).to_bytes(4, "big")
    header += b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, count in (("train", 12), ("t10k", 5)):
        images = rng.integers(0, 256, size=(count, 28, 28)).astype(np.uint8)
        labels = np.arange(count) % 10
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
        arrays[prefix] = (images, labels)
    monkeypatch.setenv(builtin.FASHION_MNIST_ENV, str(tmp_path))
    return arrays


def test_fashion_mnist_from_idx_files(tiny_fashion: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    splits = builtin.load_builtin("fashion_mnist")
    assert {name: len(split) for name, split in splits.items()} == {"train": 12, "test": 5}
    assert splits["train"].features["label"].names[0] == "T-shirt/top"
    assert splits["train"].features["label"].names[9] == "Ankle boot"
    images, labels = tiny_fashion["t10k"]
    np.testing.assert_array_equal(np.asarray(splits["test"].with_format("numpy")[:]["image"]), images)
    np.testing.assert_array_equal(splits["test"]["label"], labels)
    # Prepared at the native size, grey: the pixels are the IDX bytes exactly (vectorised path, no resize).
    prepared = load_image_splits(ImageDataConfig(source="builtin:fashion_mnist", image_size=28, channels=1))
    assert len(prepared.label_names) == 10
    for row in prepared.test:
        matches = [index for index in range(5) if np.array_equal(images[index], row["pixels"].numpy()[0])]
        assert matches and labels[matches[0]] == int(row["label"])


def test_fashion_mnist_missing_files_say_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(builtin.FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(DataSourceError) as error:
        load_split("builtin:fashion_mnist", "train")
    message = str(error.value)
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "dpkg-deb -x" in message and "HFSSL_FASHION_MNIST_DIR" in message
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path) in message


def test_fashion_mnist_corrupt_files_are_named(tiny_fashion: dict, tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(5), magic=1234)
    with pytest.raises(DataSourceError, match=r"t10k-labels-idx1-ubyte.gz' has IDX magic number 1234, expected 2049"):
        load_split("builtin:fashion_mnist", "test")
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write((2049).to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\x00\x01")
    with pytest.raises(DataSourceError, match=r"declares shape \(5,\) \(5 bytes\) but holds 2 bytes"):
        load_split("builtin:fashion_mnist", "test")
