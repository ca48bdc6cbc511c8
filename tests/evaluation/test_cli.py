"""``hfssl eval`` end to end on builtin:digits: the eval sub-command's parser and handler."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from transformers import ViTImageProcessor

from hfssl import SimCLRConfig, SimCLRForPreTraining
from hfssl.evaluation.cli import add_eval_arguments, resolve_configs, run_eval
from tiny import TINY_RESNET

def hfssl_eval(argv: list[str]) -> int:
    """``hfssl eval ARGV`` as the project CLI wires it (a sub-parser filled by add_eval_arguments)."""
    parser = argparse.ArgumentParser(prog="hfssl")
    add_eval_arguments(parser.add_subparsers(dest="command").add_parser("eval"))
    return run_eval(parser.parse_args(["eval", *argv]))


TOP_LEVEL = {"dataset", "train_split", "test_split", "num_train", "num_test", "num_classes", "results", "baselines"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = SimCLRForPreTraining(SimCLRConfig(backbone_config=dict(TINY_RESNET), projection_hidden_dim=32, projection_dim=16))
    path = tmp_path_factory.mktemp("run")
    model.save_pretrained(path)
    model.get_backbone().save_pretrained(path / "encoder")
    ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(path / "encoder")
    return path


def test_eval_run_dir_on_digits_writes_merged_results(run_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A row of another protocol (word similarity) already in the file must survive.
    foreign = {"protocol": "word-similarity", "dataset": "wordsim353", "spearman": 0.4}
    (run_dir / "eval_results.json").write_text(json.dumps({"results": [foreign], "baselines": []}))
    caplog.set_level(logging.INFO, logger="hfssl.evaluation.cli")
    code = hfssl_eval([str(run_dir), "--dataset", "builtin:digits", "--protocol", "knn", "--protocol", "linear",
                 "--image-size", "8", "--channels", "1", "--k", "20", "200"])
    assert code == 0
    results = json.loads((run_dir / "eval_results.json").read_text())
    assert set(results) == TOP_LEVEL
    assert (results["dataset"], results["train_split"], results["test_split"]) == ("builtin:digits", "train", "test")
    assert (results["num_train"], results["num_test"], results["num_classes"]) == (1437, 360, 10)
    model_rows = [row for row in results["results"] if row.get("features") == "model"]
    assert [(row["protocol"], row.get("k")) for row in model_rows] == [("knn", 20), ("knn", 200), ("linear", None)]
    assert foreign in results["results"]
    assert [(row["protocol"], row["features"]) for row in results["baselines"]] == [
        ("knn", "raw_pixels"), ("knn", "raw_pixels"), ("linear", "raw_pixels")]
    for row in model_rows + results["baselines"]:
        assert 0.0 <= row["top1"] <= row["top5"] <= 1.0
    linear_baseline = results["baselines"][2]
    assert linear_baseline["C"] in (0.001, 0.01, 0.1, 1.0, 10.0)
    assert linear_baseline["top1"] > 0.9  # logistic regression on raw digit pixels
    assert results["baselines"][0]["top1"] > 0.9  # 20-NN on raw digit pixels
    assert "1437 train, 360 test, 10 classes" in caplog.text and "raw_pixels" in caplog.text  # the logged table


def test_eval_encoder_prints_json_to_stdout(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = hfssl_eval([str(run_dir / "encoder"), "--dataset", "builtin:digits", "--protocol", "knn", "--k", "10",
                 "--no-baselines", "--image-size", "8", "--max-train-samples", "300", "--max-test-samples", "100"])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert (results["num_train"], results["num_test"]) == (300, 100)
    assert results["baselines"] == [] and [row["k"] for row in results["results"]] == [10]


def test_recipe_defaults_and_flag_overrides(run_dir: Path, tmp_path: Path) -> None:
    recipe = {"method": "simclr", "data": {"source": "builtin:digits", "image_size": 24, "eval_split": "test"},
              "eval": {"protocols": ["knn"], "knn": {"k": [5]}, "baselines": False}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    data, config = resolve_configs(parser.parse_args([str(tmp_path)]))
    assert (data.source, data.image_size, config.protocols, tuple(config.settings["knn"]["k"]), config.baselines) == (
        "builtin:digits", 24, ("knn",), (5,), False)
    data, config = resolve_configs(parser.parse_args([str(tmp_path), "--image-size", "8", "--k", "3", "7", "--protocol", "linear"]))
    assert (data.image_size, tuple(config.settings["knn"]["k"]), config.protocols) == (8, (3, 7), ("linear",))
    with pytest.raises(ValueError, match="--dataset SOURCE"):
        resolve_configs(parser.parse_args([str(run_dir / "encoder")]))


def test_bad_input_names_the_problem(run_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown evaluation protocol 'nope'"):
        hfssl_eval([str(run_dir), "--dataset", "builtin:digits", "--protocol", "nope"])
