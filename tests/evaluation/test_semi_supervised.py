"""The semi-supervised protocols (pseudo-label, mean-teacher, fixmatch): exact resume through the engine, a plain
transformers classifier that loads in a fresh process without hfssl, rows with the label fraction and the seed,
the EMA teacher and its ramp-up, the labelled draw, and refused settings."""

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
from hfssl.data.images import load_image_splits, read_labels, read_pixels
from hfssl.evaluation.runner import evaluate_path
from hfssl.evaluation.semi_supervised import (
    FIXMATCH, MEAN_TEACHER, FixMatchSettings, MeanTeacherSettings, PseudoLabelSettings, SemiSupervisedConfig,
    SemiSupervisedForImageClassification, labelled_indices, semi_supervised,
)
from hfssl.evaluation.subsets import balanced_subset
from hfssl.recipe import EvalConfig
from hfssl.settings import RecipeError, build_section

DATA = ImageDataConfig(source="builtin:digits", image_size=16, channels=3)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("semisup") / "encoder"
    ResNetModel(ResNetConfig(layer_type="basic", depths=[1, 1], hidden_sizes=[16, 32], embedding_size=16)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def splits():
    return load_image_splits(DATA)


def test_mean_teacher_resumes_exactly_and_exports_a_plain_classifier(tmp_path, encoder, splits):
    settings = dict(max_steps=3, batch_size=8, unlabelled_ratio=2, checkpoint_every=2, rampup_ratio=0.5)
    whole = semi_supervised(encoder, splits.train, splits.test, splits.label_names, 10,
                            MeanTeacherSettings(**settings), tmp_path / "mt", 0.1)
    expected = load_file(tmp_path / "mt" / "model.safetensors")  # the student and its EMA teacher
    assert any(name.startswith("teacher.") for name in expected)
    exported = load_file(whole.model_dir / "model.safetensors")
    assert all(torch.equal(exported[name], expected[f"teacher.{name}"]) for name in exported)  # the teacher is exported
    shutil.rmtree(tmp_path / "mt" / "checkpoints" / "step-00000003")  # interrupted after step 2
    shutil.rmtree(whole.model_dir)
    resumed = semi_supervised(encoder, splits.train, splits.test, splits.label_names, 10,
                              MeanTeacherSettings(**settings, resume=True), tmp_path / "mt", 0.1)
    assert resumed.steps == 3 and resumed.row == whole.row
    actual = load_file(tmp_path / "mt" / "model.safetensors")
    assert actual.keys() == expected.keys() and all(torch.equal(actual[name], expected[name]) for name in expected)

    images = read_pixels(splits.test, 0, 16)
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(resumed.model_dir)!r}).eval()
        processor = AutoImageProcessor.from_pretrained({str(resumed.model_dir)!r})
        images = list(np.load({str(tmp_path / 'images.npy')!r}).transpose(0, 2, 3, 1))
        with torch.no_grad():
            top = model(**processor(images, return_tensors="pt")).logits.argmax(-1).tolist()
        print(json.dumps({{"top": top, "hfssl": any(name.startswith("hfssl") for name in sys.modules)}}))
    """)
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    answer = json.loads(output.stdout.strip().splitlines()[-1])
    assert answer["hfssl"] is False
    assert np.mean(np.asarray(answer["top"]) == resumed.predictions[:16]) >= 0.9  # PIL resizing may flip a near tie


@pytest.mark.parametrize("name", ["pseudo-label", "mean-teacher", "fixmatch"])
def test_protocol_rows_carry_the_label_fraction_and_the_seed(tmp_path, encoder, name):
    eval_config = EvalConfig(protocols=(name,), baselines=False, settings={name: {
        "max_steps": 2, "batch_size": 8, "unlabelled_ratio": 2, "init": "random", "seed": 3,
        "label_fractions": [0.05], "output_dir": str(tmp_path / "runs")}})
    results = evaluate_path(encoder, DATA, eval_config)
    (row,) = results["results"]
    assert row["protocol"] == name and row["label_fraction"] == 0.05 and row["seed"] == 3 and row["init"] == "random"
    labels = read_labels(load_image_splits(DATA).train)
    assert row["num_labelled"] == len(balanced_subset(labels, 0.05, 3)) and row["num_unlabelled"] == len(labels)
    assert row["steps"] == 2 and 0.0 <= row["top1"] <= row["top5"] <= 1.0
    assert Path(row["model_dir"]).parent.name == "fraction-0.05-random"
    assert json.loads((Path(row["model_dir"]) / "config.json").read_text())["architectures"] == [
        "ResNetForImageClassification"]
    json.dumps(results)


def test_mean_teacher_ema_and_sigmoid_rampup(encoder):
    config = json.loads((Path(encoder) / "config.json").read_text())
    model = SemiSupervisedForImageClassification(SemiSupervisedConfig(
        classifier_config={**config, "num_labels": 4}, algorithm=MEAN_TEACHER, unlabelled_weight=50.0,
        rampup_ratio=0.4, teacher_momentum=0.9))
    teacher, student = model.teacher.state_dict(), model.classifier.state_dict()
    assert all(torch.equal(teacher[name], student[name]) for name in teacher)
    assert not any(parameter.requires_grad for parameter in model.teacher.parameters())
    before = {name: value.clone() for name, value in teacher.items()}
    with torch.no_grad():
        for parameter in model.classifier.parameters():
            parameter.add_(1.0)
    model.on_train_step_end(1, {"teacher_momentum": 0.9, "unlabelled_rampup": 1.0})
    for name, parameter in model.classifier.named_parameters():
        torch.testing.assert_close(model.teacher.state_dict()[name], 0.9 * before[name] + 0.1 * parameter.detach())
    schedules = model.schedules()
    assert schedules["teacher_momentum"](50, 100) == 0.9
    for step, progress in ((0, 0.0), (20, 0.5), (40, 1.0), (90, 1.0)):
        assert schedules["unlabelled_rampup"](step, 100) == pytest.approx(progress)
        model.on_train_step_start(step, {"unlabelled_rampup": schedules["unlabelled_rampup"](step, 100)})
        assert model.unlabelled_weight() == pytest.approx(50.0 * math.exp(-5.0 * (1.0 - progress) ** 2))
    fixmatch = SemiSupervisedForImageClassification(SemiSupervisedConfig(
        classifier_config={**config, "num_labels": 4}, algorithm=FIXMATCH))
    assert set(fixmatch.schedules()) == {"unlabelled_rampup"} and fixmatch.schedules()["unlabelled_rampup"](0, 10) == 1.0


def test_labelled_draw_is_without_replacement_inside_a_step():
    generator = torch.Generator().manual_seed(0)
    assert sorted(labelled_indices(10, 10, generator).tolist()) == list(range(10))
    drawn = labelled_indices(4, 10, torch.Generator().manual_seed(0))
    assert len(drawn) == 10 and sorted(drawn[:8].tolist()) == sorted(list(range(4)) * 2)


@pytest.mark.parametrize("settings, values, key", [
    (FixMatchSettings, {"threshold": 1.5}, "eval.fixmatch: threshold"),
    (FixMatchSettings, {"randaugment_magnitude": 2.0}, "views.randaugment_magnitude"),
    (PseudoLabelSettings, {"rampup_ratio": 1.0}, "eval.pseudo-label: rampup_ratio"),
    (MeanTeacherSettings, {"teacher_momentum": 1.0}, "eval.mean-teacher: teacher_momentum"),
    (MeanTeacherSettings, {"unlabelled_ratio": 0}, "eval.mean-teacher.unlabelled_ratio"),
    (PseudoLabelSettings, {"label_fractions": [0.0]}, "eval.pseudo-label.label_fractions"),
    (FixMatchSettings, {"init": "imagenet"}, "eval.fixmatch.init"),
])
def test_bad_settings_are_refused_with_their_name(settings, values, key):
    with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
        build_section(settings, f"eval.{settings.algorithm}", values)


def test_a_folder_of_another_model_is_not_replaced(tmp_path, encoder, splits):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.json").write_text(json.dumps({"model_type": "hfssl_simclr"}))
    with pytest.raises(ValueError, match="not an earlier semi-supervised run"):
        semi_supervised(encoder, splits.train, splits.test, splits.label_names, 10, FixMatchSettings(max_steps=1),
                        tmp_path / "taken", 0.1)


def test_eval_command_line_sets_any_protocol_setting(encoder):
    import argparse

    from hfssl.evaluation.cli import add_eval_arguments, resolve_configs

    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    _, config = resolve_configs(parser.parse_args([encoder, "--dataset", "builtin:digits", "--protocol", "fixmatch",
                                                   "--set", "fixmatch.label_fractions=[0.01, 0.1]",
                                                   "--set", "fixmatch.max_steps=500"]))
    assert config.settings["fixmatch"] == {"label_fractions": [0.01, 0.1], "max_steps": 500}
    with pytest.raises(RecipeError, match="unknown protocol 'fixmach'"):
        resolve_configs(parser.parse_args([encoder, "--dataset", "builtin:digits", "--set", "fixmach.max_steps=5"]))
    with pytest.raises(RecipeError, match="PROTOCOL.KEY=VALUE"):
        resolve_configs(parser.parse_args([encoder, "--dataset", "builtin:digits", "--set", "max_steps=5"]))
