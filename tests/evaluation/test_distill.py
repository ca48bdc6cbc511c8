"""The distill protocol (SimCLRv2 phase 3): the soft-target cross-entropy with temperature against its formula,
a frozen teacher outside the optimiser and the checkpoints, exact resume through the engine, a student that
pipeline("image-classification") loads in a fresh process without hfssl, and rows that carry the label
fraction and the seed."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import ResNetConfig, ResNetModel, ViTImageProcessor

from hfssl.data.config import ImageDataConfig
from hfssl.data.images import load_image_splits, read_pixels
from hfssl.evaluation.distill import (
    UNLABELLED,
    DistillConfig,
    DistillForImageClassification,
    DistillSettings,
    distill,
    labelled_cross_entropy,
    teacher_classifier_path,
)
from hfssl.evaluation.finetune import FineTuneSettings, finetune
from hfssl.evaluation.runner import evaluate_path
from hfssl.losses import SoftTargetCrossEntropy
from hfssl.recipe import EvalConfig, OptimConfig
from hfssl.settings import RecipeError, build_section
from hfssl.training.optim import build_optimizer

DATA = ImageDataConfig(source="builtin:digits", image_size=16, channels=3)
TINY = {"layer_type": "basic", "depths": [1, 1], "hidden_sizes": [16, 32], "embedding_size": 16}
SMALL = {"model_type": "resnet", "layer_type": "basic", "depths": [1], "hidden_sizes": [8], "embedding_size": 8}


def test_soft_target_cross_entropy_matches_its_formula_at_any_temperature():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 5, generator=generator), torch.randn(4, 5, generator=generator) * 3
    for temperature in (1.0, 0.5, 4.0):
        expected = 0.0
        for s, t in zip(student.tolist(), teacher.tolist()):
            t_norm = sum(math.exp(v / temperature) for v in t)
            s_norm = sum(math.exp(v / temperature) for v in s)
            expected -= sum(math.exp(tv / temperature) / t_norm * math.log(math.exp(sv / temperature) / s_norm)
                            for sv, tv in zip(s, t))
        assert SoftTargetCrossEntropy(temperature)(student, teacher).item() == pytest.approx(expected / 4, rel=1e-5)
    # Its minimum over the student is the teacher's entropy, reached at the teacher's own logits (+ a shift).
    entropy = -(teacher.softmax(-1) * teacher.log_softmax(-1)).sum(-1).mean()
    assert SoftTargetCrossEntropy()(teacher + 7.0, teacher).item() == pytest.approx(entropy.item(), rel=1e-5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SoftTargetCrossEntropy(0.0)


def test_the_labelled_loss_reads_only_labelled_rows_and_mixes_as_configured():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, generator=generator)
    labels = torch.tensor([2, UNLABELLED, 0, UNLABELLED])
    expected = -(logits.log_softmax(-1)[0, 2] + logits.log_softmax(-1)[2, 0]) / 2
    assert labelled_cross_entropy(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert labelled_cross_entropy(logits, torch.full((4,), UNLABELLED)).item() == 0.0
    config = {"model_type": "resnet", **TINY, "num_labels": 3}
    model = DistillForImageClassification(DistillConfig(classifier_config=config, teacher_config=config,
                                                        temperature=2.0, labelled_weight=0.25)).train()
    assert not model.teacher.training
    pixels = torch.randn(4, 3, 16, 16, generator=generator)
    out = model(pixel_values=pixels, labels=labels)
    assert out.loss.item() == pytest.approx(0.75 * out.distill_loss.item() + 0.25 * out.labelled_loss.item(), rel=1e-6)
    out.loss.backward()
    assert all(parameter.grad is None for parameter in model.teacher.parameters())
    optimiser = build_optimizer(model, OptimConfig(lr=0.1))
    teacher = {id(parameter) for parameter in model.teacher.parameters()}
    assert not teacher & {id(p) for group in optimiser.param_groups for p in group["params"]}
    assert not any(name.startswith("teacher.") for name in model.state_dict())


@pytest.fixture(scope="module")
def splits():
    return load_image_splits(DATA)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, splits) -> tuple[str, Path]:
    """An encoder (the student's starting point) and a fine-tuning output of it at 10 % of the labels."""
    folder = tmp_path_factory.mktemp("distill")
    ResNetModel(ResNetConfig(**TINY)).save_pretrained(folder / "encoder")
    ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        folder / "encoder")
    finetune(str(folder / "encoder"), splits.train, splits.test, splits.label_names, 10,
             FineTuneSettings(max_steps=4, batch_size=64, lr=3e-3), folder / "finetune", 0.1)
    return str(folder / "encoder"), folder / "finetune"


