"""Feature extraction from an hfssl run directory, an exported encoder and vanilla transformers models."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from transformers import ResNetConfig, ResNetModel, ViTConfig, ViTImageProcessor, ViTModel

from hfssl import SimCLRConfig, SimCLRForPreTraining
from hfssl.evaluation.features import extract_features, extract_features_with, load_feature_extractor
from tiny import TINY_RESNET, TINY_VIT

SIZE = 16


def processor() -> ViTImageProcessor:
    return ViTImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])


def image_set(count: int = 10, channels: int = 3, side: int = 8, seed: int = 0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(count, channels, side, side), dtype=np.uint8)
    features = datasets.Features({"pixels": datasets.Array3D((channels, side, side), "uint8"), "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict({"pixels": pixels, "label": np.arange(count) % 3}, features=features)


def reference_pixel_values(dataset: datasets.Dataset) -> torch.Tensor:
    """The saved processor applied directly to the 3-channel uint8 arrays: what the model must be fed.
    (test_processor_normalisation_is_applied checks the processor's own arithmetic.)"""
    pixels = np.asarray(dataset.with_format("numpy")["pixels"])
    return processor()(images=list(pixels), return_tensors="pt", input_data_format="channels_first")["pixel_values"]


def save_vanilla(model: torch.nn.Module, path: Path, with_processor: bool = True) -> Path:
    model.save_pretrained(path)
    if with_processor:
        processor().save_pretrained(path)
    return path


def test_processor_normalisation_is_applied(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = save_vanilla(ViTModel(ViTConfig(**{k: v for k, v in TINY_VIT.items() if k != "model_type"})), tmp_path / "vit")
    extractor = load_feature_extractor(str(path), device="cpu")
    constant = torch.full((2, 3, 8, 8), 51, dtype=torch.uint8)  # 51 / 255 = 0.2
    pixel_values = extractor.transform(constant)
    assert pixel_values.shape == (2, 3, SIZE, SIZE)
    expected = (0.2 - torch.tensor([0.5, 0.4, 0.3])) / torch.tensor([0.2, 0.25, 0.3])
    torch.testing.assert_close(pixel_values[:, :, 3, 5], expected.expand(2, 3), rtol=1e-5, atol=1e-5)


def test_vanilla_vit_uses_the_cls_token(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ViTModel(ViTConfig(**{k: v for k, v in TINY_VIT.items() if k != "model_type"}), add_pooling_layer=False).eval()
    path = save_vanilla(model, tmp_path / "vit")
    dataset = image_set()
    extractor = load_feature_extractor(str(path), device="cpu")
    assert extractor.kind == "encoder"
    features, labels = extract_features(extractor, dataset, batch_size=4)
    assert features.dtype == np.float32 and features.shape == (10, 32)
    assert labels.dtype == np.int64 and labels.tolist() == [i % 3 for i in range(10)]
    with torch.no_grad():
        expected = model(pixel_values=reference_pixel_values(dataset)).last_hidden_state[:, 0]
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_vanilla_resnet_uses_the_pooler_and_eval_mode(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ResNetModel(ResNetConfig(**{k: v for k, v in TINY_RESNET.items() if k != "model_type"}))
    path = save_vanilla(model, tmp_path / "resnet")
    dataset = image_set(12)
    extractor = load_feature_extractor(str(path), device="cpu")
    assert not extractor.model.training  # BatchNorm uses running statistics
    features, _ = extract_features(extractor, dataset, batch_size=5)
    model.eval()
    with torch.no_grad():
        expected = model(pixel_values=reference_pixel_values(dataset)).pooler_output.flatten(1)
    assert features.shape == (12, 32)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)
    # Batch size does not change the features in eval mode.
    np.testing.assert_allclose(extract_features(extractor, dataset, batch_size=12)[0], features, rtol=1e-5, atol=1e-6)


def make_run_dir(tmp_path: Path) -> tuple[Path, SimCLRForPreTraining]:
    torch.manual_seed(0)
    model = SimCLRForPreTraining(SimCLRConfig(backbone_config=dict(TINY_VIT), projection_hidden_dim=32, projection_dim=16))
    run_dir = tmp_path / "run"
    model.save_pretrained(run_dir)
    model.get_backbone().save_pretrained(run_dir / "encoder")
    processor().save_pretrained(run_dir / "encoder")
    return run_dir, model.eval()


def test_hfssl_run_dir_and_its_encoder_agree(tmp_path: Path) -> None:
    run_dir, model = make_run_dir(tmp_path)
    assert json.loads((run_dir / "config.json").read_text())["model_type"] == "hfssl_simclr"
    dataset = image_set(7, seed=3)
    run = load_feature_extractor(str(run_dir), device="cpu")
    assert run.kind == "hfssl_run" and isinstance(run.model, SimCLRForPreTraining)
    run_features, labels = extract_features(run, dataset, batch_size=3)
    with torch.no_grad():
        expected = model.get_embeddings(reference_pixel_values(dataset))
    np.testing.assert_allclose(run_features, expected.numpy(), rtol=1e-4, atol=1e-5)
    encoder = load_feature_extractor(str(run_dir / "encoder"), device="cpu")
    assert encoder.kind == "encoder" and isinstance(encoder.model, ViTModel)
    np.testing.assert_allclose(extract_features(encoder, dataset, batch_size=3)[0], run_features, rtol=1e-4, atol=1e-5)


def test_grey_images_are_repeated_to_three_channels(tmp_path: Path) -> None:
    run_dir, _ = make_run_dir(tmp_path)
    extractor = load_feature_extractor(str(run_dir), device="cpu")
    grey = image_set(5, channels=1, seed=4)
    repeated = datasets.Dataset.from_dict(
        {"pixels": np.repeat(np.asarray(grey.with_format("numpy")["pixels"]), 3, axis=1), "label": grey["label"]}
    )
    np.testing.assert_allclose(extract_features(extractor, grey)[0], extract_features(extractor, repeated)[0], rtol=1e-5, atol=1e-6)


def test_missing_preprocessing_is_a_clear_error(tmp_path: Path) -> None:
    run_dir, _ = make_run_dir(tmp_path)
    (run_dir / "encoder" / "preprocessor_config.json").unlink()
    with pytest.raises(ValueError, match="hfssl export"):
        load_feature_extractor(str(run_dir))
    torch.manual_seed(0)
    path = save_vanilla(ResNetModel(ResNetConfig(**{k: v for k, v in TINY_RESNET.items() if k != "model_type"})),
                        tmp_path / "bare", with_processor=False)
    with pytest.raises(ValueError, match="could not load an image processor"):
        load_feature_extractor(str(path))
    # An explicit processor makes it usable.
    extractor = load_feature_extractor(str(path), image_processor=processor(), device="cpu")
    assert extract_features(extractor, image_set(3))[0].shape == (3, 32)


class DictImages(torch.utils.data.Dataset):
    def __init__(self, pixels: np.ndarray, labels: np.ndarray) -> None:
        self.pixels, self.labels = pixels, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"pixels": self.pixels[index], "labels": self.labels[index]}


def test_extract_features_with_a_training_transform_restores_train_mode(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SimCLRForPreTraining(SimCLRConfig(backbone_config=dict(TINY_RESNET), projection_hidden_dim=32, projection_dim=16))
    model.train()
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(9, 3, SIZE, SIZE), dtype=np.uint8)
    labels = rng.integers(0, 4, size=9)

    def transform(batch: torch.Tensor) -> torch.Tensor:
        assert batch.dtype == torch.uint8
        return batch.float() / 127.5 - 1.0

    features, got_labels = extract_features_with(model.get_embeddings, transform, DictImages(pixels, labels), batch_size=4, model=model)
    assert model.training  # put back as it was
    assert got_labels.tolist() == labels.tolist()
    model.eval()
    with torch.no_grad():
        expected = model.get_embeddings(torch.from_numpy(pixels).float() / 127.5 - 1.0)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_bad_datasets_name_the_column() -> None:
    def identity(batch: torch.Tensor) -> torch.Tensor:
        return batch.float()

    no_pixels = datasets.Dataset.from_dict({"image": [[0]], "label": [0]})
    with pytest.raises(ValueError, match="no 'pixels' column \\(columns: image, label\\)"):
        extract_features_with(lambda x: x, identity, no_pixels)
    floats = datasets.Dataset.from_dict({"pixels": np.zeros((2, 1, 4, 4), dtype=np.float32), "label": [0, 1]})
    with pytest.raises(ValueError, match="must be uint8 images"):
        extract_features_with(lambda x: x, identity, floats)


def test_a_grey_hfssl_run_gives_its_own_features_through_the_exported_rgb_processor(tmp_path) -> None:
    """Grey encoders are exported for RGB input; the full grey model still gets its one channel."""
    from hfssl.export import export_encoder
    from tiny import TINY, tiny_model

    backbone = dict(TINY["simclr"][0]["backbone_config"], num_channels=1)
    model = tiny_model("simclr", backbone_config=backbone).eval()
    model.save_pretrained(tmp_path / "run")
    export_encoder(model, tmp_path / "run" / "encoder", image_size=16, mean=(0.5,), std=(0.25,), channels=1)
    extractor = load_feature_extractor(str(tmp_path / "run"))
    pixels = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = extractor.embed(extractor.transform(pixels))
        expected = model.get_embeddings((pixels.float() / 255 - 0.5) / 0.25)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)
