"""The supervised baseline: its loss is the cross-entropy of its logits (value and gradient, every view with its
image's label), data without labels is refused with the source, the label column and the fix, and it trains on
digits through the real CLI to a kNN accuracy far above chance, with a card that says it used labels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_file

from hfssl.cli import main as hfssl_main
from hfssl.data.sources import DataSourceError
from hfssl.models.supervised import SupervisedConfig, SupervisedForPreTraining, SupervisedInputs, load_data
from hfssl.recipe import load_recipe, recipe_from_dict
from hfssl.settings import RecipeError
from hfssl.training.trainer import train
from tiny import TINY_RESNET, tiny_inputs, tiny_model
from tiny_supervised import NUM_CLASSES

REPO = Path(__file__).resolve().parents[3]
DIGITS = REPO / "recipes" / "supervised" / "digits.yaml"
#: Two small stages on 1-channel input, for runs that only need to reach the data checks quickly.
SMALL = ["model.backbone_config={model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 8, "
         "hidden_sizes: [8, 16], depths: [1, 1]}", "train.trackers=[]", "train.progress_bar=false",
         "train.knn_every=null", "eval.protocols=[]", "train.max_steps=2"]


def naive_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Row by row: ``-(1 - e) log p_y - e / K sum_k log p_k`` (Szegedy et al. 2016, sec. 7), mean over rows."""
    losses = []
    for row, target in zip(logits, targets):
        log_p = row - torch.logsumexp(row, dim=0)
        losses.append(-(1 - smoothing) * log_p[target] - smoothing * log_p.mean())
    return torch.stack(losses).mean()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_loss_is_the_cross_entropy_of_every_view_with_its_image_label(smoothing):
    """In eval mode (BatchNorm's running statistics, so one view at a time gives the same features) the model's logits
    are each view's classifier output, view-major, and its loss equals torch's cross-entropy of those logits and a
    naive per-row cross-entropy of the views computed one by one: in value and in every parameter's gradient."""
    model = tiny_model("supervised", label_smoothing=smoothing).eval()
    inputs = tiny_inputs("supervised", batch_size=6, seed=2)
    pixel_values, labels = inputs["pixel_values"], inputs["labels"]
    outputs = model(**inputs)
    per_view = [model.classifier(model.get_embeddings(pixel_values[:, view])) for view in range(2)]  # (B, K) x 2
    torch.testing.assert_close(outputs.logits, torch.cat(per_view), rtol=1e-5, atol=1e-6)
    targets = torch.cat([labels, labels])
    torch.testing.assert_close(outputs.loss, F.cross_entropy(outputs.logits, targets, label_smoothing=smoothing))
    expected = naive_cross_entropy(torch.cat(per_view), targets, smoothing)
    torch.testing.assert_close(outputs.loss, expected, rtol=1e-5, atol=1e-6)

    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    gradients = torch.autograd.grad(outputs.loss, parameters)
    expected_gradients = torch.autograd.grad(expected, parameters)
    for (name, _), gradient, expected_gradient in zip(
            ((n, p) for n, p in model.named_parameters() if p.requires_grad), gradients, expected_gradients):
        torch.testing.assert_close(gradient, expected_gradient, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    assert gradients[-2].abs().max() > 1e-3  # the classifier's weight really learns
    accuracy = (torch.cat(per_view).argmax(dim=1) == targets).float().mean()
    assert outputs.classification_accuracy == accuracy


def test_one_view_per_image_is_accepted():
    model = tiny_model("supervised").train()
    inputs = tiny_inputs("supervised")
    outputs = model(pixel_values=inputs["pixel_values"][:, 0], labels=inputs["labels"])
    assert outputs.logits.shape == (4, NUM_CLASSES)
    torch.testing.assert_close(outputs.loss, F.cross_entropy(outputs.logits, inputs["labels"]))


@pytest.mark.parametrize(("labels", "message"), [
    ([0, -1, 2, 3], r"got values from -1 to 3; -1 marks an unlabelled image"),
    ([0, 1, 2, NUM_CLASSES], rf"class ids in \[0, {NUM_CLASSES}\) \(config.num_classes\), got values from 0 to {NUM_CLASSES}"),
])
def test_the_model_refuses_unlabelled_rows_and_classes_beyond_its_classifier(labels, message):
    inputs = tiny_inputs("supervised")
    with pytest.raises(ValueError, match=message):
        tiny_model("supervised")(pixel_values=inputs["pixel_values"], labels=torch.tensor(labels))


def test_config_checks():
    with pytest.raises(ValueError, match="num_classes is not set: `hfssl train` sets it from the data's labels"):
        SupervisedForPreTraining(SupervisedConfig(backbone_config=TINY_RESNET))
    with pytest.raises(ValueError, match="num_classes must be a whole number >= 2"):
        SupervisedConfig(num_classes=1)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0.0, 1.0\)"):
        SupervisedConfig(num_classes=3, label_smoothing=1.0)


def _image_source(folder: Path, labels: list[int | None] | None) -> Path:
    """A save_to_disk source of 8x8 grey images, with a ``label`` column when ``labels`` is given."""
    count = len(labels) if labels is not None else 12
    arrays = np.random.default_rng(0).integers(0, 256, size=(count, 8, 8)).astype(np.uint8)
    columns, features = {"image": arrays.tolist()}, {"image": datasets.Array2D((8, 8), "uint8")}
    if labels is not None:
        columns["label"], features["label"] = labels, datasets.Value("int64")
    dataset = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    datasets.DatasetDict({"train": dataset, "test": dataset}).save_to_disk(folder)
    return folder


