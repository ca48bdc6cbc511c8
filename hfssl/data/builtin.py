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
* ``builtin:emoji`` / ``builtin:emoji_twitter``: image-caption pairs, the 1,906 base emoji of the
  npm package emoji-datasource (Google's or Twitter's art, 64x64) with captions from their Unicode
  names and the 9 categories as labels, split by subcategory (:func:`load_emoji`); installed by
  ``scripts/prepare_emoji.sh`` into ``HFSSL_EMOJI_DIR`` (default ``~/.cache/hfssl/emoji``).
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
    """Load a built-in image source by name (``digits``, ``fashion_mnist``, ``emoji``, ``emoji_twitter``; no ``builtin:``)."""
    if name not in BUILTIN_IMAGE_SOURCES:
        known = ", ".join(f"builtin:{key}" for key in BUILTIN_IMAGE_SOURCES)
        raise BuiltinDataError(
            f"unknown built-in image source 'builtin:{name}'; the built-in image sources are {known} "
            "(text corpora such as builtin:english_corpus feed text methods, not image ones)"
        )
    return BUILTIN_IMAGE_SOURCES[name]()


# ---- emoji images with their names (image-caption pairs) -------------------------------------------

EMOJI_ENV = "HFSSL_EMOJI_DIR"
EMOJI_SETS = ("google", "twitter")
EMOJI_SPLIT_SEED = 0
EMOJI_TEST_FRACTION = 0.2
EMOJI_IMAGE_SIZE = 64
#: The 9 emoji categories (Unicode CLDR groups; "Component" holds skin-tone swatches and is left out).
EMOJI_CATEGORIES = ("Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
                    "Activities", "Objects", "Symbols", "Flags")


