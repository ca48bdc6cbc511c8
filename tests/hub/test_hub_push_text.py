"""The issue-23 text methods publish like every other: a real (tiny) causal LM and a real (tiny) SimCSE run through
the whole pipeline (train, evaluation, export, card), each pushed to the local Hub server with its encoder in a repo
of its own. From the Hub, in one fresh process without hfssl, ``pipeline("text-generation")`` continues a prompt
exactly as the run's own decoder does, and ``SentenceTransformer(repo)`` encodes sentences exactly as the run's
SimCSE encoder does; the cards carry the protocols' metrics in their model-index and name the library that loads
the encoder repo."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM, AutoTokenizer

from hfssl.hub.push import push_run
from hfssl.pipeline import run
from hfssl.recipe import load_recipe, recipe_from_dict
from hub_fixtures import BLOCK_HFSSL, USER, run_python, subprocess_env

REPO = Path(__file__).resolve().parents[2]
CLM_OVERRIDES = ["train.progress_bar=false", "train.max_steps=4", "train.checkpoint_every=4", "train.trackers=[]",
                 "model.vocab_size=400", "model.max_seq_length=32", "train.batch_size=8", "data.max_train_samples=60",
                 "eval.protocols=[next-token]", "hub.license=mit"]
SIMCSE = {
    "method": "simcse",
    "model": {"encoder_config": {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
                                 "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64},
              "max_seq_length": 24},
    "data": {"source": "builtin:lee_background", "split_sentences": True, "eval_split": None,
             "tokenizer_name_or_path": "builtin:all-MiniLM-L6-v2", "max_train_samples": 40},
    "optim": {"name": "adamw", "lr": 0.001, "warmup_steps": 0},
    "train": {"batch_size": 16, "max_steps": 3, "checkpoint_every": 3, "progress_bar": False, "trackers": []},
    "eval": {"protocols": ["text-knn"], "text-knn": {"datasets": ["builtin:bbc_news"], "max_documents": 40,
                                                      "pooling": ["mean"], "k": [5], "max_length": 32}},
    "hub": {"license": "mit"},
}
PROMPT = "The government said"
SENTENCES = ["The striker scored twice.", "Shares fell after the results were published today."]


def _metrics(card: ModelCard) -> dict[str, float]:
    return {result.metric_type: result.metric_value for result in card.data.eval_results}


def test_the_text_methods_publish_their_cards_and_encoders_that_load_without_hfssl(hub_env, tmp_path):
    torch.set_num_threads(1)
    clm = run(load_recipe(REPO / "recipes" / "clm" / "lee.yaml", CLM_OVERRIDES), tmp_path / "clm").output_dir
    simcse_result = run(recipe_from_dict(SIMCSE), tmp_path / "simcse")
    simcse = simcse_result.output_dir
    for name, run_dir in (("clm", clm), ("simcse", simcse)):
        push_run(run_dir, f"{USER}/{name}-tiny", encoder_repo_id=f"{USER}/{name}-tiny-encoder", retries=2,
                 retry_wait=0.01)
    assert hub_env.unhandled == []

    # The causal LM: perplexity and next-token accuracy in the model-index, sample completions in the body; the
    # encoder repo is the decoder with its tokenizer, declared as transformers' text-generation model.
    card = ModelCard(hub_env.files(f"{USER}/clm-tiny")["README.md"].decode())
    assert card.data.library_name == "hfssl" and card.data.pipeline_tag == "text-generation"
    metrics = _metrics(card)
    assert {"perplexity", "accuracy"} <= metrics.keys(), metrics
    assert 1.0 < metrics["perplexity"] < 400 and 0.0 <= metrics["accuracy"] <= 1.0, metrics
    assert f"- **{PROMPT}**" in str(card)
    encoder_files = hub_env.files(f"{USER}/clm-tiny-encoder")
    assert encoder_files.keys() >= {"config.json", "model.safetensors", "tokenizer.json", "README.md"}
    encoder_card = ModelCard(encoder_files["README.md"].decode())
    assert encoder_card.data.library_name == "transformers" and encoder_card.data.pipeline_tag == "text-generation"

    # SimCSE: text-knn in the model-index; the encoder repo is a sentence-transformers folder and says so.
    card = ModelCard(hub_env.files(f"{USER}/simcse-tiny")["README.md"].decode())
    assert card.data.pipeline_tag == "sentence-similarity" and "accuracy" in _metrics(card), _metrics(card)
    encoder_files = hub_env.files(f"{USER}/simcse-tiny-encoder")
    assert encoder_files.keys() >= {"modules.json", "1_Pooling/config.json", "sentence_bert_config.json",
                                    "config.json", "model.safetensors", "tokenizer.json"}
    assert json.loads(encoder_files["1_Pooling/config.json"])["pooling_mode_mean_tokens"] is True
    encoder_card = ModelCard(encoder_files["README.md"].decode())
    assert encoder_card.data.library_name == "sentence-transformers"
    assert encoder_card.data.pipeline_tag == "sentence-similarity"

    # From the Hub, without hfssl: the generation pipeline (greedy) and sentence-transformers.
    run_python(BLOCK_HFSSL + textwrap.dedent(f"""
        import json, numpy, torch
        from sentence_transformers import SentenceTransformer
        from transformers import pipeline
        torch.set_num_threads(1)
        generate = pipeline("text-generation", model="{USER}/clm-tiny-encoder", device="cpu")
        text = generate({PROMPT!r}, max_new_tokens=8, do_sample=False, return_full_text=False)[0]["generated_text"]
        st = SentenceTransformer("{USER}/simcse-tiny-encoder", device="cpu")
        embeddings = st.encode({SENTENCES!r}, convert_to_numpy=True)
        numpy.save("{tmp_path}/st.npy", embeddings)
        json.dump({{"generated": text, "max_seq_length": st.max_seq_length}}, open("{tmp_path}/hub.json", "w"))
        assert not any(name.startswith("hfssl") for name in sys.modules)
    """), subprocess_env(hub_env.endpoint, tmp_path / "hf_home"), tmp_path)
    from_hub = json.loads((tmp_path / "hub.json").read_text())

    tokenizer = AutoTokenizer.from_pretrained(clm / "encoder")
    decoder = AutoModelForCausalLM.from_pretrained(clm / "encoder").eval()
    prompt = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        tokens = decoder.generate(**prompt, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert from_hub["generated"] == tokenizer.decode(tokens[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)

    model = simcse_result.model.eval()
    tokenizer = model.get_tokenizer(simcse)
    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=24, return_tensors="pt",
                      return_token_type_ids=False)
    with torch.no_grad():
        expected = model.get_embeddings(**batch).numpy()
    assert from_hub["max_seq_length"] == 24
    np.testing.assert_allclose(np.load(tmp_path / "st.npy"), expected, atol=1e-5)
