"""SimCSE through the real engine, offline: a tiny BERT over all-MiniLM-L6-v2's vocabulary on gensim's
lee_background sentences, with the gradient cache; every artifact of a run (export, evaluation, card, picture),
the export in a fresh process without hfssl (sentence-transformers and AutoModel give hfssl's embeddings), and
exact resume."""

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
from hfssl.pipeline import run as run_pipeline
from hfssl.recipe import load_recipe
from hfssl.training.trainer import train

TINY_ENCODER = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}
RECIPE = {
    "method": "simcse",
    "model": {"encoder_config": TINY_ENCODER, "max_seq_length": 24, "gradient_cache_chunk_size": 6},
    "data": {"source": "builtin:lee_background", "split_sentences": True, "eval_split": None,
             "tokenizer_name_or_path": "builtin:all-MiniLM-L6-v2", "max_train_samples": 40},
    "optim": {"name": "adamw", "lr": 0.001, "warmup_steps": 0},
    "train": {"batch_size": 16, "max_steps": 4, "checkpoint_every": 2, "progress_bar": False, "trackers": [],
              "log_every": 1},
    "eval": {"protocols": ["text-knn", "alignment-uniformity"],
             "text-knn": {"datasets": ["builtin:bbc_news"], "max_documents": 60, "pooling": ["mean"], "k": [5],
                          "max_length": 32},
             "alignment-uniformity": {"max_pairs": 30}},
}


def _recipe(tmp: Path, *overrides: str):
    import yaml

    path = tmp / "simcse.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return load_recipe(path, list(overrides))


@pytest.fixture(scope="module")
def simcse_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("simcse")
    return run_pipeline(_recipe(tmp), tmp / "run")


def test_a_run_writes_every_artifact(simcse_run):
    run = simcse_run.output_dir
    for name in ("config.json", "model.safetensors", "tokenizer.json", "recipe.yaml", "eval_results.json", "README.md",
                 "encoder/config.json", "encoder/model.safetensors", "encoder/tokenizer.json", "encoder/modules.json",
                 "encoder/1_Pooling/config.json", "encoder/sentence_bert_config.json",
                 "images/sentence_similarity.png"):
        assert (run / name).is_file(), name
    results = json.loads((run / "eval_results.json").read_text())
    rows = {(row["protocol"], row.get("features")): row for row in results["results"] + results.get("baselines", [])}
    knn = rows[("text-knn", "model")]
    assert knn["k"] == 5 and knn["dataset"] == "builtin:bbc_news" and 0.0 <= knn["top1"] <= 1.0
    assert ("text-knn", "tfidf") in rows
    geometry = rows[("alignment-uniformity", "model")]
    assert 0.0 <= geometry["alignment"] <= 4.0 and -4.0 <= geometry["uniformity"] <= 0.0 and 2 <= geometry["pairs"] <= 30
    card = (run / "README.md").read_text()
    assert "SentenceTransformer(" in card and "pipeline_tag: sentence-similarity" in card
    assert "sentence_similarity.png" in card and "Alignment" in card


def test_the_export_loads_in_sentence_transformers_and_transformers_without_hfssl(simcse_run, tmp_path):
    encoder = simcse_run.output_dir / "encoder"
    sentences = ["The striker scored twice.", "Shares fell after the results were published today.", "Hello"]
    model = simcse_run.model.eval()
    tokenizer = model.get_tokenizer(simcse_run.output_dir)
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=24, return_tensors="pt",
                      return_token_type_ids=False)
    with torch.no_grad():
        expected = model.get_embeddings(**batch)
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import json, sys, torch
        from sentence_transformers import SentenceTransformer
        from transformers import AutoModel, AutoTokenizer
        path, sentences = {str(encoder)!r}, {sentences!r}
        expected = torch.load({str(tmp_path / 'expected.pt')!r})
        st = SentenceTransformer(path, device="cpu")
        from_st = torch.as_tensor(st.encode(sentences, convert_to_tensor=True))
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path).eval()
        batch = tokenizer(sentences, padding=True, truncation=True, max_length=24, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        from_hf = (hidden * mask).sum(1) / mask.sum(1)
        print(json.dumps({{"st": (from_st - expected).abs().max().item(), "hf": (from_hf - expected).abs().max().item(),
                           "max_seq_length": st.max_seq_length, "hfssl": "hfssl" in sys.modules}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["hfssl"] is False and report["max_seq_length"] == 24
    assert report["st"] < 1e-5 and report["hf"] < 1e-5, report


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(simcse_run, tmp_path):
    full = simcse_run.output_dir
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step-00000002", resumed_dir / "checkpoints" / "step-00000002")
    result = train(_recipe(tmp_path, "eval.protocols=[]"), resumed_dir, resume=True)
    assert result.resumed_from is not None and result.resumed_from.name == "step-00000002"
    expected, actual = load_file(full / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
