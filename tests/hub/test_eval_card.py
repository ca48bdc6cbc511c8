"""`hfssl eval --plot` with the new protocols on a run, then its card: results, model-index, pictures."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import ModelCard

from hfssl.cli import main as hfssl_main
from hfssl.hub.card import write_model_card
from hub_fixtures import make_run


def test_new_protocols_reach_the_results_the_pictures_and_the_model_index(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    code = hfssl_main(["eval", str(run), "--no-baselines", "--plot",
                       "--protocol", "linear", "--label-fractions", "0.1", "1",
                       "--protocol", "few-shot", "--episodes", "40",
                       "--protocol", "finetune", "--finetune-max-steps", "2"])
    assert code == 0
    results = json.loads((run / "eval_results.json").read_text())
    protocols = [row["protocol"] for row in results["results"]]
    assert protocols.count("linear") == 2 and protocols.count("few-shot") == 4 and protocols.count("finetune") == 1
    tuned = next(row for row in results["results"] if row["protocol"] == "finetune")
    assert tuned["max_steps"] == 2 and Path(tuned["model_dir"]) == run / "finetune" / "all-labels" / "model"
    assert (Path(tuned["model_dir"]) / "config.json").is_file()
    images = sorted(path.name for path in (run / "images").glob("*.png"))
    assert {"embeddings_2d.png", "embeddings_tsne.png", "confusion_linear.png", "confusion_linear-fraction-0.1.png",
            "confusion_finetune.png", "reliability_finetune.png"} <= set(images)
    assert 0.0 <= tuned["ece"] <= tuned["mce"] <= 1.0 and tuned["nll"] > 0 and 0.0 <= tuned["brier"] <= 2.0

    card_path = write_model_card(run)
    text = card_path.read_text()
    assert "images/embeddings_tsne.png" in text and "images/confusion_finetune.png" in text
    assert "fine-tuned" in text.lower()
    assert (f"Reliability diagram of the fine-tuned classifier (finetune) on the test split (ECE "
            f"{100 * tuned['ece']:.1f} %)") in text and "](images/reliability_finetune.png)" in text
    # The shared table shows the fine-tuned classifier's calibration in the ECE, NLL and Brier columns (the run's
    # earlier rows have raw-pixel baselines: a model and a baseline column each).
    lines = text.splitlines()
    header = [cell.strip() for cell in next(line for line in lines if line.startswith("| Protocol |")).split("|")[1:-1]]
    cells = [cell.strip() for cell in next(line for line in lines if line.startswith("| Fine-tuned")).split("|")[1:-1]]
    assert cells[header.index("ECE, model")] == f"{100 * tuned['ece']:.1f}"
    assert cells[header.index("NLL, model")] == f"{tuned['nll']:.3f}"
    assert cells[header.index("Brier score, model")] == f"{tuned['brier']:.3f}"
    card = ModelCard.load(card_path)
    names = [result.metric_name for result in card.data.eval_results]
    tasks = {result.metric_config: result.task_name for result in card.data.eval_results}
    assert any(name.startswith("Fine-tuned") for name in names)
    (ece,) = [result for result in card.data.eval_results if result.metric_config == "finetune"
              and result.metric_type == "expected_calibration_error"]
    assert ece.metric_value == round(tuned["ece"], 6)
    assert any(name.startswith("Few-shot") and "shots=5" in name for name in names)
    assert any("label_fraction=0.1" in name for name in names)
    # One task name per task and data set in a model-index: with fine-tuned rows it cannot say "frozen features".
    assert tasks["finetune"] == tasks["linear"] == "Image classification"
