"""Causal language modelling through the real engine, offline, on gensim's lee_background.cor: every
artifact of a run (the card with its sample completions and curve), exact resume, the exported model in
``pipeline("text-generation")`` in a fresh process without hfssl, ``next-token`` on the exported folder,
and ``text-linear`` on the model's mean-pooled last hidden states."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hfssl  # noqa: F401 - registers the Auto classes
from hfssl.pipeline import run as train
from hfssl.recipe import load_recipe

REPO = Path(__file__).resolve().parents[3]
OVERRIDES = ("train.progress_bar=false", "train.max_steps=8", "train.checkpoint_every=4", "train.log_every=1",
             "model.vocab_size=400", "model.max_seq_length=32", "train.batch_size=8")


def _recipe(*overrides: str):
    return load_recipe(REPO / "recipes" / "clm" / "lee.yaml", [*OVERRIDES, *overrides])


@pytest.fixture(scope="module")
def lee_run(tmp_path_factory):
    """The lee recipe, shortened (TensorBoard on: the card draws the training curve)."""
    return train(_recipe(), tmp_path_factory.mktemp("clm") / "run")


def test_a_run_writes_every_artifact_and_its_card(lee_run):
    run = lee_run.output_dir
    for name in ("config.json", "model.safetensors", "tokenizer.json", "recipe.yaml", "eval_results.json", "README.md",
                 "encoder/config.json", "encoder/model.safetensors", "encoder/tokenizer.json",
                 "images/next_token_curve.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "encoder" / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    (row,) = json.loads((run / "eval_results.json").read_text())["results"]
    assert row["protocol"] == "next-token" and row["max_seq_length"] == 32 and row["tokens"] > 500
    assert 1.0 < row["perplexity"] < 400 and 0.0 <= row["accuracy"] <= 1.0  # a 400-token vocabulary: chance is 400
    card = (run / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "## Sample completions" in card
    assert "next_token_curve.png" in card and "type: perplexity" in card
    assert card.count("- **The government said**") == 1


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(lee_run, tmp_path):
    full = lee_run.output_dir
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step-00000004", resumed_dir / "checkpoints" / "step-00000004")
    result = train(_recipe("eval.protocols=[]", "train.trackers=[]"), resumed_dir, resume=True)
    assert result.resumed_from is not None and result.resumed_from.name == "step-00000004"
    expected, actual = load_file(full / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert (expected[name] == actual[name]).all(), name


def test_the_exported_model_generates_text_without_hfssl(lee_run):
    encoder = lee_run.output_dir / "encoder"
    script = textwrap.dedent(f"""
        import json, sys, torch
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, pipeline, set_seed
        path = {str(encoder)!r}
        generate = pipeline("text-generation", model=path)
        set_seed(0)
        text = generate("The government said", max_new_tokens=8, do_sample=True, top_k=20)[0]["generated_text"]
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        ids = tokenizer("The government said it would", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(ids).logits[0, -1]
            hidden = AutoModel.from_pretrained(path)(ids).last_hidden_state
        print(json.dumps({{"text": text, "logits": logits.tolist(), "hidden": hidden.shape[-1],
                          "hfssl": "hfssl" in sys.modules}}))
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                               env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert not report["hfssl"] and report["text"].startswith("The government said") and report["hidden"] == 128
    model = lee_run.model.eval()
    tokenizer = model.get_tokenizer(lee_run.output_dir)
    ids = tokenizer("The government said it would", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = model.get_causal_lm()(ids).logits[0, -1]
    torch.testing.assert_close(torch.tensor(report["logits"]), expected, rtol=1e-5, atol=1e-5)


def test_next_token_on_the_exported_folder_and_text_linear_on_mean_pooled_states(lee_run):
    from hfssl.evaluation.context import EvaluationContext
    from hfssl.recipe import EvalConfig
    from hfssl.registry import CAUSAL_LM, TEXT_FEATURES

    from hfssl.data.config import TextDataConfig
    from hfssl.evaluation.protocols.next_token import NextTokenSettings, run_next_token

    encoder = lee_run.output_dir / "encoder"
    data = TextDataConfig(source="builtin:lee_background", text_column="text")
    (row,) = run_next_token(EvaluationContext.for_path(str(encoder), data, EvalConfig(protocols=["next-token"])),
                            NextTokenSettings())
    (trained,) = json.loads((lee_run.output_dir / "eval_results.json").read_text())["results"]
    assert row["max_seq_length"] == 32  # read from the run's recipe beside encoder/
    assert row["tokens"] == trained["tokens"] and abs(row["perplexity"] - trained["perplexity"]) < 1e-3 * trained["perplexity"]
    context = EvaluationContext.for_path(str(encoder), None, EvalConfig(protocols=["text-linear"]))
    assert set(context.capabilities) == {TEXT_FEATURES, CAUSAL_LM}
    from hfssl.evaluation.text import load_text_model, text_classification_rows

    rows = text_classification_rows(load_text_model(lee_run.model, folder=lee_run.output_dir), ("builtin:bbc_news",),
                                    ("mean",), 32, 40, 0.3, (1.0,), 0.1, 16, baselines=False)
    (probe,) = rows
    assert probe["pooling"] == "mean" and probe["num_classes"] == 5 and 0.0 <= probe["top1"] <= 1.0
