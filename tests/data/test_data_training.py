"""The image modality's loader through MethodSpec.load_training_data (data + the method's input builder),
PixelDataset, collate_images, and data sections that accept only their modality's keys."""

from __future__ import annotations

import pickle
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from hfssl.data import TrainingData
from hfssl.data.config import ImageDataConfig
from hfssl.data.images import PixelDataset, collate_images, load_image_splits
from hfssl.recipe import recipe_from_dict
from hfssl.registry import get_method
from hfssl.settings import RecipeError
from hfssl.views import inputs as view_inputs_module


def recipe_for(method: str, **data: object):  # noqa: ANN201 - a Recipe
    return recipe_from_dict({"method": method, "data": {"source": "builtin:digits", "image_size": 16, **data}},
                            check_model=False)


@pytest.fixture
def fake_views(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """A stand-in hfssl.views whose views are a seeded noise image per pixel batch; records its calls."""
    calls: list[tuple] = []

    def build_views(kind: str, views: object, image_size: int, channels: int):  # noqa: ANN202
        calls.append((kind, views, image_size, channels))

        def make(pixels: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
            noise = torch.rand(pixels.shape, generator=generator, device=pixels.device)
            return {"pixel_values": pixels.float() / 255 + noise}

        return make

    monkeypatch.setattr(view_inputs_module, "build_views", build_views)
    return calls


def build_training_data(recipe, accelerator):  # noqa: ANN001, ANN201 - what the engine calls
    return get_method(recipe.method).load_training_data(recipe, accelerator)


def test_build_training_data_for_digits(fake_views: list[tuple]) -> None:
    recipe = recipe_for("simclr")
    data = build_training_data(recipe, Accelerator(cpu=True))
    assert isinstance(data, TrainingData)
    assert fake_views == [("multi_view", recipe.views, 16, 3)]
    assert len(data.train_dataset) == 1437
    assert len(data.eval_train_dataset) == 1437 and len(data.eval_test_dataset) == 360
    assert data.label_names == [str(digit) for digit in range(10)] and data.num_classes == 10
    assert data.config_updates == {} and data.save_artifacts is None

    loader = DataLoader(data.train_dataset, batch_size=32, shuffle=True, collate_fn=data.collate_fn,
                        generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert batch["pixels"].dtype == torch.uint8 and tuple(batch["pixels"].shape) == (32, 3, 16, 16)
    assert batch["labels"].dtype == torch.int64 and tuple(batch["labels"].shape) == (32,)
    assert 0 <= int(batch["labels"].min()) and int(batch["labels"].max()) <= 9

    first = data.make_inputs(batch, torch.Generator().manual_seed(7))
    second = data.make_inputs(batch, torch.Generator().manual_seed(7))
    third = data.make_inputs(batch, torch.Generator().manual_seed(8))
    assert torch.equal(first["pixel_values"], second["pixel_values"])  # same seed -> same views
    assert not torch.equal(first["pixel_values"], third["pixel_values"])
    noise = first["pixel_values"] - batch["pixels"].float() / 255
    assert float(noise.min()) >= 0.0 and float(noise.max()) < 1.0  # the view function saw these pixels


def test_mae_gets_single_views_and_grey_channels(fake_views: list[tuple]) -> None:
    recipe = recipe_for("mae", channels=1, max_train_samples=100, max_eval_samples=50)
    data = build_training_data(recipe, Accelerator(cpu=True))
    assert fake_views[0][0] == "single_view" and fake_views[0][2:] == (16, 1)
    assert (len(data.train_dataset), len(data.eval_test_dataset)) == (100, 50)
    batch = collate_images([data.train_dataset[index] for index in range(3)])
    assert tuple(batch["pixels"].shape) == (3, 1, 16, 16)


def test_unlabelled_data_has_no_evaluation_sets(fake_views: list[tuple], tmp_path: Path) -> None:
    arrays = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8)).astype(np.uint8)
    dataset = datasets.Dataset.from_dict({"image": arrays.tolist()},
                                         features=datasets.Features({"image": datasets.Array2D((8, 8), "uint8")}))
    datasets.DatasetDict({"train": dataset, "test": dataset}).save_to_disk(tmp_path / "unlabelled")
    data = build_training_data(recipe_for("byol", source=str(tmp_path / "unlabelled"), image_size=8),
                               Accelerator(cpu=True))
    assert data.eval_train_dataset is None and data.eval_test_dataset is None and data.label_names is None
    assert data.num_classes is None
    assert collate_images([data.train_dataset[0]])["labels"].tolist() == [-1]


def test_real_view_generator_makes_views_of_the_batch() -> None:
    views = pytest.importorskip("hfssl.views")
    if not hasattr(views, "build_views"):
        pytest.skip("hfssl.views.build_views has not landed")
    data = build_training_data(recipe_for("simclr", max_train_samples=64), Accelerator(cpu=True))
    batch = collate_images(data.train_dataset.__getitems__(list(range(8))))
    inputs = data.make_inputs(batch, torch.Generator().manual_seed(0))
    assert tuple(inputs["pixel_values"].shape[:3]) == (8, 2, 3)
    assert torch.isfinite(inputs["pixel_values"]).all()


def test_pixel_dataset_matches_datasets_rows_and_pickles() -> None:
    prepared = load_image_splits(ImageDataConfig(source="builtin:digits", image_size=12)).test
    fast = PixelDataset(prepared)
    indices = [5, 0, 359, 17, -1]
    expected = collate_images([prepared[index if index >= 0 else len(prepared) + index] for index in indices])
    actual = collate_images(fast.__getitems__(indices))
    assert torch.equal(actual["pixels"], expected["pixels"]) and torch.equal(actual["labels"], expected["labels"])
    restored = pickle.loads(pickle.dumps(fast))
    assert torch.equal(restored[17]["pixels"], prepared[17]["pixels"])
    with pytest.raises(IndexError, match="out of range for a split of 360 rows"):
        fast[360]
    # a select()ed view (the engine's kNN subsets) is read through the same zero-copy path
    subset = PixelDataset(prepared.select([3, 1, 2]))
    assert torch.equal(subset[0]["pixels"], prepared[3]["pixels"])


def test_worker_processes_give_the_same_batches() -> None:
    prepared = load_image_splits(ImageDataConfig(source="builtin:digits", image_size=8, eval_split=None)).train
    fast = PixelDataset(prepared.select(range(64)))
    serial = list(DataLoader(fast, batch_size=16, collate_fn=collate_images))
    parallel = list(DataLoader(fast, batch_size=16, collate_fn=collate_images, num_workers=2))
    for one, other in zip(serial, parallel, strict=True):
        assert torch.equal(one["pixels"], other["pixels"]) and torch.equal(one["labels"], other["labels"])


def test_data_sections_accept_only_their_modality_keys() -> None:
    with pytest.raises(RecipeError, match=r"unknown key data.text_column in recipe"):
        recipe_from_dict({"method": "simclr", "data": {"text_column": "caption"}})
    with pytest.raises(RecipeError, match=r"unknown key data.image_size in recipe"):
        recipe_from_dict({"method": "word2vec", "data": {"image_size": 32},
                          "optim": {"name": "sgd", "momentum": 0, "weight_decay": 0}})
    with pytest.raises(RecipeError, match=r"method 'word2vec' trains on text data: the views section is for methods that see images"):
        recipe_from_dict({"method": "word2vec", "views": {"num_views": 2},
                          "optim": {"name": "sgd", "momentum": 0, "weight_decay": 0}})
    assert "views" not in recipe_from_dict({"method": "word2vec", "optim": {"name": "sgd", "momentum": 0,
                                                                            "weight_decay": 0}}).to_dict()


def test_streaming_source_feeds_an_iterable_train_set(fake_views: list[tuple], tmp_path: Path) -> None:
    import PIL.Image

    pictures = [PIL.Image.fromarray(np.full((12, 12, 3), 20 * index, np.uint8)) for index in range(6)]
    table = datasets.Dataset.from_dict({"image": pictures, "label": [0, 1, 2, 0, 1, 2]})
    table.select(range(4)).to_parquet(tmp_path / "train.parquet")
    table.select(range(4, 6)).to_parquet(tmp_path / "test.parquet")
    data = build_training_data(recipe_for("simclr", source=str(tmp_path), image_size=8, streaming=True),
                               Accelerator(cpu=True))
    assert isinstance(data.train_dataset, torch.utils.data.IterableDataset)
    batch = next(iter(DataLoader(data.train_dataset, batch_size=4, collate_fn=data.collate_fn)))
    assert batch["pixels"].dtype == torch.uint8 and tuple(batch["pixels"].shape) == (4, 3, 8, 8)
    assert batch["pixels"][:, 0, 0, 0].tolist() == [0, 20, 40, 60] and batch["labels"].tolist() == [0, 1, 2, 0]
    assert len(data.eval_train_dataset) == 4 and len(data.eval_test_dataset) == 2  # materialised for kNN
    assert data.eval_test_dataset[0]["pixels"].dtype == torch.uint8
