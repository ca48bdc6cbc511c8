"""The ``pretext`` and ``layer-linear`` protocols on a pretext method that lives in tests/ (tests/toy_pretext.py):
hand-checkable accuracies, the end of a run reporting both, the card's per-layer table, and the refusal of
``pretext`` for a method without a pretext task."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

import toy_method
import toy_pretext
from hfssl.data.config import ImageDataConfig
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.runner import evaluate
from hfssl.pipeline import run
from hfssl.recipe import EvalConfig, recipe_from_dict
from hfssl.settings import RecipeError

C_GRID = [0.1, 1.0]


@pytest.fixture
def toy():
    spec = toy_pretext.register()
    yield spec
    toy_pretext.unregister()


def _recipe(eval_section: dict, max_steps: int = 6) -> object:
    return recipe_from_dict({
        "method": toy_pretext.NAME,
        "model": {"backbone_config": toy_pretext.TINY_BACKBONE},
        "data": {"source": "builtin:digits", "image_size": 16, "channels": 1, "max_train_samples": 300,
                 "max_eval_samples": 120},
        "views": {"mean": [0.5], "std": [0.5]},
        "optim": {"lr": 0.01, "warmup_steps": 0},
        "train": {"batch_size": 32, "max_steps": max_steps, "checkpoint_every": 100, "trackers": [],
                  "progress_bar": False, "knn_every": None, "log_every": 1, "monitor_every": 100},
        "eval": eval_section,
    })


def _pretext_row(model: torch.nn.Module, recipe, seed: int = 0) -> dict:
    eval_config = EvalConfig(protocols=("pretext",), baselines=False, settings={"pretext": {"seed": seed, "batch_size": 50}})
    context = EvaluationContext(eval_config=eval_config, data_config=recipe.data, model=model, recipe=recipe)
    (row,) = evaluate(context)["results"]
    return row


@pytest.mark.parametrize(("oracle", "classes", "expected"), [
    ("labels", 4, {"top1": 1.0}),
    ("constant", 4, {"top1": 1 / 4}),
    ("constant", 8, {"top1": 1 / 8, "top5": 5 / 8}),
])
def test_pretext_accuracy_of_hand_checkable_classifiers(toy, oracle, classes, expected):
    recipe = _recipe({"protocols": ["pretext"], "baselines": False})
    config = toy_pretext.ToyPretextConfig(toy_pretext.TINY_BACKBONE, pretext_classes=classes, oracle=oracle)
    row = _pretext_row(toy_pretext.ToyPretextModel(config).eval(), recipe)
    assert {key: row[key] for key in ("top1", "top5") if key in row} == pytest.approx(expected, abs=1e-12)
    assert row["examples"] == 120 * classes and row["pretext_classes"] == classes  # every test image, balanced
    assert row["seed"] == 0 and row["batch_size"] == 50 and row["split"] == "test"


def test_the_task_is_drawn_from_one_generator_seeded_with_the_recorded_seed(toy):
    seen = []

    class Recording(toy_pretext.ToyPretextModel):
        def get_pretext_predictions(self, pixel_values, generator):
            seen.append((generator.initial_seed(), pixel_values.shape[0], self.training))
            return super().get_pretext_predictions(pixel_values, generator)

    recipe = _recipe({"protocols": ["pretext"], "baselines": False})
    model = Recording(toy_pretext.ToyPretextConfig(toy_pretext.TINY_BACKBONE, oracle="labels")).train()
    row = _pretext_row(model, recipe, seed=3)
    assert row["seed"] == 3 and row["top1"] == 1.0
    # One generator for the whole split (seed 3), batches of batch_size, the model in eval mode and then back.
    assert seen == [(3, 50, False), (3, 50, False), (3, 20, False)] and model.training


def test_a_method_without_a_pretext_task_is_refused_at_recipe_load(tmp_path: Path):
    toy_method.register()
    try:
        recipe = toy_method.toy_recipe(eval={"protocols": ["pretext"], "baselines": False})
        with pytest.raises(RecipeError, match="'pretext' needs pretext-task, which the toy_queue model does not provide"):
            run(recipe, tmp_path / "run")
        assert not (tmp_path / "run" / "model.safetensors").exists()
    finally:
        toy_method.unregister()


def _markdown_table(text: str, title: str) -> list[list[str]]:
    """The rows (header first) of the Markdown table under the bold ``title`` line."""
    lines = text[text.index(f"\n**{title}**\n"):].splitlines()[3:]
    table = []
    for line in lines:
        if not line.startswith("|"):
            break
        if not re.fullmatch(r"\|(-+:?\|)+", line):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
    return table


def test_a_run_reports_pretext_mlp_and_the_per_layer_table_reaches_the_card(toy, tmp_path: Path):
    recipe = _recipe({"protocols": ["pretext", "linear", "layer-linear", "mlp-probe"], "baselines": False,
                      "projections": ["pca"], "linear": {"c_grid": C_GRID}, "layer-linear": {"c_grid": C_GRID},
                      "mlp-probe": {"hidden_dim": 16, "epochs": 3, "batch_size": 64}}, max_steps=4)
    run_dir = run(recipe, tmp_path / "run").output_dir
    results = json.loads((run_dir / "eval_results.json").read_text())["results"]
    (pretext,) = [row for row in results if row["protocol"] == "pretext"]
    assert pretext["pretext_classes"] == 4 and "top5" not in pretext and 0.0 <= pretext["top1"] <= 1.0
    (linear,) = [row for row in results if row["protocol"] == "linear"]
    layers = [row for row in results if row["protocol"] == "layer-linear"]
    assert [(row["layer"], row["width"]) for row in layers] == [(1, 8), (2, 16)]
    # The last layer is the encoder's output: its probe is the linear probe, to the digit.
    assert layers[-1]["top1"] == linear["top1"] and layers[-1]["C"] == linear["C"]

    card = (run_dir / "README.md").read_text()
    table = _markdown_table(card, "Linear probe per layer")
    assert table[0] == ["Layer", "width", "C", "top-1 accuracy", "top-5 accuracy"]
    assert table[1:] == [[label, str(row["width"]), f"{row['C']:g}", f"{100 * row['top1']:.1f}", f"{100 * row['top5']:.1f}"]
                         for label, row in zip(["1", "2 (output)"], layers)]
    assert "| Linear probe per layer (" not in card  # not rows of the shared table
    assert "| Pretext task (seed=0, batch_size=256, classes=4) |" in card
    (mlp,) = [row for row in results if row["protocol"] == "mlp-probe"]
    assert mlp["hidden_dim"] == 16 and mlp["max_epochs"] == 3 and 1 <= mlp["best_epoch"] <= 3
    assert f"| MLP probe (width=16, depth=2) | {100 * mlp['top1']:.1f} |" in card
    assert (run_dir / "images" / "confusion_mlp-probe.png").is_file()
    assert "**Linear probe per layer**: the linear probe" in card and "**Pretext task**:" in card
    metadata = yaml.safe_load(card.split("---")[1])
    names = {metric["name"]: entry["task"]["type"] for entry in metadata["model-index"][0]["results"]
             for metric in entry["metrics"]}
    assert names["Pretext task (seed=0, batch_size=256, classes=4) top-1 accuracy"] == "other"
    assert "Linear probe per layer (layer=1, width=8, solver=torch, C=%g) top-1 accuracy" % layers[0]["C"] in names


def test_layer_linear_scores_each_layer_on_its_own(toy):
    """A model whose first layer is noise and whose second is the image: chance, then the pixel probe."""

    class NoiseThenPixels(toy_pretext.ToyPretextModel):
        def get_layer_embeddings(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
            noise = torch.randn(pixel_values.shape[0], 32, generator=self.noise)
            return [noise, pixel_values.flatten(1)]

    model = NoiseThenPixels(toy_pretext.ToyPretextConfig(toy_pretext.TINY_BACKBONE)).eval()
    model.noise = torch.Generator().manual_seed(0)
    data = ImageDataConfig(source="builtin:digits", image_size=8, channels=1)
    recipe = _recipe({"protocols": ["layer-linear"]})
    recipe.data = data
    eval_config = EvalConfig(protocols=("layer-linear",), baselines=False, max_train_samples=800, max_test_samples=400,
                             settings={"layer-linear": {"c_grid": [0.1], "label_fractions": [0.5, 1.0]}})
    context = EvaluationContext(eval_config=eval_config, data_config=data, model=model, recipe=recipe)
    rows = evaluate(context)["results"]
    by_layer = {(row["layer"], row.get("label_fraction", 1.0)): row for row in rows}
    assert sorted(by_layer) == [(1, 0.5), (1, 1.0), (2, 0.5), (2, 1.0)]
    assert by_layer[(1, 1.0)]["width"] == 32 and by_layer[(2, 1.0)]["width"] == 64
    assert by_layer[(1, 1.0)]["top1"] < 0.2  # noise: chance is 0.1 on ten classes
    assert by_layer[(2, 1.0)]["top1"] > 0.9  # raw 8x8 digits are nearly linearly separable
    with pytest.raises(ValueError, match=r"asks for layer\(s\) \[3\].*has 2 stages / blocks"):
        evaluate(EvaluationContext(
            eval_config=EvalConfig(protocols=("layer-linear",), settings={"layer-linear": {"layers": [1, 3]}}),
            data_config=data, model=model, recipe=recipe))


def test_hfssl_eval_layer_linear_on_an_exported_encoder_and_on_a_plain_transformers_model(tmp_path: Path, capsys):
    """``hfssl eval --protocol layer-linear`` on folders hfssl did not train in this process: the encoder a
    SimCLR run exports (ViT: one row per block) and a ConvNeXt saved by transformers alone (one row per stage)."""
    from transformers import ConvNextConfig, ConvNextModel, ViTImageProcessor

    from hfssl import SimCLRConfig, SimCLRForPreTraining
    from hfssl.cli import main as hfssl_main
    from hfssl.export import export_encoder
    from tiny import TINY_CONVNEXT, TINY_VIT

    torch.manual_seed(0)
    simclr = SimCLRForPreTraining(SimCLRConfig(backbone_config=dict(TINY_VIT), projection_hidden_dim=32, projection_dim=16))
    exported = export_encoder(simclr, tmp_path / "run" / "encoder", 16, (0.5,) * 3, (0.5,) * 3)
    plain = tmp_path / "convnext"
    ConvNextModel(ConvNextConfig(**{key: value for key, value in TINY_CONVNEXT.items() if key != "model_type"})).save_pretrained(plain)
    ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(plain)
    for folder, widths in ((exported, [32, 32]), (plain, [16, 32])):
        code = hfssl_main(["eval", str(folder), "--dataset", "builtin:digits", "--protocol", "layer-linear",
                           "--c-grid", "1", "--no-baselines", "--image-size", "16", "--max-train-samples", "300",
                           "--max-test-samples", "100"])
        assert code == 0
        rows = json.loads(capsys.readouterr().out)["results"]
        assert [(row["protocol"], row["layer"], row["width"], row["C"]) for row in rows] == [
            ("layer-linear", index, width, 1.0) for index, width in enumerate(widths, start=1)]
        assert all(0.1 < row["top1"] <= row["top5"] <= 1.0 for row in rows)  # random encoders, yet above chance
    capsys.readouterr()
    code = hfssl_main(["eval", str(plain), "--dataset", "builtin:digits", "--protocol", "layer-linear", "--layers", "3",
                       "--no-baselines", "--image-size", "16", "--max-train-samples", "50", "--max-test-samples", "20"])
    assert code != 0
    assert "asks for layer(s) [3]" in capsys.readouterr().err
