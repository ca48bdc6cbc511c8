"""Built-in image sets that need no network: ``builtin:digits`` and ``builtin:fashion_mnist``.

Both come back as a ``datasets.DatasetDict`` with an ``image`` column that already holds
fixed-size uint8 arrays (``Array2D((H, W), "uint8")``, no PIL decode per step) and a ``ClassLabel``
``label`` column, and are cached in-process so a second load is instant.

* ``builtin:digits``: scikit-learn's copy of the UCI optical digits (Alpaydin & Kaynak 1998),
  1,797 grey 8x8 images of the digits 0-9 with values 0..16, scaled here to 0..255
  (``round(value * 255 / 16)``). There is no official split, so a stratified 80 % / 20 % split
  with a fixed seed (:data:`DIGITS_SPLIT_SEED`) gives ``train`` (1,437) and ``test`` (360).
* ``builtin:fashion_mnist``: Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747),
  60,000 + 10,000 grey 28x28 images of 10 clothing classes, read from the IDX files of the Debian
  package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``; the environment
  variable ``HFSSL_FASHION_MNIST_DIR`` points elsewhere). Splits ``train`` and ``test``.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from datasets.fingerprint import Hasher
from datasets.features.features import Array2DExtensionType, Array3DExtensionType
from datasets.table import InMemoryTable

logger = logging.getLogger(__name__)

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "HFSSL_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# IDX magic numbers (LeCun's MNIST format): 0x00000803 = uint8 3-d array, 0x00000801 = uint8 1-d.
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


class BuiltinDataError(ValueError):
    """A built-in source that cannot be loaded; the message says how to install or point to it."""


def arrays_to_dataset(
    columns: dict[str, np.ndarray], features: datasets.Features, fingerprint: str | None = None
) -> datasets.Dataset:
    """Build an in-memory ``datasets.Dataset`` from numpy arrays without a per-row Python loop.

    ``Dataset.from_dict`` converts ``ArrayXD`` columns row by row (about 5 s for 60,000 images);
    building the nested Arrow list arrays from the flat buffer and offsets takes a fraction of that.

    Args:
        columns: column name -> array; ``ArrayXD`` columns are ``(N, *shape)``, others ``(N,)``.
        features: the ``datasets.Features`` of the result (``Array2D``/``Array3D``, ``Value``,
            ``ClassLabel``).
        fingerprint: optional fixed fingerprint (defaults to a random one, as ``from_dict`` does).
    """
    arrays = {}
    for name, feature in features.items():
        values = np.ascontiguousarray(columns[name])
        if isinstance(feature, (datasets.Array2D, datasets.Array3D)):
            storage = pa.array(values.reshape(-1).astype(feature.dtype, copy=False))
            count = values.shape[0] * int(np.prod(values.shape[1:]))
            # Wrap the flat buffer in one list level per trailing dimension, innermost first.
            for size in reversed(values.shape[1:]):
                count //= size
                offsets = pa.array(np.arange(0, (count + 1) * size, size, dtype=np.int32))
                storage = pa.ListArray.from_arrays(offsets, storage)
            extension = Array2DExtensionType if isinstance(feature, datasets.Array2D) else Array3DExtensionType
            arrays[name] = pa.ExtensionArray.from_storage(extension(feature.shape, feature.dtype), storage)
        else:
            arrays[name] = pa.array(values, type=feature.pa_type if hasattr(feature, "pa_type") else None)
    # The schema carries the features as metadata, so copies made by pickling (DataLoader workers
    # under spawn) still know the Array2D/Array3D and ClassLabel types.
    table = InMemoryTable(pa.table(arrays, schema=features.arrow_schema))
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features), fingerprint=fingerprint)


def _image_dataset(
    images: np.ndarray, labels: np.ndarray, names: tuple[str, ...], fingerprint: str
) -> datasets.Dataset:
    features = datasets.Features({
        "image": datasets.Array2D(shape=tuple(images.shape[1:]), dtype="uint8"),
        "label": datasets.ClassLabel(names=list(names)),
    })
    return arrays_to_dataset({"image": images, "label": labels.astype(np.int64)}, features, fingerprint=fingerprint)


@functools.lru_cache(maxsize=1)
def load_digits() -> datasets.DatasetDict:
    """scikit-learn digits as ``{"train": 1,437 rows, "test": 360 rows}`` of uint8 (8, 8) images."""
    from sklearn.datasets import load_digits as sklearn_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_load_digits()
    # The pixel values are counts 0..16 of set bits in 4x4 blocks (UCI optdigits); scale to 0..255.
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    train_index, test_index = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION, stratify=labels, random_state=DIGITS_SPLIT_SEED
    )
    names = tuple(str(digit) for digit in range(10))
    return datasets.DatasetDict({
        "train": _image_dataset(images[train_index], labels[train_index], names, "hfssl-builtin-digits-train"),
        "test": _image_dataset(images[test_index], labels[test_index], names, "hfssl-builtin-digits-test"),
    })


def fashion_mnist_dir() -> Path:
    """The folder holding the Fashion-MNIST IDX files (``HFSSL_FASHION_MNIST_DIR`` or the Debian path)."""
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR).expanduser()


def _missing_fashion_mnist(directory: Path, missing: list[str]) -> BuiltinDataError:
    return BuiltinDataError(
        f"builtin:fashion_mnist needs the Fashion-MNIST IDX files in {str(directory)!r}, but "
        f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing. Install them with "
        "`apt-get install -y dataset-fashion-mnist` (they go to /usr/share/datasets/fashion-mnist), or without "
        "root: `apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb DIR` and set "
        f"{FASHION_MNIST_ENV}=DIR/usr/share/datasets/fashion-mnist."
    )


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes into an array of shape ``dims`` from its header.

    The IDX header is a big-endian int32 magic (``0x0000080N``, N = number of dimensions) followed
    by N big-endian int32 sizes; the data are the uint8 values in C order.
    """
    opener: Callable = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 8:
        raise BuiltinDataError(f"{str(path)!r} is not an IDX file: it has only {len(data)} bytes")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise BuiltinDataError(
            f"{str(path)!r} has IDX magic number {magic}, expected {expected_magic}; "
            "the file is corrupt or is not the Fashion-MNIST file of that name"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(data) - header != size:
        raise BuiltinDataError(
            f"{str(path)!r} declares shape {shape} ({size} bytes) but holds {len(data) - header} bytes; "
            "the file is truncated or corrupt, reinstall dataset-fashion-mnist"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_fashion_split(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    image_path = directory / f"{prefix}-images-idx3-ubyte.gz"
    label_path = directory / f"{prefix}-labels-idx1-ubyte.gz"
    images = read_idx(image_path, _IDX_IMAGES_MAGIC)
    labels = read_idx(label_path, _IDX_LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise BuiltinDataError(
            f"{str(image_path)!r} holds {len(images)} images but {str(label_path)!r} holds {len(labels)} labels"
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise BuiltinDataError(f"{str(label_path)!r} holds label {int(labels.max())}; Fashion-MNIST labels are 0..9")
    return images, labels


_FASHION_FILES = tuple(
    f"{prefix}-{kind}-ubyte.gz" for prefix in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")
)


@functools.lru_cache(maxsize=4)
def _load_fashion_mnist(directory: str, file_stats: tuple[tuple[str, int, int], ...]) -> datasets.DatasetDict:
    root = Path(directory)
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = _read_fashion_split(root, prefix)
        # The fingerprint names the files' identity so that two folders never share a cache entry.
        fingerprint = Hasher.hash(("hfssl-builtin-fashion-mnist", split, directory, file_stats))
        splits[split] = _image_dataset(images, labels, FASHION_MNIST_CLASSES, fingerprint)
    logger.info("loaded Fashion-MNIST from %s: %s", root, {name: len(ds) for name, ds in splits.items()})
    return datasets.DatasetDict(splits)


def load_fashion_mnist() -> datasets.DatasetDict:
    """Fashion-MNIST as ``{"train": 60,000 rows, "test": 10,000 rows}`` of uint8 (28, 28) images.

    Raises:
        BuiltinDataError: the IDX files are missing (the message gives the ``apt-get`` command) or
            corrupt (the message names the file).
    """
    root = fashion_mnist_dir().resolve()
    missing = [name for name in _FASHION_FILES if not (root / name).is_file()]
    if missing:
        raise _missing_fashion_mnist(root, missing)
    # Cached per folder and file size/mtime: pointing HFSSL_FASHION_MNIST_DIR elsewhere, or
    # replacing the files, never serves stale data.
    stats = tuple((name, (root / name).stat().st_size, (root / name).stat().st_mtime_ns) for name in _FASHION_FILES)
    return _load_fashion_mnist(str(root), stats)


BUILTIN_IMAGE_SOURCES: dict[str, Callable[[], datasets.DatasetDict]] = {
    "digits": load_digits,
    "fashion_mnist": load_fashion_mnist,
}


def load_builtin(name: str) -> datasets.DatasetDict:
    """Load a built-in image source by name (``digits`` or ``fashion_mnist``, without ``builtin:``)."""
    if name not in BUILTIN_IMAGE_SOURCES:
        known = ", ".join(f"builtin:{key}" for key in BUILTIN_IMAGE_SOURCES)
        raise BuiltinDataError(
            f"unknown built-in image source 'builtin:{name}'; the built-in image sources are {known} "
            "(text corpora such as builtin:english_corpus feed text methods, not image ones)"
        )
    return BUILTIN_IMAGE_SOURCES[name]()
