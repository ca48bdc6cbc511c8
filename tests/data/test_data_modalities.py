"""The text and image-text modality modules: their loaders, batches and errors.

Image-caption pairs go through the image module's column checks and decoding (the same errors as
images), carry their caption as ``text``, and refuse an empty caption by row; the text module's
default loader hands non-empty documents to the engine as ``{"texts": [...]}``.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from accelerate import Accelerator
from PIL import Image

from hfssl.data.config import ImageTextDataConfig, TextDataConfig
from hfssl.data.image_text import build_training_data as build_image_text_data
from hfssl.data.image_text import collate_image_text, load_image_text_splits
from hfssl.data.images import BadImageError, read_pixels
from hfssl.data.sources import DataSourceError
from hfssl.data.text import build_training_data as build_text_data
from hfssl.data.text import count_dataset_words, iter_texts
from hfssl.registry import MODALITY_LOADERS
from image_text_fixtures import CAPTIONS, COLOURS, caption_folder

def test_pairs_keep_their_caption_beside_the_decoded_image(tmp_path: Path) -> None:
    source = caption_folder(tmp_path / "pairs")
    splits = load_image_text_splits(ImageTextDataConfig(source=str(source), image_size=8, label_column="colour"))
    assert splits.text_column == "caption" and (len(splits.train), len(splits.test)) == (4, 2)
    rows = [splits.train[index] for index in range(4)]
    pixels = read_pixels(splits.train)
    for row, image in zip(rows, pixels):
        index = CAPTIONS.index(row["text"])  # the caption travels with its own image, in the shuffled order
        assert tuple(int(value) for value in image[:, 4, 4]) == COLOURS[index]
        assert int(row["label"]) == index % 3
    batch = collate_image_text(rows)
    assert batch["pixels"].dtype == torch.uint8 and tuple(batch["pixels"].shape) == (4, 3, 8, 8)
    assert batch["texts"] == [row["text"] for row in rows] and batch["labels"].tolist() == [r["label"] for r in rows]


def test_the_registry_loader_feeds_the_engine_pairs(tmp_path: Path) -> None:
    source = caption_folder(tmp_path / "pairs")
    data = MODALITY_LOADERS["image-text"](ImageTextDataConfig(source=str(source), image_size=8), Accelerator(cpu=True))
    assert data.collate_fn is collate_image_text and data.make_inputs is None
    loader = torch.utils.data.DataLoader(data.train_dataset, batch_size=2, collate_fn=data.collate_fn)
    batch = next(iter(loader))
    assert set(batch) == {"pixels", "labels", "texts"} and all(text in CAPTIONS for text in batch["texts"])
    assert len(data.eval_test_dataset) == 2
    assert build_image_text_data is MODALITY_LOADERS["image-text"]


@pytest.mark.parametrize(("config", "message"), [
    ({"text_column": "title"}, "data.text_column='title' is not a column of dataset .* available columns: "),
    ({"text_column": "colour"}, "data.text_column='colour' .* holds .*int64.*, not caption strings"),
    ({"image_column": "caption"}, "data.image_column='caption' .* holds text such as 'a red square', not image file paths"),
])
def test_bad_columns_name_the_column_and_the_fix(tmp_path: Path, config: dict, message: str) -> None:
    source = caption_folder(tmp_path / "pairs")
    with pytest.raises(DataSourceError, match=message):
        load_image_text_splits(ImageTextDataConfig(source=str(source), image_size=8, **config))


def test_an_empty_caption_is_refused_by_row(tmp_path: Path) -> None:
    captions = list(CAPTIONS)
    captions[2] = "  "
    source = caption_folder(tmp_path / "pairs", captions)
    with pytest.raises(DataSourceError, match="row 2 of column 'caption' of dataset .* has an empty caption"):
        load_image_text_splits(ImageTextDataConfig(source=str(source), image_size=8))


def test_no_caption_column_at_all_is_named(tmp_path: Path) -> None:
    images = [Image.new("RGB", (8, 8), colour) for colour in COLOURS]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"image": images, "score": list(range(6))})}
                         ).save_to_disk(tmp_path / "no_captions")
    with pytest.raises(DataSourceError, match="has no caption column .* Set data.text_column"):
        load_image_text_splits(ImageTextDataConfig(source=str(tmp_path / "no_captions"), image_size=8, eval_split=None))


def test_unreadable_images_in_pairs_get_the_image_error(tmp_path: Path) -> None:
    source = caption_folder(tmp_path / "pairs")
    (source / "train" / "1.png").write_bytes(b"not a png")
    with pytest.raises(BadImageError, match="cannot read the image in row"):
        load_image_text_splits(ImageTextDataConfig(source=str(source), image_size=8))


def test_streamed_pairs_carry_their_captions(tmp_path: Path) -> None:
    source = caption_folder(tmp_path / "pairs")
    splits = load_image_text_splits(ImageTextDataConfig(source=str(source), image_size=8, streaming=True))
    assert isinstance(splits.train, datasets.IterableDataset)
    first = next(iter(splits.train))
    assert first["text"] in CAPTIONS and np.asarray(first["pixels"]).shape == (3, 8, 8)
    assert len(splits.test) == 2 and set(splits.test["text"]) <= set(CAPTIONS)  # materialised with captions


def test_the_text_loader_drops_empty_documents(tmp_path: Path) -> None:
    texts = ["first document", "", "   ", None, "second document"]
    datasets.Dataset.from_dict({"body": texts}).save_to_disk(tmp_path / "texts")
    data = build_text_data(TextDataConfig(source=str(tmp_path / "texts"), text_column="body"), Accelerator(cpu=True))
    assert len(data.train_dataset) == 2
    batch = data.collate_fn([data.train_dataset[0], data.train_dataset[1]])
    assert batch == {"texts": ["first document", "second document"]}
    datasets.Dataset.from_dict({"body": ["", " "]}).save_to_disk(tmp_path / "empty")
    with pytest.raises(ValueError, match="has no non-empty text in column 'body'"):
        build_text_data(TextDataConfig(source=str(tmp_path / "empty"), text_column="body"), Accelerator(cpu=True))


def test_text_cells_none_is_empty_and_a_non_string_is_named_with_its_row():
    texts = datasets.Dataset.from_dict({"body": ["a b", None, "b"]})
    assert list(iter_texts(texts, "body", "notes")) == ["a b", "", "b"]
    counts, rows = count_dataset_words(texts, "body", "notes", lowercase=True, token_pattern=r"\w+")
    assert dict(counts) == {"a": 1, "b": 2} and rows == 3
    numbers = datasets.Dataset.from_dict({"body": [3, 4]})
    message = r"row 0 of column 'body' in dataset 'numbers' is a int, not a string; set data.text_column"
    with pytest.raises(ValueError, match=message):
        list(iter_texts(numbers, "body", "numbers"))
    with pytest.raises(ValueError, match=message):
        count_dataset_words(numbers, "body", "numbers", lowercase=True, token_pattern=r"\w+")
