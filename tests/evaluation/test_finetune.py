"""The fine-tuning protocol: a plain transformers classifier that the pipeline loads without hfssl,
trained by the engine with exact resume, layer-wise learning-rate decay, label fractions; its rows' calibration
scores against the classifier's own test probabilities."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    ResNetConfig,
    ResNetModel,
    ViTConfig,
    ViTImageProcessor,
    ViTModel,
)

from hfssl.data.config import ImageDataConfig
from hfssl.data.images import load_image_splits, read_pixels
from hfssl.evaluation.calibration import calibration_scores, reliability_bins
from hfssl.evaluation.finetune import FineTuneConfig, FineTuneForImageClassification, FineTuneSettings, finetune
from hfssl.evaluation.runner import evaluate_path
from hfssl.recipe import EvalConfig, OptimConfig
from hfssl.settings import RecipeError, build_section
from hfssl.training.optim import build_optimizer

DATA = ImageDataConfig(source="builtin:digits", image_size=16, channels=3)


def _encoder(folder: Path, kind: str = "resnet") -> str:
    if kind == "resnet":
        model = ResNetModel(ResNetConfig(layer_type="basic", depths=[1, 1], hidden_sizes=[16, 32], embedding_size=16))
    else:
        model = ViTModel(ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=64))  # with its pooler, as exports are
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def splits():
    return load_image_splits(DATA)


def test_fine_tuned_model_runs_in_the_pipeline_of_a_fresh_process_without_hfssl(tmp_path, splits):
    encoder = _encoder(tmp_path / "encoder")
    settings = FineTuneSettings(max_steps=30, batch_size=64, lr=3e-3)
    result = finetune(encoder, splits.train, splits.test, splits.label_names, 10, settings, tmp_path / "ft")
    assert result.row["top1"] > 0.3  # 30 steps from a random ResNet: well above chance (0.1)
    assert result.row["steps"] == 30 and result.row["num_labelled"] == len(splits.train)
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["architectures"] == ["ResNetForImageClassification"]
    assert config["id2label"] == {str(index): name for index, name in enumerate(splits.label_names)}
    images = read_pixels(splits.test, 0, 24)  # (24, 3, 16, 16) uint8
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from PIL import Image
        from transformers import pipeline
        classify = pipeline("image-classification", model={str(result.model_dir)!r}, device="cpu")
        images = [Image.fromarray(array.transpose(1, 2, 0)) for array in np.load({str(tmp_path / 'images.npy')!r})]
        top = [answer[0]["label"] for answer in classify(images)]
        print(json.dumps({{"top": top, "hfssl": any(name.startswith("hfssl") for name in sys.modules)}}))
    """)
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    answer = json.loads(output.stdout.strip().splitlines()[-1])
    assert answer["hfssl"] is False
    ours = [splits.label_names[index] for index in result.predictions[:24]]
    agreement = np.mean([a == b for a, b in zip(answer["top"], ours)])
    assert agreement >= 0.9, (answer["top"], ours)  # PIL resizing vs ours can flip a near tie, nothing more


def test_fine_tuning_resumes_exactly(tmp_path, splits):
    encoder = _encoder(tmp_path / "encoder")
    settings = FineTuneSettings(max_steps=6, batch_size=32, checkpoint_every=3)
    whole = finetune(encoder, splits.train, splits.test, splits.label_names, 10, settings, tmp_path / "ft")
    expected = load_file(whole.model_dir / "model.safetensors")
    # Interrupted after step 3: only that checkpoint is left.
    shutil.rmtree(tmp_path / "ft" / "checkpoints" / "step-00000006")
    shutil.rmtree(whole.model_dir)
    resumed_settings = FineTuneSettings(max_steps=6, batch_size=32, checkpoint_every=3, resume=True)
    resumed = finetune(encoder, splits.train, splits.test, splits.label_names, 10, resumed_settings, tmp_path / "ft")
    assert resumed.steps == 6
    weights = load_file(resumed.model_dir / "model.safetensors")
    assert weights.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(weights[name], value), name
    assert resumed.row["top1"] == whole.row["top1"]


def test_label_fraction_and_random_init(tmp_path, splits):
    encoder = _encoder(tmp_path / "encoder")
    settings = FineTuneSettings(max_steps=2, batch_size=16, init="random")
    result = finetune(encoder, splits.train, splits.test, splits.label_names, 10, settings, tmp_path / "ft", 0.1)
    assert result.row["label_fraction"] == 0.1 and result.row["init"] == "random"
    labels = np.asarray(splits.train.with_format("numpy")["label"])
    assert result.row["num_labelled"] == sum(max(1, round(0.1 * (labels == c).sum())) for c in range(10))