def emoji_dir() -> Path:
    """The folder ``scripts/prepare_emoji.sh`` installs the emoji sets into (``HFSSL_EMOJI_DIR`` or the cache)."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hfssl" / "emoji"
    return Path(os.environ.get(EMOJI_ENV) or default).expanduser()


def emoji_caption(name: str, category: str | None = None) -> str:
    """``"an emoji of grinning face"``, or with the category words ``"an emoji of grinning face (smileys & emotion)"``."""
    text = f"an emoji of {name}"
    return f"{text} ({category.lower()})" if category else text


def split_emoji_subcategories(rows: list[tuple[str, str]], test_fraction: float = EMOJI_TEST_FRACTION,
                              seed: int = EMOJI_SPLIT_SEED) -> set[str]:
    """The held-out subcategories: per category, whole subcategories in a seeded random order are held
    out until ``test_fraction`` of the category's emoji are, skipping any that would take the held-out
    share above twice that (Flags is mostly one subcategory, country-flag, which stays in training);
    every category holds out at least its smallest subcategory and never all of them.

    Args:
        rows: ``(category, subcategory)`` of every emoji.
    Returns:
        the names of the test subcategories; near-duplicates (same subcategory) never cross the split.
    """
    rng = np.random.default_rng(seed)
    test: set[str] = set()
    for category in sorted({category for category, _ in rows}):
        counts: dict[str, int] = {}
        for row_category, subcategory in rows:
            if row_category == category:
                counts[subcategory] = counts.get(subcategory, 0) + 1
        if len(counts) < 2:
            continue
        names = sorted(counts)
        order = [names[index] for index in rng.permutation(len(names))]
        total, held, chosen = sum(counts.values()), 0, []
        for subcategory in order:
            if held >= test_fraction * total:
                break
            if held + counts[subcategory] <= 2 * test_fraction * total and len(chosen) < len(order) - 1:
                chosen.append(subcategory)
                held += counts[subcategory]
        test.update(chosen or [min(names, key=lambda name: (counts[name], name))])
    return test


def _read_png_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        # As transformers' load_image reads the file (and hfssl.data.decode any image): convert("RGB")
        # drops the alpha channel, so a pipeline on the raw PNG files sees the pixels training saw.
        rgb = image.convert("RGB")
    if rgb.size != (EMOJI_IMAGE_SIZE, EMOJI_IMAGE_SIZE):
        rgb = rgb.resize((EMOJI_IMAGE_SIZE,) * 2, Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


@functools.lru_cache(maxsize=4)
def _load_emoji(directory: str, art: str, stamp: float) -> datasets.DatasetDict:
    import json

    root = Path(directory)
    records = json.loads((root / "emoji.json").read_text())
    images_dir = root / "img" / art / "64"
    entries = []
    for record in records:
        category = record.get("category")
        if category not in EMOJI_CATEGORIES or not record.get(f"has_img_{art}", False):
            continue
        name = (record.get("name") or record.get("short_name") or "").strip().lower()
        path = images_dir / record["image"]
        if not name or not path.is_file():
            continue
        entries.append((category, record["subcategory"], name, path))
    if not entries:
        raise BuiltinDataError(f"{str(root)!r} holds no usable emoji (emoji.json and img/{art}/64/*.png); reinstall "
                               "with scripts/prepare_emoji.sh")
    # The split depends only on the (category, subcategory) list, so every art set splits alike.
    test_subcategories = split_emoji_subcategories(
        [(category, subcategory) for record in records if (category := record.get("category")) in EMOJI_CATEGORIES
         for subcategory in [record["subcategory"]]])
    features = datasets.Features({
        "image": datasets.Array3D(shape=(EMOJI_IMAGE_SIZE, EMOJI_IMAGE_SIZE, 3), dtype="uint8"),
        "label": datasets.ClassLabel(names=list(EMOJI_CATEGORIES)),
        "caption": datasets.Value("string"),
        "caption_with_category": datasets.Value("string"),
        "name": datasets.Value("string"),
        "subcategory": datasets.Value("string"),
        "file": datasets.Value("string"),
    })
    splits = {}
    for split in ("train", "test"):
        chosen = [entry for entry in entries if (entry[1] in test_subcategories) == (split == "test")]
        columns = {
            "image": np.stack([_read_png_rgb(path) for *_, path in chosen]),
            "label": np.asarray([EMOJI_CATEGORIES.index(category) for category, *_ in chosen], dtype=np.int64),
            "caption": np.asarray([emoji_caption(name) for _, _, name, _ in chosen], dtype=object),
            "caption_with_category": np.asarray([emoji_caption(name, category) for category, _, name, _ in chosen],
                                                dtype=object),
            "name": np.asarray([name for _, _, name, _ in chosen], dtype=object),
            "subcategory": np.asarray([subcategory for _, subcategory, _, _ in chosen], dtype=object),
            "file": np.asarray([str(path) for *_, path in chosen], dtype=object),
        }
        fingerprint = Hasher.hash(("hfssl-builtin-emoji-rgb", art, split, directory, stamp))
        splits[split] = arrays_to_dataset(columns, features, fingerprint=fingerprint)
    logger.info("loaded %s emoji from %s: %s", art, root, {name: len(ds) for name, ds in splits.items()})
    return datasets.DatasetDict(splits)


def load_emoji(art: str = "google") -> datasets.DatasetDict:
    """Emoji images (64x64 RGB, read as transformers' ``load_image`` reads the PNG: alpha dropped) with captions from their Unicode names.

    The emoji-datasource package (``npm pack emoji-datasource-<art>@16.0.0``, installed by
    ``scripts/prepare_emoji.sh``): 1,906 base emoji of 9 categories and 99 subcategories. Columns
    ``image``, ``label`` (the category), ``caption`` (``"an emoji of {name}"``),
    ``caption_with_category`` (the same with the category words), ``name``, ``subcategory`` and ``file``
    (the PNG the image was read from: score an exported model on the raw files).
    Splits: ``test`` holds whole subcategories (about 20 % of each category, a fixed seed), so
    near-duplicates (the same subcategory) never cross the split; ``train`` the rest.

    Raises:
        BuiltinDataError: the set is not installed (the message gives the command).
    """
    root = (emoji_dir() / art).resolve()
    marker = root / "emoji.json"
    if not marker.is_file() or not (root / "img" / art / "64").is_dir():
        raise BuiltinDataError(
            f"builtin:emoji{'' if art == 'google' else '_' + art} needs the {art} emoji set in {str(root)!r}, which is "
            f"missing. Install it with `scripts/prepare_emoji.sh {art}` (needs npm; it writes to ${EMOJI_ENV} or "
            f"~/.cache/hfssl/emoji), or set {EMOJI_ENV} to the folder that holds {art}/emoji.json."
        )
    return _load_emoji(str(root), art, marker.stat().st_mtime)


BUILTIN_IMAGE_SOURCES["emoji"] = functools.partial(load_emoji, "google")
BUILTIN_IMAGE_SOURCES["emoji_twitter"] = functools.partial(load_emoji, "twitter")
