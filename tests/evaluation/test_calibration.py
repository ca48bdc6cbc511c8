"""Calibration: ECE, MCE, NLL and Brier against hand-computed values, bad input named, and the ``calibration``
protocol through ``hfssl eval`` on builtin:digits (rows, baselines, the reliability diagram and its card caption)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import ViTImageProcessor

from hfssl import SimCLRConfig, SimCLRForPreTraining
from hfssl.evaluation.calibration import calibration_scores, reliability_bins, softmax
from hfssl.plots import card_pictures, png_description
from test_cli import hfssl_eval
from tiny import TINY_RESNET

# Five examples, two classes; top-1 confidences 0.9, 0.8, 0.6, 0.55, 0.3 -> 0.7 (the last row's top class is 1).
PROBABILITIES = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.55, 0.45], [0.3, 0.7]])
LABELS = np.array([0, 1, 1, 1, 1])


def test_scores_equal_the_hand_computed_values():
    # Bins of width 0.5: (0, 0.5] is empty; (0.5, 1] holds all five, confidence mean (0.9+0.8+0.6+0.55+0.7)/5 = 0.71,
    # three correct (rows 0, 2, 4) -> accuracy 0.6, ECE = MCE = |0.6 - 0.71| = 0.11.
    two = calibration_scores(PROBABILITIES, LABELS, bins=2)
    assert two["ece"] == pytest.approx(0.11) and two["mce"] == pytest.approx(0.11)
    # Ten bins: (0.5, 0.6] holds 0.6 and 0.55 (one right: acc 0.5, conf 0.575), (0.6, 0.7] holds 0.7 (right),
    # (0.7, 0.8] holds 0.8 (wrong), (0.8, 0.9] holds 0.9 (right).
    ece = (2 * abs(0.5 - 0.575) + abs(1 - 0.7) + abs(0 - 0.8) + abs(1 - 0.9)) / 5
    ten = calibration_scores(PROBABILITIES, LABELS, bins=10)
    assert ten["ece"] == pytest.approx(ece) and ten["mce"] == pytest.approx(0.8)
    assert ten["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.2, 0.6, 0.45, 0.7])))
    brier = np.mean([2 * 0.1**2, 2 * 0.8**2, 2 * 0.4**2, 2 * 0.55**2, 2 * 0.3**2])
    assert ten["brier"] == pytest.approx(brier)
    assert ten["top1"] == pytest.approx(0.6) and ten["mean_confidence"] == pytest.approx(0.71)
    table = reliability_bins(PROBABILITIES, LABELS, bins=10)
    assert table.count.tolist() == [0, 0, 0, 0, 0, 2, 1, 1, 1, 0]
    assert table.accuracy[5] == pytest.approx(0.5) and table.confidence[5] == pytest.approx(0.575)
    assert math.isnan(table.accuracy[0])
    # A bin edge belongs to the bin below it: a confidence of exactly 0.5 lands in (0.4, 0.5].
    assert reliability_bins(np.array([[0.5, 0.5]]), np.array([0]), bins=10).count.tolist() == [0] * 4 + [1] + [0] * 5


def test_softmax_of_logits_by_hand():
    # exp(0) : exp(ln 3) = 1 : 3; a shift of every logit changes nothing, large logits do not overflow.
    assert softmax(np.array([[0.0, math.log(3.0)]])) == pytest.approx(np.array([[0.25, 0.75]]), abs=1e-15)
    assert softmax(np.array([[1000.0, 1000.0 + math.log(3.0)]])) == pytest.approx(np.array([[0.25, 0.75]]), abs=1e-12)
    with pytest.raises(ValueError, match="logits \\(N, K\\)"):
        softmax(np.array([1.0, 2.0]))


def test_a_perfectly_calibrated_classifier_has_zero_ece():
    # Confidence 0.75 in every row, three of four right.
    probabilities = np.array([[0.75, 0.25]] * 4)
    assert calibration_scores(probabilities, np.array([0, 0, 0, 1]))["ece"] == pytest.approx(0.0)


@pytest.mark.parametrize(("probabilities", "labels", "message"), [
    (np.array([[2.0, -1.0]]), np.array([0]), "non-negative"),
    (np.array([[0.2, 0.2]]), np.array([0]), "summing to 1"),
    (np.array([[0.5, 0.5]]), np.array([2]), "class indices"),
    (np.array([0.5, 0.5]), np.array([0]), r"\(N, K\)"),
])
def test_bad_input_is_named(probabilities, labels, message):
    with pytest.raises(ValueError, match=message):
        calibration_scores(probabilities, labels)


def test_the_protocol_through_hfssl_eval_writes_rows_and_a_reliability_diagram(tmp_path: Path):
    torch.manual_seed(0)
    model = SimCLRForPreTraining(SimCLRConfig(backbone_config=dict(TINY_RESNET), projection_hidden_dim=32,
                                              projection_dim=16))
    model.save_pretrained(tmp_path)
    model.get_backbone().save_pretrained(tmp_path / "encoder")
    ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3,
                      image_std=[0.5] * 3).save_pretrained(tmp_path / "encoder")
    code = hfssl_eval([str(tmp_path), "--dataset", "builtin:digits", "--protocol", "calibration", "--image-size", "8",
                       "--channels", "1", "--plot", "--set", "calibration.c_grid=[0.1]",
                       "--set", "calibration.label_fractions=[0.1, 1.0]"])
    assert code == 0
    results = json.loads((tmp_path / "eval_results.json").read_text())
    rows = [row for row in results["results"] if row["protocol"] == "calibration"]
    assert [row.get("label_fraction") for row in rows] == [0.1, None]
    for row in rows + [row for row in results["baselines"] if row["protocol"] == "calibration"]:
        assert 0.0 <= row["ece"] <= row["mce"] <= 1.0 and row["nll"] > 0 and 0.0 <= row["brier"] <= 2.0
        assert row["bins"] == 15 and row["C"] == 0.1 and 0.1 < row["top1"] <= 1.0
    assert rows[1]["top1"] >= rows[0]["top1"] - 0.05  # all labels do not probe worse than 10 % of them
    picture = tmp_path / "images" / "reliability_calibration.png"
    assert png_description(picture) == {"reliability": "calibration", "count": "360", "ece": f"{rows[1]['ece']:.4f}",
                                        "subject": "linear_probe"}
    assert (tmp_path / "images" / "reliability_calibration-fraction-0.1.png").is_file()
    captions = {item["path"]: item["caption"] for item in card_pictures(tmp_path)}
    assert f"ECE {100 * rows[1]['ece']:.1f} %" in captions["images/reliability_calibration.png"]