def test_the_row_carries_the_calibration_of_the_classifiers_own_test_probabilities(tmp_path, splits):
    encoder = _encoder(tmp_path / "encoder")
    settings = FineTuneSettings(max_steps=4, batch_size=32, lr=3e-3)
    result = finetune(encoder, splits.train, splits.test, splits.label_names, 10, settings, tmp_path / "ft")
    # The saved plain classifier and its processor, without hfssl's scoring path: 16 px images, no resize.
    classifier = AutoModelForImageClassification.from_pretrained(result.model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(result.model_dir)
    images = read_pixels(splits.test, 0, len(splits.test))
    inputs = processor(images=list(images), return_tensors="pt", input_data_format="channels_first")
    with torch.no_grad():
        probabilities = torch.softmax(classifier(**inputs).logits.double(), dim=1).numpy()
    labels = np.asarray(splits.test.with_format("numpy")["label"])
    expected = calibration_scores(probabilities, labels, bins=15)
    for key in ("ece", "mce", "nll", "brier", "mean_confidence"):
        assert result.row[key] == pytest.approx(expected[key], abs=1e-5), key
    assert result.row["bins"] == 15 and result.row["top1"] == pytest.approx(expected["top1"], abs=1e-9)
    assert 0.0 <= result.row["ece"] <= result.row["mce"] <= 1.0 and result.row["nll"] > 0.0
    table = result.extras["reliability"]
    np.testing.assert_array_equal(table.count, reliability_bins(probabilities, labels, 15).count)
    saved = json.loads((tmp_path / "ft" / "finetune_result.json").read_text())
    assert saved["ece"] == result.row["ece"] and saved["brier"] == result.row["brier"]


def test_vit_encoder_with_pooler_and_layer_wise_decay(tmp_path):
    encoder = _encoder(tmp_path / "vit", "vit")
    config = json.loads((Path(encoder) / "config.json").read_text())
    model = FineTuneForImageClassification(FineTuneConfig(
        classifier_config={**config, "num_labels": 3}, backbone_name_or_path=encoder, layer_decay=0.5))
    model.load_pretrained_backbone(ViTModel.from_pretrained(encoder))  # the pooler is left out, nothing else
    scales = model.parameter_lr_scales()
    assert scales["classifier.vit.embeddings.patch_embeddings.projection.weight"] == 0.5 ** 3
    blocks = {name: scale for name, scale in scales.items() if ".layers." in name or ".layer." in name}
    assert blocks and all(scale == (0.5 ** 2 if ".0." in name else 0.5) for name, scale in blocks.items())
    assert scales["classifier.classifier.weight"] == 1.0 and scales["classifier.vit.layernorm.weight"] == 1.0
    optimizer = build_optimizer(model, OptimConfig(lr=0.1))
    rates = {round(group["lr"], 6) for group in optimizer.param_groups}
    assert rates == {0.1, 0.05, 0.025, 0.0125}
    # Without decay: the usual two groups, no per-group learning rate.
    plain = FineTuneForImageClassification(FineTuneConfig(classifier_config={**config, "num_labels": 3}))
    assert plain.parameter_lr_scales() == {}
    assert len(build_optimizer(plain, OptimConfig(lr=0.1)).param_groups) == 2


def test_a_wrong_encoder_is_refused(tmp_path):
    encoder = _encoder(tmp_path / "vit", "vit")
    resnet = json.loads((Path(_encoder(tmp_path / "resnet")) / "config.json").read_text())
    model = FineTuneForImageClassification(FineTuneConfig(classifier_config={**resnet, "num_labels": 3},
                                                          backbone_name_or_path=encoder))
    with pytest.raises(ValueError, match="does not fit the ResNetForImageClassification"):
        model.load_pretrained_backbone(ViTModel.from_pretrained(encoder))


def test_protocol_from_the_evaluation_config(tmp_path):
    encoder = _encoder(tmp_path / "encoder")
    eval_config = EvalConfig(protocols=("finetune",), baselines=False, settings={"finetune": {
        "max_steps": 3, "batch_size": 32, "output_dir": str(tmp_path / "runs"), "label_fractions": [0.2, 1.0]}})
    results = evaluate_path(encoder, DATA, eval_config)
    rows = results["results"]
    assert [row.get("label_fraction") for row in rows] == [0.2, None]
    for row in rows:
        assert row["protocol"] == "finetune" and row["max_steps"] == 3 and 0.0 <= row["top1"] <= row["top5"] <= 1.0
        assert (Path(row["model_dir"]) / "config.json").is_file()
    assert Path(rows[0]["model_dir"]).parent.name == "fraction-0.2"
    json.dumps(results)  # plain JSON: predictions stay out of the results


@pytest.mark.parametrize("values, key", [({"init": "imagenet"}, "init"), ({"layer_decay": 0}, "layer_decay"),
                                         ({"label_fractions": [2]}, "label_fractions"), ({"crop_scale": [0.9, 0.1]}, "crop_scale")])
def test_bad_settings_name_the_setting(values, key):
    with pytest.raises(RecipeError, match=f"eval.finetune.{key}"):
        build_section(FineTuneSettings, "eval.finetune", values)


def test_every_new_protocol_is_selectable_in_a_recipe():
    from hfssl.evaluation.runner import check_recipe
    from hfssl.recipe import recipe_from_dict
    from tiny import TINY

    eval_section = {"protocols": ["knn", "linear", "few-shot", "finetune"], "projections": ["pca", "tsne"],
                    "linear": {"solver": "sklearn", "label_fractions": [0.01, 0.1, 1.0]},
                    "few-shot": {"ways": 5, "shots": [1, 5], "episodes": 600},
                    "finetune": {"epochs": 2, "layer_decay": 0.75, "label_fractions": [0.1, 1.0]}}
    recipe = recipe_from_dict({"method": "simclr", "model": TINY["simclr"][0], "data": {"source": "builtin:digits"},
                               "eval": eval_section}, check_model=False)
    check_recipe(recipe)
    assert recipe.eval.protocol_settings("finetune")["layer_decay"] == 0.75
    bad = recipe_from_dict({"method": "simclr", "model": TINY["simclr"][0], "data": {"source": "builtin:digits"},
                            "eval": {"protocols": ["finetune"], "finetune": {"epoch": 2}}}, check_model=False)
    with pytest.raises(RecipeError, match="eval.finetune"):
        check_recipe(bad)


def test_fine_tuning_never_replaces_another_run(tmp_path, splits):
    encoder = _encoder(tmp_path / "encoder")
    with pytest.raises(ValueError, match="holds a 'resnet' model, not an earlier fine-tuning run"):
        finetune(encoder, splits.train, splits.test, splits.label_names, 10, FineTuneSettings(max_steps=1), encoder)
    assert (Path(encoder) / "model.safetensors").is_file()


def test_freeze_stages_keeps_the_stem_and_the_first_stages_as_they_were(tmp_path):
    encoder = _encoder(tmp_path / "encoder")
    before = load_file(Path(encoder) / "model.safetensors")  # ResNetModel keys: embedder.*, encoder.stages.*
    eval_config = EvalConfig(protocols=("finetune",), baselines=False, settings={"finetune": {
        "max_steps": 3, "batch_size": 32, "lr": 1e-2, "freeze_stages": 1, "output_dir": str(tmp_path / "runs")}})
    (row,) = evaluate_path(encoder, DATA, eval_config)["results"]
    # Recorded in the row, and in its own folder: never mixed up with the run that trains every stage.
    assert row["freeze_stages"] == 1 and Path(row["model_dir"]).parent.name == "all-labels-freeze-1"
    after = {name.removeprefix("resnet."): value for name, value in load_file(Path(row["model_dir"]) / "model.safetensors").items()}
    frozen = [name for name in before if name.startswith(("embedder.", "encoder.stages.0."))]
    trained = [name for name in before if name.startswith("encoder.stages.1.") and name.endswith("weight")]
    assert frozen and trained
    # Weights and BatchNorm running statistics of the stem and stage 1 did not move; stage 2 trained.
    assert [name for name in frozen if not torch.equal(after[name], before[name])] == []
    assert any(name.endswith("running_mean") for name in frozen)
    assert all(not torch.equal(after[name], before[name]) for name in trained)


def test_freeze_stages_names_the_stem_and_blocks_of_vit_and_refuses_more_than_there_are(tmp_path, splits):
    from hfssl.evaluation.finetune import frozen_modules

    vit = ViTModel(ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64))
    assert frozen_modules(vit, 2) == ["embeddings", "layers.0", "layers.1"] and frozen_modules(vit, 0) == []
    encoder = _encoder(tmp_path / "encoder")
    with pytest.raises(RecipeError, match=r"freeze_stages is 3, but the ResNetModel has 2 stages / blocks: give 0 .* to 2"):
        finetune(encoder, splits.train, splits.test, splits.label_names, 10, FineTuneSettings(max_steps=1, freeze_stages=3),
                 tmp_path / "ft")
    assert not (tmp_path / "ft").exists()  # refused before anything was written
    with pytest.raises(RecipeError, match="eval.finetune.freeze_stages must be >= 0"):
        build_section(FineTuneSettings, "eval.finetune", {"freeze_stages": -1})
