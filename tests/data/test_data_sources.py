"""Each source kind on real tiny data: image folder, parquet, save_to_disk, CSV, JSON, Hub ids offline."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
from image_files import gradient_rgb, special_images

from hfssl.data.decode import decode_image
from hfssl.data.images import load_image_splits
from hfssl.data.sources import DataSourceError, HubUnavailableError, SplitNotFoundError, load_split, source_kind
from hfssl.data.config import ImageDataConfig


def rows_by_label(prepared: datasets.Dataset) -> dict[int, list[np.ndarray]]:
    grouped: dict[int, list[np.ndarray]] = {}
    for row in prepared:
        grouped.setdefault(int(row["label"]), []).append(row["pixels"].numpy())
    return grouped


def contains(pixels: list[np.ndarray], expected: np.ndarray) -> bool:
    return any(np.array_equal(candidate, expected) for candidate in pixels)


def test_image_folder_with_awkward_modes(image_folder: Path) -> None:
    splits = load_image_splits(ImageDataConfig(source=str(image_folder), image_size=16, channels=3))
    assert splits.label_names == ["cat", "dog"] and splits.num_classes == 2
    assert len(splits.train) == 12 and len(splits.test) == 4
    row = splits.train[0]
    assert row["pixels"].dtype.is_floating_point is False and tuple(row["pixels"].shape) == (3, 16, 16)
    cats = rows_by_label(splits.train)[0]
    # Each special file decodes as the reference decoder says (the file, not the in-memory image).
    for name, suffix in (("rgba", "png"), ("palette", "png"), ("cmyk", "jpg"), ("grey16", "png")):
        expected = decode_image(str(image_folder / "train" / "cat" / f"{name}.{suffix}"), 3, 16)
        assert contains(cats, expected), name
    rgba = decode_image(str(image_folder / "train" / "cat" / "rgba.png"), 3, 16)
    assert (rgba[0, :7] == 200).all() and (rgba[1:, :7] == 0).all()  # the transparent half: its stored red
    grey = decode_image(str(image_folder / "train" / "cat" / "grey16.png"), 3, 16)
    assert (grey[0] == grey[1]).all() and (grey[1] == grey[2]).all()


def test_image_folder_grey_channels(image_folder: Path) -> None:
    splits = load_image_splits(ImageDataConfig(source=str(image_folder), image_size=8, channels=1, eval_split=None))
    assert tuple(splits.train[0]["pixels"].shape) == (1, 8, 8)
    assert splits.test is None


def write_pictures(count: int, size: int = 12) -> list[PIL.Image.Image]:
    return [PIL.Image.fromarray(gradient_rgb(size, size, seed=index)) for index in range(count)]


def test_parquet_file_and_folder(tmp_path: Path) -> None:
    pictures = write_pictures(6)
    table = datasets.Dataset.from_dict(
        {"img": pictures, "fine_label": [0, 1, 2, 0, 1, 2]},
        features=datasets.Features({"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=["a", "b", "c"])}),
    )
    file = tmp_path / "one.parquet"
    table.to_parquet(file)
    splits = load_image_splits(ImageDataConfig(source=str(file), image_size=12))
    assert splits.test is None  # a single file is the split "train"; "test" is absent
    assert splits.label_names == ["a", "b", "c"] and len(splits.train) == 6
    by_label = rows_by_label(splits.train)
    assert contains(by_label[1], np.asarray(pictures[1]).transpose(2, 0, 1))

    folder = tmp_path / "folder"
    folder.mkdir()
    table.select(range(4)).to_parquet(folder / "train.parquet")
    table.select(range(4, 6)).to_parquet(folder / "test.parquet")
    splits = load_image_splits(ImageDataConfig(source=str(folder), image_size=8))
    assert (len(splits.train), len(splits.test)) == (4, 2)


def test_save_to_disk_dict_and_single_dataset(tmp_path: Path) -> None:
    arrays = np.random.default_rng(0).integers(0, 256, size=(10, 3, 9, 9)).astype(np.uint8)
    dataset = datasets.Dataset.from_dict(
        {"pixel_values": arrays.tolist(), "label": list(range(10))},
        features=datasets.Features({
            "pixel_values": datasets.Array3D((3, 9, 9), "uint8"),
            "label": datasets.ClassLabel(num_classes=10),
        }),
    )
    datasets.DatasetDict({"train": dataset.select(range(7)), "test": dataset.select(range(7, 10))}).save_to_disk(
        tmp_path / "dict"
    )
    splits = load_image_splits(ImageDataConfig(source=str(tmp_path / "dict"), image_size=9))
    assert (len(splits.train), len(splits.test)) == (7, 3)
    for row in splits.test:  # no resize (9 -> 9): pixels are the stored arrays, in some fixed order
        np.testing.assert_array_equal(row["pixels"].numpy(), arrays[int(row["label"])])

    dataset.save_to_disk(tmp_path / "single")
    splits = load_image_splits(ImageDataConfig(source=str(tmp_path / "single"), image_size=9))
    assert len(splits.train) == 10 and splits.test is None


def test_csv_with_relative_image_paths_and_text_labels(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    pictures = write_pictures(5)
    names = ["zebra", "ant", "zebra", "ant", "moth"]
    for index, picture in enumerate(pictures):
        picture.save(tmp_path / "images" / f"{index}.png")
    lines = ["path,animal"] + [f"images/{index}.png,{name}" for index, name in enumerate(names)]
    (tmp_path / "pets.csv").write_text("\n".join(lines) + "\n")
    splits = load_image_splits(ImageDataConfig(source=str(tmp_path / "pets.csv"), image_column="path",
                                          label_column="animal", image_size=12))
    assert splits.label_names == ["ant", "moth", "zebra"]  # sorted class names
    by_label = rows_by_label(splits.train)
    assert len(by_label[2]) == 2 and contains(by_label[1], np.asarray(pictures[4]).transpose(2, 0, 1))


def test_text_labels_share_one_class_list_across_splits(tmp_path: Path) -> None:
    pictures = write_pictures(4)
    for split, rows in (("train", [(0, "cat"), (1, "dog")]), ("test", [(2, "bird"), (3, "dog")])):
        folder = tmp_path / "src"
        folder.mkdir(exist_ok=True)
        lines = [json.dumps({"image": f"{index}.png", "label": name}) for index, name in rows]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
        for index, _ in rows:
            pictures[index].save(folder / f"{index}.png")
    splits = load_image_splits(ImageDataConfig(source=str(tmp_path / "src"), image_size=12))
    assert splits.label_names == ["bird", "cat", "dog"]
    assert sorted(int(row["label"]) for row in splits.test) == [0, 2]


def test_json_with_nested_list_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 8, 8)).astype(np.uint8)
    records = [{"pixels": image.tolist(), "target": index % 2} for index, image in enumerate(images)]
    (tmp_path / "grey.json").write_text(json.dumps(records))
    splits = load_image_splits(ImageDataConfig(source=str(tmp_path / "grey.json"), image_size=8, channels=1))
    assert splits.num_classes == 2 and splits.label_names is None
    stored = {tuple(row["pixels"].numpy().ravel()) for row in splits.train}
    assert stored == {tuple(image.ravel()) for image in images}


def test_streaming_parquet(tmp_path: Path) -> None:
    pictures = write_pictures(5)
    datasets.Dataset.from_dict({"image": pictures, "label": [0, 1, 0, 1, 0]}).to_parquet(tmp_path / "s.parquet")
    splits = load_image_splits(ImageDataConfig(source=str(tmp_path / "s.parquet"), image_size=8, streaming=True,
                                          max_train_samples=3))
    assert isinstance(splits.train, datasets.IterableDataset)
    rows = list(splits.train)
    assert len(rows) == 3 and np.asarray(rows[0]["pixels"]).shape == (3, 8, 8)
    np.testing.assert_array_equal(np.asarray(rows[0]["pixels"]), decode_image(pictures[0], 3, 8))


def test_missing_split_lists_the_available_ones(image_folder: Path) -> None:
    with pytest.raises(SplitNotFoundError, match=r"no split 'validation'.*train \(12 rows\), test \(4 rows\)"):
        load_image_splits(ImageDataConfig(source=str(image_folder), train_split="validation"))
    # an absent evaluation split is not an error: it is reported and skipped
    splits = load_image_splits(ImageDataConfig(source=str(image_folder), eval_split="validation", image_size=8))
    assert splits.test is None


def test_missing_local_path_and_unknown_file_type(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"local data path './nowhere/pets' does not exist"):
        source_kind("./nowhere/pets")
    with pytest.raises(DataSourceError, match="does not exist"):
        load_split(str(tmp_path / "gone.parquet"), "train")
    with pytest.raises(DataSourceError, match="local data path 'data/pets/train' does not exist"):
        load_split("data/pets/train", "train")
    assert source_kind("someone/photos") == "hub" and source_kind("cifar10") == "hub"
    (tmp_path / "notes.xyz").write_text("hello")
    with pytest.raises(DataSourceError, match=r"extension '.xyz' is not one of .parquet"):
        load_split(str(tmp_path / "notes.xyz"), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match=r"cannot load the local data source .*empty"):
        load_split(str(tmp_path / "empty"), "train")


def test_unknown_builtin_lists_the_builtins() -> None:
    with pytest.raises(DataSourceError, match=r"builtin:digits, builtin:fashion_mnist"):
        load_split("builtin:cifar", "train")


def test_hub_id_offline_names_the_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    expected = (r"uoft-cs/cifar10 needs the Hugging Face Hub; "
                r"pass a local path or builtin:digits / builtin:fashion_mnist")
    # datasets read the variables at import (the suite's conftest sets them): datasets fails fast
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnavailableError, match=expected):
        load_image_splits(ImageDataConfig(source="uoft-cs/cifar10"))
    # set after datasets was imported: refused before datasets could spend ~20 s retrying
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_dataset must not be called while offline")

    monkeypatch.setattr(datasets, "load_dataset", must_not_run)
    with pytest.raises(HubUnavailableError, match="offline mode is on"):
        load_split("uoft-cs/cifar10", "train")


def test_hub_connection_error_names_the_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "0")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)

    def no_network(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'someone/photos' on the Hub (ConnectTimeout)")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    with pytest.raises(HubUnavailableError, match=r"someone/photos needs the Hugging Face Hub.*could not be reached"):
        load_split("someone/photos", "train")


def test_special_images_roundtrip_through_parquet_bytes(tmp_path: Path) -> None:
    """Encoded bytes in a parquet Image column decode like the files (CMYK and 16-bit included)."""
    specials = special_images()
    table = datasets.Dataset.from_dict({"image": list(specials.values()), "label": [0, 1, 2, 3]})
    table.to_parquet(tmp_path / "specials.parquet")
    splits = load_image_splits(ImageDataConfig(source=str(tmp_path / "specials.parquet"), image_size=20))
    by_label = {int(row["label"]): row["pixels"].numpy() for row in splits.train}
    np.testing.assert_array_equal(by_label[0], decode_image(specials["rgba"], 3, 20))
    np.testing.assert_array_equal(by_label[3], decode_image(specials["grey16"], 3, 20))


def test_empty_file_in_a_local_folder_is_named(tmp_path: Path) -> None:
    table = datasets.Dataset.from_dict({"image": write_pictures(3), "label": [0, 1, 0]})
    table.to_parquet(tmp_path / "train.parquet")
    table.select([]).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(DataSourceError, match=r"a split of the local data source .* is empty.*corresponds to no data"):
        load_image_splits(ImageDataConfig(source=str(tmp_path), image_size=8))