def test_distillation_resumes_exactly_and_the_student_runs_in_a_fresh_pipeline_without_hfssl(tmp_path, splits, teacher):
    encoder, finetuned = teacher
    assert teacher_classifier_path(str(finetuned)) == str(finetuned / "model")
    settings = DistillSettings(teacher=str(finetuned), label_fraction=0.1, max_steps=4, batch_size=32,
                               checkpoint_every=2, labelled_weight=0.5, seed=3)
    whole = distill(encoder, splits.train, splits.test, splits.label_names, 10, settings, tmp_path / "d")
    row = whole.row
    assert row["label_fraction"] == 0.1 and row["seed"] == 3 and row["steps"] == 4
    assert row["num_unlabelled"] == len(splits.train) and 0 < row["num_labelled"] < len(splits.train) / 5
    assert 0.0 <= row["top1"] <= row["top5"] <= 1.0 and 0.0 <= row["teacher_top1"] <= 1.0
    checkpoint = tmp_path / "d" / "checkpoints" / "step-00000002"
    assert not any(name.startswith("teacher.") for name in load_file(checkpoint / "model.safetensors"))
    expected = load_file(whole.model_dir / "model.safetensors")
    shutil.rmtree(tmp_path / "d" / "checkpoints" / "step-00000004")
    shutil.rmtree(whole.model_dir)
    resumed = distill(encoder, splits.train, splits.test, splits.label_names, 10,
                      DistillSettings(**{**settings.__dict__, "resume": True}), tmp_path / "d")
    weights = load_file(resumed.model_dir / "model.safetensors")
    assert weights.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(weights[name], value), name
    assert resumed.row["top1"] == row["top1"]

    images = read_pixels(splits.test, 0, 16)
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from PIL import Image
        from transformers import pipeline
        classify = pipeline("image-classification", model={str(resumed.model_dir)!r}, device="cpu")
        images = [Image.fromarray(array.transpose(1, 2, 0)) for array in np.load({str(tmp_path / 'images.npy')!r})]
        print(json.dumps({{"top": [answer[0]["label"] for answer in classify(images)],
                           "hfssl": any(name.startswith("hfssl") for name in sys.modules)}}))
    """)
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    answer = json.loads(output.stdout.strip().splitlines()[-1])
    assert answer["hfssl"] is False
    ours = [splits.label_names[index] for index in resumed.predictions[:16]]
    assert np.mean([a == b for a, b in zip(answer["top"], ours)]) >= 0.9, (answer["top"], ours)


def test_the_protocol_distils_into_a_smaller_student_from_the_evaluation_config(tmp_path, teacher):
    encoder, finetuned = teacher
    eval_config = EvalConfig(protocols=("distill",), baselines=False, settings={"distill": {
        "teacher": str(finetuned), "label_fraction": 0.1, "max_steps": 2, "batch_size": 32, "init": "random",
        "student_config": SMALL, "output_dir": str(tmp_path / "small")}})
    row = evaluate_path(encoder, DATA, eval_config)["results"][0]
    assert row["protocol"] == "distill" and row["student"] == "config" and row["label_fraction"] == 0.1
    assert row["student_parameters"] < row["teacher_parameters"]
    config = json.loads((Path(row["model_dir"]) / "config.json").read_text())
    assert config["architectures"] == ["ResNetForImageClassification"] and config["hidden_sizes"] == [8]


@pytest.mark.parametrize("values, key", [({"init": "imagenet"}, "init"), ({"temperature": 0}, "temperature"),
                                         ({"labelled_weight": 2}, "labelled_weight"),
                                         ({"label_fraction": 2}, "label_fraction"),
                                         ({"student_config": {"model_type": "resnet"}}, "student_config"),
                                         ({"student_config": {"depths": [1]}, "init": "random"}, "student_config")])
def test_bad_settings_name_the_setting(values, key):
    with pytest.raises(RecipeError, match=f"eval.distill.{key}"):
        build_section(DistillSettings, "eval.distill", {"teacher": "some/classifier", **values})
    with pytest.raises(RecipeError, match="set eval.distill.teacher"):
        build_section(DistillSettings, "eval.distill", {})


def test_a_teacher_of_other_classes_is_refused(tmp_path, splits, teacher):
    encoder, _ = teacher
    from transformers import ResNetForImageClassification

    ResNetForImageClassification(ResNetConfig(**TINY, num_labels=3)).save_pretrained(tmp_path / "three")
    with pytest.raises(RecipeError, match="predicts 3 classes and the data have 10"):
        distill(encoder, splits.train, splits.test, splits.label_names, 10,
                DistillSettings(teacher=str(tmp_path / "three"), max_steps=1), tmp_path / "b")