def test_an_unlabelled_source_is_refused_before_training(tmp_path, capsys):
    source = _image_source(tmp_path / "unlabelled", labels=None)
    run = tmp_path / "run"
    code = hfssl_main(["train", str(DIGITS), "--output-dir", str(run), f"data.source={source}", *SMALL])
    error = capsys.readouterr().err
    assert code == 2, error
    assert f"dataset '{source}' split 'train' has no labels" in error
    assert "data.label_column is unset" in error and "set data.label_column to the column that holds the class" in error
    assert "Traceback" not in error
    assert not (run / "model.safetensors").exists() and not (run / "checkpoints").exists()


def test_a_training_split_with_unlabelled_rows_is_refused_with_their_count(tmp_path):
    source = _image_source(tmp_path / "partly", labels=[0, 1, None, 2, 0, -1, 1, 2])
    recipe = recipe_from_dict({"method": "supervised", "data": {"source": str(source), "image_size": 8, "channels": 1,
                                                                "label_column": "label"}})
    with pytest.raises(DataSourceError, match=r"2 of the 8 rows of dataset '.*partly' split 'train' have no label "
                                              r"\(null or -1 in data.label_column='label'\)"):
        load_data(recipe, Accelerator(cpu=True))


def test_the_number_of_classes_comes_from_the_data_and_a_recipe_that_disagrees_is_refused():
    recipe = load_recipe(DIGITS, ["model.num_classes=7"])
    with pytest.raises(RecipeError, match=r"model.num_classes=7 but dataset 'builtin:digits' split 'train' has 10 "
                                          r"classes \(0, 1, 2, .*, 9\).*remove model.num_classes"):
        load_data(recipe, Accelerator(cpu=True))
    data = load_data(load_recipe(DIGITS), Accelerator(cpu=True))
    assert data.config_updates == {"num_classes": 10} and data.num_classes == 10


def test_a_batch_with_unlabelled_rows_is_refused_naming_the_source_and_the_column():
    """A streamed split cannot be read ahead: the input builder checks every batch."""
    recipe = load_recipe(DIGITS, ["data.label_column=digit"])
    make_inputs = SupervisedInputs(recipe.views, recipe.data)
    pixels = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    inputs = make_inputs({"pixels": pixels, "labels": torch.tensor([1, 0, 2])}, torch.Generator().manual_seed(0))
    assert inputs["pixel_values"].shape == (3, 2, 1, 16, 16) and inputs["labels"].tolist() == [1, 0, 2]
    with pytest.raises(DataSourceError, match=r"a training batch of dataset 'builtin:digits' split 'train' has 1 of 3 "
                                              r"rows without a label \(-1 in data.label_column='digit'\)"):
        make_inputs({"pixels": pixels, "labels": torch.tensor([1, -1, 2])}, torch.Generator().manual_seed(0))


def test_multi_crop_local_views_are_refused():
    with pytest.raises(RecipeError, match="views.num_local_views is 2; set views.num_local_views=0"):
        load_recipe(DIGITS, ["views.num_local_views=2", "views.local_crop_size=8"])


def test_it_trains_on_digits_through_the_cli_far_above_chance_with_an_honest_card(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "hfssl.cli", "train", str(DIGITS), "--output-dir", str(run), "train.max_steps=40",
         "train.batch_size=64", "train.checkpoint_every=40", "train.knn_every=null", "train.trackers=[]",
         "train.progress_bar=false", "eval.protocols=[knn]", "eval.knn.k=[20]"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((run / "eval_results.json").read_text())
    knn = next(entry for entry in results["results"] if entry["protocol"] == "knn" and entry["k"] == 20)
    assert results["num_classes"] == 10 and knn["top1"] > 0.6, knn  # chance is 0.1
    assert (run / "encoder" / "config.json").is_file()
    assert json.loads((run / "config.json").read_text())["num_classes"] == 10

    card = (run / "README.md").read_text()
    assert "- supervised-learning" in card and "self-supervised-learning" not in card
    assert "trained with labels (a supervised baseline, not self-supervised learning)" in card
    assert "The labels were the training targets" in card
    assert "without labels" not in card and "labels were not used" not in card
    assert "| Full supervised model |" in card and "logits = model.classifier(embeddings)  # (2, 10)" in card


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist"])
def test_the_recipes_match_simclrs_backbone_views_and_budget(dataset):
    """The supervised row of a comparison table differs from the SSL rows in the objective only."""
    supervised = load_recipe(REPO / "recipes" / "supervised" / f"{dataset}.yaml")
    simclr = load_recipe(REPO / "recipes" / "simclr" / f"{dataset}.yaml")
    assert supervised.model["backbone_config"] == simclr.model["backbone_config"]
    for section in ("data", "views", "optim", "train", "eval"):
        assert getattr(supervised, section) == getattr(simclr, section), section


def test_a_run_resumed_from_a_checkpoint_ends_with_the_uninterrupted_runs_weights(tmp_path):
    """The views and the labels of each step come from the step's generator and the loader's seeded order."""
    recipe = load_recipe(DIGITS, [*SMALL, "train.max_steps=6", "train.checkpoint_every=3", "train.batch_size=32"])
    full = train(recipe, tmp_path / "full")
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(full.output_dir / "checkpoints" / "step-00000003", resumed_dir / "checkpoints" / "step-00000003")
    resumed = train(recipe, resumed_dir, resume=True)
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step-00000003"
    expected, actual = load_file(full.output_dir / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    assert expected.keys() == actual.keys() and "classifier.weight" in expected
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
