"""A protocol defined only in tests/ (tests/toy_protocol.py) runs from a recipe at the end of training (of the
toy method, also defined only in tests/), from ``hfssl eval``, and from another process through the
``hfssl.protocols`` entry point; it lands in eval_results.json, in the card's table and model-index, and its
declared picture in the card, without any change to hfssl/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import toy_method
import toy_protocol
from hfssl.cli import main as hfssl_main
from hfssl.evaluation.protocols import available_protocols, get_protocol
from hfssl.pipeline import run

TESTS_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def toys():
    spec = toy_method.register()
    toy_protocol.register()
    yield spec
    toy_protocol.unregister()
    toy_method.unregister()


def toy_recipe() -> object:
    return toy_method.toy_recipe(160, 80, max_steps=4, eval={
        "protocols": ["knn", toy_protocol.NAME], "knn": {"k": [5]}, "baselines": False,
        toy_protocol.NAME: {"normalize": True}})


def test_the_centroid_cosine_is_what_it_says() -> None:
    train = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    cosines = toy_protocol.centroid_cosines(train, np.array([0, 0, 1]), np.array([[1.0, 1.0], [0.0, 5.0]]),
                                            np.array([0, 1]), normalize=True)
    assert np.allclose(cosines, [np.sqrt(0.5), 1.0])


def test_a_protocol_from_tests_runs_at_the_end_of_training_and_reaches_the_card(toys, tmp_path: Path) -> None:
    assert toy_protocol.NAME in available_protocols() and toy_protocol.NAME in available_protocols("image")
    run_dir = run(toy_recipe(), tmp_path / "run").output_dir
    results = json.loads((run_dir / "eval_results.json").read_text())
    (row,) = [row for row in results["results"] if row["protocol"] == toy_protocol.NAME]
    assert row["features"] == "model" and row["normalize"] is True and -1.0 <= row["centroid_cosine"] <= 1.0
    assert (run_dir / "images" / toy_protocol.PICTURE.file).is_file()
    card = (run_dir / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    metrics = [metric for entry in metadata["model-index"][0]["results"] for metric in entry["metrics"]]
    (toy_metric,) = [metric for metric in metrics if metric["type"] == "cosine_similarity"]
    assert toy_metric["value"] == pytest.approx(row["centroid_cosine"], abs=1e-6)
    assert toy_metric["name"] == "Centroid cosine (unit=True) mean cosine to the class centroid"
    assert "**Centroid cosine**: the mean cosine similarity" in card
    # The table's columns: kNN's top-1 and top-5, then the toy metric; each row fills its own.
    assert "| Protocol | top-1 accuracy | top-5 accuracy | mean cosine to the class centroid |" in card
    assert f"| Centroid cosine (unit=True) | - | - | {row['centroid_cosine']:.3f} |" in card
    assert "## Centroid cosines" in card and f"](images/{toy_protocol.PICTURE.file})" in card
    assert "Cosine similarity of 80 test features" in card


def test_hfssl_eval_runs_the_protocol_and_checks_its_settings(toys, tmp_path: Path, capsys) -> None:
    run_dir = run(toy_recipe(), tmp_path / "run").output_dir
    output = tmp_path / "toy.json"
    assert hfssl_main(["eval", str(run_dir), "--protocol", toy_protocol.NAME, "--output", str(output)]) == 0
    (row,) = json.loads(output.read_text())["results"]
    assert row["protocol"] == toy_protocol.NAME
    recipe = toy_recipe()
    recipe.eval.settings[toy_protocol.NAME] = {"min_count": 0}
    with pytest.raises(Exception, match="eval.toy-centroid.min_count must be >= 1"):
        run(recipe, tmp_path / "bad")
    assert not (tmp_path / "bad" / "model.safetensors").exists()


def test_an_installed_package_adds_a_protocol_through_the_entry_point(toys, tmp_path: Path) -> None:
    """A distribution on sys.path whose metadata lists the module under ``hfssl.protocols``: a fresh process that
    imports only hfssl finds the protocol, and ``hfssl eval`` runs it on a run trained here."""
    run_dir = run(toy_recipe(), tmp_path / "run").output_dir
    site = tmp_path / "site"
    info = site / "toy_protocol_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-protocol-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hfssl.protocols]\ntoy-centroid = toy_protocol\n")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(TESTS_DIR)])}
    # The run's method lives in tests/ too: the fresh process registers it the way a plug-in method would.
    method_info = site / "toy_method_plugin-0.1.dist-info"
    method_info.mkdir()
    (method_info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-method-plugin\nVersion: 0.1\n")
    (method_info / "entry_points.txt").write_text("[hfssl.methods]\ntoy_queue = toy_method_plugin\n")
    (site / "toy_method_plugin.py").write_text("import toy_method\n\ntoy_method.register()\n")
    output = tmp_path / "plugin.json"
    result = subprocess.run([sys.executable, "-m", "hfssl.cli", "eval", str(run_dir), "--protocol", toy_protocol.NAME,
                             "--output", str(output)], capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(output.read_text())["results"]
    assert row["protocol"] == toy_protocol.NAME and row["normalize"] is True
    help_text = subprocess.run([sys.executable, "-m", "hfssl.cli", "eval", "--help"], capture_output=True, text=True,
                               env=environment, timeout=300).stdout
    # argparse wraps at hyphens too ("toy-" at a line's end): undo that before comparing.
    assert "toy-centroid: mean cosine of test features to their class centroid" in " ".join(
        re.sub(r"-\n\s+", "-", help_text).split())
    assert get_protocol(toy_protocol.NAME).card_entry.title == "Centroid cosine"
