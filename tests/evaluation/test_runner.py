"""Protocol registry, the dispatcher (evaluate_features / evaluate_path / check_eval_config), merging of
eval_results.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hfssl.data.config import TextDataConfig
from hfssl.evaluation.knn import knn_evaluate
from hfssl.evaluation.linear_probe import linear_probe
from hfssl.evaluation.protocols import PROTOCOLS, Protocol, get_protocol, register_protocol
from hfssl.evaluation.runner import (
    check_eval_config,
    evaluate_features,
    evaluate_path,
    format_results_table,
    merge_eval_results,
    write_eval_results,
)
from hfssl.recipe import EvalConfig
from hfssl.registry import IMAGE_FEATURES, WORD_VECTORS
from hfssl.settings import RecipeError


def features(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 20)
    return np.eye(3, 8)[labels] * 3 + rng.normal(size=(60, 8)), labels


def test_evaluate_features_rows_follow_the_schema() -> None:
    (train_f, train_y), (test_f, test_y) = features(0), features(1)
    config = EvalConfig(settings={"knn": {"k": [5, 10]}, "linear": {"c_grid": [0.1, 1.0]}})
    rows = evaluate_features(train_f, train_y, test_f, test_y, config, ["knn", "linear"], 3, "raw_pixels")
    assert [(row["protocol"], row["features"]) for row in rows] == [("knn", "raw_pixels")] * 2 + [("linear", "raw_pixels")]
    assert rows[:2] == [{"protocol": "knn", "features": "raw_pixels", **row}
                        for row in knn_evaluate(train_f, train_y, test_f, test_y, (5, 10), 0.07, 3)]
    assert rows[2] == {"protocol": "linear", "features": "raw_pixels", "solver": "torch",
                       **linear_probe(train_f, train_y, test_f, test_y, (0.1, 1.0), 0.1, 3)}
    for row in rows:
        assert 0.0 <= row["top1"] <= row["top5"] <= 1.0
    json.dumps(rows)  # plain JSON types only


def test_unknown_protocol_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown evaluation protocol 'knnn'; known protocols: .*knn, .*linear"):
        get_protocol("knnn")


def test_word_vector_protocols_get_the_path_and_skip_image_data(monkeypatch, tmp_path: Path) -> None:
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("3 2\na 1 0\nb 0 1\nc 1 1\n")

    def vocabulary_size(context, settings) -> list[dict]:
        return [{"vocabulary": len(context.word_vectors().words), "source": context.data_config.source}]

    monkeypatch.setitem(PROTOCOLS, "vocab-size", Protocol("vocab-size", (WORD_VECTORS,), vocabulary_size))
    result = evaluate_path(str(vectors), TextDataConfig(source="builtin:english_corpus"), EvalConfig(), ["vocab-size"])
    assert result["results"] == [{"protocol": "vocab-size", "vocabulary": 3, "source": "builtin:english_corpus"}]
    assert "num_train" not in result and result["baselines"] == []
    with pytest.raises(ValueError, match="does not score image features"):
        evaluate_features(*features(0), *features(1), EvalConfig(), ["vocab-size"], 3)
    with pytest.raises(ValueError, match="unknown needs"):
        Protocol("bad", ("text",), vocabulary_size)


def test_a_protocol_the_model_cannot_serve_is_refused_with_the_reason(monkeypatch) -> None:
    with pytest.raises(RecipeError, match="'analogy' needs word-vectors, which the simclr model does not provide "
                                          "\\(it provides image-features\\); protocols it can serve: calibration, distill, "
                                          "few-shot, finetune, fixmatch, invariance, knn, linear, mean-teacher"):
        check_eval_config(EvalConfig(protocols=("knn", "analogy")), (IMAGE_FEATURES,), "the simclr model")
    with pytest.raises(RecipeError, match="unknown evaluation protocol 'linaer' in eval.protocols. Did you mean 'linear'"):
        check_eval_config(EvalConfig(protocols=("linaer",)), (IMAGE_FEATURES,), "the simclr model")
    with pytest.raises(RecipeError, match="unknown key eval.knn.temprature in recipe. Did you mean 'temperature'"):
        check_eval_config(EvalConfig(settings={"knn": {"temprature": 0.1}}), (IMAGE_FEATURES,), "the model")
    with pytest.raises(RecipeError, match="eval.knnn: no evaluation protocol is called 'knnn'"):
        check_eval_config(EvalConfig(settings={"knnn": {"k": [5]}}), (IMAGE_FEATURES,), "the model")
    with pytest.raises(RecipeError, match="eval.knn.k must be a list of positive"):
        check_eval_config(EvalConfig(settings={"knn": {"k": [0]}}), (IMAGE_FEATURES,), "the model")
    check_eval_config(EvalConfig(protocols=("knn", "linear"), settings={"knn": {"k": ["5"]}}), (IMAGE_FEATURES,), "m")
    # A protocol registered elsewhere is known to the checks at once.
    monkeypatch.setitem(PROTOCOLS, "constant", None)
    register_protocol(Protocol("constant", (IMAGE_FEATURES,), lambda context, settings: [{"value": 1.0}]))
    assert get_protocol("constant").needs == (IMAGE_FEATURES,)
    check_eval_config(EvalConfig(protocols=("constant",)), (IMAGE_FEATURES,), "the model")


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
