"""MLM through the real engine, offline, on gensim's lee_background.cor: every artifact of a run,
exact resume, NSP + whole-word masking, line-by-line rows, continued pre-training from
all-MiniLM-L6-v2 (an MLM head initialised and said so in the card), the exported fill-mask model in a
fresh process without hfssl, and ``hfssl eval`` on any BERT-like path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file

import hfssl  # noqa: F401 - registers the Auto classes
from hfssl.pipeline import run as train
from hfssl.recipe import load_recipe

REPO = Path(__file__).resolve().parents[3]
FAST = ["train.progress_bar=false", "train.trackers=[]"]


def _recipe(*overrides: str):
    return load_recipe(REPO / "recipes" / "mlm" / "lee.yaml", [*FAST, *overrides])


@pytest.fixture(scope="module")
def lee_run(tmp_path_factory):
    """The lee recipe as shipped (TensorBoard on: the card draws the training curve)."""
    output = tmp_path_factory.mktemp("mlm") / "run"
    recipe = load_recipe(REPO / "recipes" / "mlm" / "lee.yaml", ["train.progress_bar=false", "train.max_steps=30"])
    return train(recipe, output)


def test_a_run_writes_every_artifact_and_learns(lee_run):
    run = lee_run.output_dir
    for name in ("config.json", "model.safetensors", "tokenizer.json", "recipe.yaml", "eval_results.json", "README.md",
                 "encoder/config.json", "encoder/model.safetensors", "encoder/tokenizer.json",
                 "images/training_curve.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "encoder" / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    (row,) = json.loads((run / "eval_results.json").read_text())["results"]
    assert row["protocol"] == "mlm-accuracy" and row["mlm_head"] == "trained" and row["masked_tokens"] > 50
    assert row["max_seq_length"] == 64
    # After 30 steps the model predicts the held-out masked tokens far better than at its start (same rows, same masks).
    from transformers import AutoModel

    from hfssl.evaluation.text import TextModel, masked_token_accuracy
    from hfssl.models.mlm.data import held_out_texts

    trained = AutoModel.from_pretrained(run)
    untrained = type(trained)(trained.config).export_backbone().eval()
    texts, _ = held_out_texts(load_recipe(run / "recipe.yaml").data)
    start = masked_token_accuracy(TextModel(lee_run.model.get_tokenizer(run), untrained, True, "untrained"), texts, 64)
    assert start["masked_tokens"] == row["masked_tokens"]
    assert row["loss"] < start["loss"] - 0.5 and row["accuracy"] > start["accuracy"] + 0.01, (row, start)
    card = (run / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in card and "## Fill-mask examples" in card and "training_curve.png" in card
    assert "type: perplexity" in card


def test_the_exported_encoder_fills_masks_without_hfssl(lee_run):
    encoder = lee_run.output_dir / "encoder"
    script = textwrap.dedent(f"""
        import json, sys, torch
        from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, pipeline
        path = {str(encoder)!r}
        fill = pipeline("fill-mask", model=path)
        predictions = fill(f"the prime minister said {{fill.tokenizer.mask_token}} .", top_k=3)
        model = AutoModel.from_pretrained(path)
        masked_lm = AutoModelForMaskedLM.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        batch = tokenizer(["the government said", "a short text"], padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
            reference = masked_lm.bert(**batch).last_hidden_state
        print(json.dumps({{"tokens": [item["token_str"] for item in predictions], "encoder": type(model).__name__,
                           "same": torch.allclose(hidden, reference, atol=1e-5), "hfssl": "hfssl" in sys.modules}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                            env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {**report, "encoder": "BertModel", "same": True, "hfssl": False}
    assert len(report["tokens"]) == 3 and all(isinstance(token, str) and token for token in report["tokens"])


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path):
    overrides = ("train.max_steps=8", "train.checkpoint_every=4", "eval.protocols=[]")
    full = train(_recipe(*overrides), tmp_path / "full").output_dir
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step-00000004", resumed_dir / "checkpoints" / "step-00000004")
    result = train(_recipe(*overrides), resumed_dir, resume=True)
    assert result.resumed_from is not None and result.resumed_from.name == "step-00000004"
    expected, actual = load_file(full / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert (expected[name] == actual[name]).all(), name


def test_next_sentence_prediction_with_whole_word_masking_trains_and_exports_a_masked_lm(tmp_path):
    recipe = _recipe("model.next_sentence_prediction=true", "model.whole_word_masking=true", "train.max_steps=6",
                     "train.log_every=1")
    result = train(recipe, tmp_path / "nsp")
    assert result.model.bert_model.__class__.__name__ == "BertForPreTraining"
    config = json.loads((tmp_path / "nsp" / "encoder" / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]
    from transformers import AutoModelForMaskedLM

    released = AutoModelForMaskedLM.from_pretrained(tmp_path / "nsp" / "encoder")
    state = result.model.bert_model.state_dict()
    for name, value in released.state_dict().items():
        assert (value == state[name]).all(), name


def test_line_by_line_rows_train(tmp_path):
    result = train(_recipe("model.packing=line_by_line", "train.max_steps=3", "eval.protocols=[]"), tmp_path / "lines")
    assert result.steps == 3 and result.final_loss is not None


def test_continued_pretraining_from_minilm_initialises_and_reports_the_head(tmp_path):
    recipe = load_recipe(REPO / "recipes" / "mlm" / "minilm_continued.yaml", [
        *FAST, "data.source=builtin:lee_background", "model.max_seq_length=32", "train.batch_size=4",
        "train.max_steps=2", "optim.warmup_steps=1", "eval.protocols=[mlm-accuracy]",
        "eval.mlm-accuracy.max_documents=1"])
    result = train(recipe, tmp_path / "minilm")
    config = json.loads((tmp_path / "minilm" / "config.json").read_text())
    assert "cls.predictions.transform.dense.weight" in config["initialised_head_parameters"]
    assert config["vocab_size"] == 30522 and result.steps == 2
    card = (tmp_path / "minilm" / "README.md").read_text()
    assert "has no masked-language-modelling head" in card and "newly initialised" in card


def test_eval_cli_on_an_exported_encoder_and_on_minilm(lee_run, tmp_path):
    from hfssl.cli import main

    output = tmp_path / "encoder.json"
    assert main(["eval", str(lee_run.output_dir / "encoder"), "--protocol", "mlm-accuracy", "--output", str(output)]) == 0
    (row,) = json.loads(output.read_text())["results"]
    run_row = json.loads((lee_run.output_dir / "eval_results.json").read_text())["results"][0]
    # The run's recipe gives the data and the row length: the same held-out rows and masks as at the end of training.
    assert row["accuracy"] == pytest.approx(run_row["accuracy"]) and row["masked_tokens"] == run_row["masked_tokens"]

    output = tmp_path / "minilm.json"
    assert main(["eval", "builtin:all-MiniLM-L6-v2", "--protocol", "mlm-accuracy", "--dataset",
                 "builtin:lee_background", "--output", str(output)]) == 0
    (row,) = json.loads(output.read_text())["results"]
    assert row["mlm_head"] == "untrained" and 0 <= row["accuracy"] < 0.2


def test_text_linear_probe_runs_through_the_shared_linear_probe(lee_run):
    from hfssl.evaluation.runner import evaluate_path
    from hfssl.recipe import EvalConfig

    settings = {"text-linear": {"datasets": ["builtin:bbc_news"], "max_documents": 60, "max_length": 32,
                                "c_grid": [1.0]}}
    results = evaluate_path(str(lee_run.output_dir / "encoder"), None, EvalConfig(protocols=("text-linear",),
                                                                                  settings=settings))
    rows = results["results"]
    assert [row["pooling"] for row in rows] == ["mean", "cls"]
    assert all(row["dataset"] == "builtin:bbc_news" and row["num_test"] == 18 and row["num_classes"] == 5 for row in rows)
    assert all(0.0 <= row["top1"] <= 1.0 and row["C"] == 1.0 for row in rows)
    (baseline,) = results["baselines"]
    assert baseline["features"] == "tfidf" and baseline["top1"] > 0.5


def test_streaming_text_trains(tmp_path):
    result = train(_recipe("data.streaming=true", "train.max_steps=3", "eval.protocols=[]"), tmp_path / "stream")
    assert result.steps == 3 and (tmp_path / "stream" / "encoder" / "config.json").is_file()
