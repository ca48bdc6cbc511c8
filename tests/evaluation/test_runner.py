"""Protocol registry, evaluate_features / evaluate_path, merging of eval_results.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hfssl.evaluation import runner
from hfssl.evaluation.knn import knn_evaluate
from hfssl.evaluation.linear_probe import linear_probe
from hfssl.evaluation.runner import (
    PROTOCOLS,
    evaluate_features,
    evaluate_path,
    format_results_table,
    get_protocol,
    merge_eval_results,
    register_protocol,
    write_eval_results,
)
from hfssl.training.recipe import DataConfig, EvalConfig


def features(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 20)
    return np.eye(3, 8)[labels] * 3 + rng.normal(size=(60, 8)), labels


def test_evaluate_features_rows_follow_the_schema() -> None:
    (train_f, train_y), (test_f, test_y) = features(0), features(1)
    config = EvalConfig(knn_k=(5, 10), linear_c_grid=(0.1, 1.0))
    rows = evaluate_features(train_f, train_y, test_f, test_y, config, ["knn", "linear"], 3, "raw_pixels")
    assert [(row["protocol"], row["features"]) for row in rows] == [("knn", "raw_pixels")] * 2 + [("linear", "raw_pixels")]
    assert rows[:2] == [{"protocol": "knn", "features": "raw_pixels", **row}
                        for row in knn_evaluate(train_f, train_y, test_f, test_y, (5, 10), 0.07, 3)]
    assert rows[2] == {"protocol": "linear", "features": "raw_pixels",
                       **linear_probe(train_f, train_y, test_f, test_y, (0.1, 1.0), 0.1, 3)}
    for row in rows:
        assert 0.0 <= row["top1"] <= row["top5"] <= 1.0
    json.dumps(rows)  # plain JSON types only


def test_unknown_protocol_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown evaluation protocol 'knnn'; known protocols: .*knn, linear"):
        get_protocol("knnn")


def test_path_protocols_get_the_path_and_skip_image_data(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "vocab.txt").write_text("a\nb\nc\n")

    def vocabulary_size(path: str, data: DataConfig, eval_config: EvalConfig) -> list[dict]:
        return [{"vocabulary": len(Path(path, "vocab.txt").read_text().split()), "source": data.source}]

    monkeypatch.setitem(PROTOCOLS, "vocab-size", register_protocol("vocab-size", vocabulary_size, kind="path"))
    result = evaluate_path(str(tmp_path), DataConfig(source="builtin:english_corpus"), EvalConfig(), ["vocab-size"])
    assert result["results"] == [{"protocol": "vocab-size", "vocabulary": 3, "source": "builtin:english_corpus"}]
    assert "num_train" not in result and result["baselines"] == []
    with pytest.raises(ValueError, match="evaluates a model path"):
        evaluate_features(*features(0), *features(1), EvalConfig(), ["vocab-size"], 3)
    with pytest.raises(ValueError, match="kind must be"):
        register_protocol("bad", vocabulary_size, kind="text")


def test_missing_protocol_module_is_skipped_but_broken_ones_raise(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(runner, "_modules_loaded", False)
    monkeypatch.setattr(runner, "PROTOCOL_MODULES", ["hfssl.evaluation.no_such_module"])
    assert "knn" in runner.available_protocols()
    # A protocol module that exists but lacks a dependency must not be silently ignored.
    (tmp_path / "broken_protocols.py").write_text("import no_such_dependency_for_hfssl_tests\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(runner, "_modules_loaded", False)
    monkeypatch.setattr(runner, "PROTOCOL_MODULES", ["broken_protocols"])
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_for_hfssl_tests"):
        runner.available_protocols()
    # A module that registers a protocol on import makes it known.
    (tmp_path / "extra_protocols.py").write_text(
        "from hfssl.evaluation.runner import register_protocol\n"
        "register_protocol('constant', lambda path, data, config: [{'value': 1.0}], kind='path')\n"
    )
    monkeypatch.setitem(PROTOCOLS, "constant", None)  # restored (removed) after the test
    del PROTOCOLS["constant"]
    monkeypatch.setattr(runner, "_modules_loaded", False)
    monkeypatch.setattr(runner, "PROTOCOL_MODULES", ["extra_protocols"])
    assert get_protocol("constant").kind == "path"


OLD = {
    "dataset": "builtin:digits", "train_split": "train", "test_split": "test",
    "num_train": 1437, "num_test": 360, "num_classes": 10,
    "results": [
        {"protocol": "knn", "features": "model", "k": 20, "temperature": 0.07, "top1": 0.5, "top5": 0.9},
        {"protocol": "linear", "features": "model", "C": 0.1, "top1": 0.6, "top5": 0.95},
        {"protocol": "word-similarity", "dataset": "wordsim353", "spearman": 0.41},
    ],
    "baselines": [{"protocol": "knn", "features": "raw_pixels", "k": 20, "temperature": 0.07, "top1": 0.7, "top5": 0.99}],
}


def test_merge_replaces_rerun_protocols_and_keeps_the_others() -> None:
    new = {**{key: OLD[key] for key in ("dataset", "train_split", "test_split", "num_train", "num_test", "num_classes")},
           "results": [{"protocol": "knn", "features": "model", "k": 20, "temperature": 0.07, "top1": 0.8, "top5": 0.99}],
           "baselines": []}
    merged = merge_eval_results(OLD, new)
    assert [(row["protocol"], row["top1"] if "top1" in row else row["spearman"]) for row in merged["results"]] == [
        ("linear", 0.6), ("word-similarity", 0.41), ("knn", 0.8)]
    assert merged["baselines"] == []  # the knn baseline was re-run (without baselines): old one replaced


def test_merge_drops_image_rows_of_another_dataset() -> None:
    new = {"dataset": "builtin:fashion_mnist", "train_split": "train", "test_split": "test", "num_train": 100,
           "num_test": 50, "num_classes": 10,
           "results": [{"protocol": "linear", "features": "model", "C": 1.0, "top1": 0.7, "top5": 0.99}], "baselines": []}
    merged = merge_eval_results(OLD, new)
    assert merged["dataset"] == "builtin:fashion_mnist" and merged["num_train"] == 100
    assert [row["protocol"] for row in merged["results"]] == ["word-similarity", "linear"]
    # A path-protocol-only update keeps the image data fields.
    only_words = {"dataset": "builtin:english_corpus", "train_split": "train", "test_split": "test",
                  "results": [{"protocol": "word-similarity", "dataset": "simlex999", "spearman": 0.2}], "baselines": []}
    merged = merge_eval_results(OLD, only_words)
    assert merged["dataset"] == "builtin:digits" and len(merged["results"]) == 3


def test_write_eval_results_merges_atomically(tmp_path: Path) -> None:
    output = tmp_path / "eval_results.json"
    write_eval_results(OLD, output)
    new = dict(OLD, results=[{"protocol": "linear", "features": "model", "C": 1.0, "top1": 0.9, "top5": 1.0}], baselines=[])
    written = write_eval_results(new, output, merge=True)
    assert json.loads(output.read_text()) == written
    assert {row["protocol"] for row in written["results"]} == {"knn", "word-similarity", "linear"}
    assert [path.name for path in tmp_path.iterdir()] == ["eval_results.json"]  # no temporary left
    assert write_eval_results(new, output, merge=False) == new
    output.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        write_eval_results(new, output)


def test_table_lists_every_row() -> None:
    table = format_results_table(OLD)
    assert "1437 train, 360 test, 10 classes" in table
    assert "top1=60.00%" in table and "spearman=0.4100" in table and "raw_pixels" in table
    assert len(table.splitlines()) == 2 + 1 + 4  # header, column names, rule, 4 rows
