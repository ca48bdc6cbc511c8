"""word2vec through the real engine, offline, on gensim's lee_background.cor: it learns (a related
pair ends up far more similar than an unrelated one), writes every artifact of a run, and resumes
from a checkpoint to exactly the uninterrupted run's weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

import hfssl  # noqa: F401 - registers the Auto classes
from hfssl.recipe import load_recipe
from hfssl.pipeline import run as train  # the whole run: train, export, evaluate, card

REPO = Path(__file__).resolve().parents[3]
FAST = ["train.progress_bar=false", "train.trackers=[]"]


def _recipe(*overrides: str):
    return load_recipe(REPO / "recipes" / "word2vec" / "lee.yaml", [*FAST, *overrides])


def test_training_on_lee_moves_a_related_pair_together(tmp_path):
    result = train(_recipe("eval.protocols=[word-similarity]"), tmp_path / "run")
    run = result.output_dir
    model = AutoModel.from_pretrained(run)
    related, unrelated = ("israeli", "palestinian"), ("israeli", "cricket")
    trained_gap = model.similarity(*related) - model.similarity(*unrelated)

    untrained = type(model)(model.config)
    untrained.set_vocabulary(AutoTokenizer.from_pretrained(run))
    untrained_gap = untrained.similarity(*related) - untrained.similarity(*unrelated)
    assert model.similarity(*related) > 0.5
    assert trained_gap > untrained_gap + 0.3, (trained_gap, untrained_gap)
    assert result.final_loss is not None and result.steps > 0

    # Every artifact of a run, and the gensim files hold the same vectors as the model.
    for name in ("config.json", "model.safetensors", "tokenizer.json", "word_counts.json", "vectors.txt",
                 "vectors.bin", "eval_results.json", "README.md", "images/embeddings_2d.png", "encoder/config.json"):
        assert (run / name).is_file(), name
    from gensim.models import KeyedVectors

    vectors = KeyedVectors.load_word2vec_format(str(run / "vectors.bin"), binary=True)
    assert torch.allclose(torch.from_numpy(vectors["israeli"].copy()), model.get_embeddings(
        torch.tensor(model.word_id("israeli"))))
    results = json.loads((run / "eval_results.json").read_text())["results"]
    assert [row["dataset"] for row in results] == ["wordsim353", "simlex999"]
    assert all(row["protocol"] == "word-similarity" and row["oov_pairs"] > 0 for row in results)


def _train_and_resume_from_step_5(tmp_path, overrides):  # noqa: ANN001, ANN202
    """The uninterrupted run, and a run resumed in another folder from its step-5 checkpoint alone."""
    full = train(_recipe(*overrides), tmp_path / "full").output_dir
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step-00000005", resumed_dir / "checkpoints" / "step-00000005")
    return full, resumed_dir, train(_recipe(*overrides), resumed_dir, resume=True)


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path):
    overrides = ("train.max_steps=10", "train.checkpoint_every=5", "eval.protocols=[]", "model.workers=1")
    full, resumed_dir, result = _train_and_resume_from_step_5(tmp_path, overrides)
    assert result.resumed_from is not None and result.resumed_from.name == "step-00000005"
    expected, actual = load_file(full / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_resume_with_two_kernel_threads_continues_from_the_checkpoint(tmp_path):
    """With two Hogwild threads the interleaving of their writes is not reproducible (as in word2vec.c
    and gensim), so a resumed run is not bit-identical; it starts from the checkpoint's exact weights
    and ends where the uninterrupted run ends, up to that interleaving."""
    overrides = ("train.max_steps=10", "train.checkpoint_every=5", "eval.protocols=[]", "model.workers=2")
    full, resumed_dir, result = _train_and_resume_from_step_5(tmp_path, overrides)
    assert result.resumed_from.name == "step-00000005" and result.steps == 10
    checkpoint = load_file(full / "checkpoints" / "step-00000005" / "model.safetensors")
    expected, actual = load_file(full / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    for name in ("input_embeddings.weight", "output_embeddings.weight"):
        trained = (expected[name] - checkpoint[name]).abs().max()
        assert trained > 0.01, name  # steps 6-10 changed the weights ...
        assert (actual[name] - expected[name]).abs().max() < 0.1 * trained, name  # ... and the resumed run did the same
