"""word2vec's numba kernel: the in-place per-pair SGD against a plain Python/numpy reference written
from word2vec.c's loop, its sigmoid tables against the exact functions, the model's training and
scoring modes, Hogwild threads, and the errors of a forward pass that cannot train."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfssl.models.word2vec import Word2VecConfig, Word2VecModel, kernels
from hfssl.models.word2vec.modeling_word2vec import train_stream
from tiny_word2vec import word2vec_edge_stream

VOCAB, DIM, WINDOW = 30, 8, 2


def _stream(block: int, shared: int, length: int = 24, seed: int = 0) -> dict[str, torch.Tensor]:
    return word2vec_edge_stream(block, shared, VOCAB, WINDOW, length, seed)


def _weights(seed: int = 1, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.5, (VOCAB, DIM)).astype(dtype), rng.normal(0, 0.5, (VOCAB, DIM)).astype(dtype))


def _table_functions(dtype: type = np.float64):  # noqa: ANN202
    """sigmoid and -log sigmoid as the kernel computes them (interpolated tables, saturated outside)."""
    sigmoid_table, softplus_table = kernels.lookup_tables(dtype)

    def lookup(table: np.ndarray, score: float) -> float:
        position = (score + kernels.MAX_SCORE) * (kernels.TABLE_SIZE / (2 * kernels.MAX_SCORE))
        index = int(position)
        return table[index] + (position - index) * (table[index + 1] - table[index])

    def sigmoid(score: float) -> float:
        return 1.0 if score >= kernels.MAX_SCORE else 0.0 if score <= -kernels.MAX_SCORE else lookup(sigmoid_table, score)

    def neg_log_sigmoid(score: float) -> float:
        if score >= kernels.MAX_SCORE:
            return 0.0
        return -score if score <= -kernels.MAX_SCORE else lookup(softplus_table, score)

    return sigmoid, neg_log_sigmoid


def _reference(architecture: str, syn0: np.ndarray, syn1: np.ndarray, inputs: dict[str, torch.Tensor], lr: float,
               negative: int, cbow_mean: bool = True) -> tuple[float, int]:
    """word2vec.c's loop, written out: each pair's targets in turn (the output row updated at once),
    then the input row (skip-gram) or every context row (CBOW). Updates syn0 / syn1 in place."""
    sigmoid, neg_log_sigmoid = _table_functions()
    ids, windows, segments = (inputs[key].tolist() for key in ("input_ids", "window_sizes", "segment_ids"))
    negatives = inputs["negative_ids"].numpy()
    block, weight = len(ids) // negatives.shape[0], negative / negatives.shape[1]
    loss, examples = 0.0, 0

    def train(x: np.ndarray, centre: int, row: int) -> np.ndarray:
        nonlocal loss
        gradient = np.zeros(DIM)
        targets = [(centre, 1.0, 1.0)] + [(int(n), 0.0, weight) for n in negatives[row] if n != centre]
        for target, label, term_weight in targets:
            score = float(x @ syn1[target])
            loss += term_weight * (neg_log_sigmoid(score) if label else neg_log_sigmoid(score) + score)
            step = lr * term_weight * (label - sigmoid(score))
            gradient += step * syn1[target]
            syn1[target] += step * x
        return gradient

    for i, reach in enumerate(windows):
        contexts = [j for j in range(max(0, i - reach), min(len(ids), i + reach + 1))
                    if j != i and segments[j] == segments[i]]
        if architecture == "skip-gram":
            for j in contexts:
                syn0[ids[j]] += train(syn0[ids[j]].copy(), ids[i], i // block)
                examples += 1
        elif contexts:
            hidden = sum(syn0[ids[j]] for j in contexts)
            if cbow_mean:
                hidden = hidden / len(contexts)
            gradient = train(hidden, ids[i], i // block)
            if not cbow_mean:
                gradient = gradient / len(contexts)
            for j in contexts:
                syn0[ids[j]] += gradient
            examples += 1
    return loss, examples


def _config(architecture: str, cbow_mean: bool = True, workers: int = 1, **kwargs: object) -> Word2VecConfig:
    return Word2VecConfig(vocab_size=VOCAB, vector_size=DIM, architecture=architecture, window=WINDOW, negative=5,
                          cbow_mean=cbow_mean, workers=workers, **kwargs)


def test_tables_are_within_1e_5_of_the_exact_sigmoid_and_softplus():
    sigmoid, neg_log_sigmoid = _table_functions()
    scores = np.linspace(-12, 12, 20001)
    exact_sigmoid = 1 / (1 + np.exp(-scores))
    exact_softplus = np.logaddexp(0, -scores)
    inside = np.abs(scores) < kernels.MAX_SCORE
    assert np.abs(np.array([sigmoid(s) for s in scores]) - exact_sigmoid)[inside].max() < 4e-6
    assert np.abs(np.array([neg_log_sigmoid(s) for s in scores]) - exact_softplus)[inside].max() < 1e-5
    # Saturated outside: off by at most sigmoid(-8) = 3.4e-4.
    assert np.abs(np.array([sigmoid(s) for s in scores]) - exact_sigmoid).max() < 3.4e-4


@pytest.mark.parametrize(("architecture", "cbow_mean"), [("skip-gram", True), ("cbow", True), ("cbow", False)])
@pytest.mark.parametrize(("block", "shared"), [(1, 5), (4, 3)], ids=["own-negatives", "shared-by-4"])
def test_one_thread_equals_the_pair_by_pair_reference(architecture, cbow_mean, block, shared):
    inputs = _stream(block, shared)
    config = _config(architecture, cbow_mean, shared_negatives=shared, negative_block_size=block)
    syn0, syn1 = _weights()
    expected0, expected1 = syn0.copy(), syn1.copy()
    expected_loss, expected_examples = _reference(architecture, expected0, expected1, inputs, 0.3, 5, cbow_mean)
    loss, examples = train_stream(config, syn0, syn1, *inputs.values(), lr=0.3, update=True)
    assert examples == expected_examples > 10
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(syn0, expected0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(syn1, expected1, rtol=0, atol=1e-12)
    assert not np.allclose(syn0, _weights()[0])  # it trained


@pytest.mark.parametrize("architecture", ["skip-gram", "cbow"])
def test_scoring_without_update_leaves_the_weights_and_gives_the_loss(architecture):
    inputs = _stream(1, 5)
    syn0, syn1 = _weights(dtype=np.float32)
    before = syn0.copy(), syn1.copy()
    loss, _ = train_stream(_config(architecture), syn0, syn1, *inputs.values(), lr=0.0, update=False)
    reference_loss, _ = _reference(architecture, before[0].astype(np.float64), before[1].astype(np.float64), inputs,
                                   0.0, 5)
    assert np.array_equal(syn0, before[0]) and np.array_equal(syn1, before[1])
    assert loss == pytest.approx(reference_loss, rel=1e-5)  # float32 rows


def _topic_stream(length: int = 40_000, topics: int = 25, words: int = 20, seed: int = 0) -> dict[str, torch.Tensor]:
    """Segments of 1,000 words, each drawn from one topic's 20 words: a stream with something to learn."""
    generator = torch.Generator().manual_seed(seed)
    segments = torch.arange(length) // 1000
    ids = (segments % topics) * words + torch.randint(0, words, (length,), generator=generator)
    return {"input_ids": ids, "window_sizes": torch.randint(1, 6, (length,), generator=generator),
            "segment_ids": segments,
            "negative_ids": torch.randint(0, topics * words, (length, 5), generator=generator)}


def _topic_separation(rows: np.ndarray, topics: int = 25, words: int = 20) -> float:
    """Mean cosine of two words of one topic minus that of two words of different topics."""
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = np.kron(np.eye(topics), np.ones((words, words))).astype(bool)
    np.fill_diagonal(same, False)
    different = ~np.kron(np.eye(topics), np.ones((words, words))).astype(bool)
    return float(cosine[same].mean() - cosine[different].mean())


@pytest.mark.parametrize("architecture", ["skip-gram", "cbow"])
def test_two_threads_train_as_well_as_one(architecture):
    """Hogwild threads: other floats than one thread (the pairs interleave differently), the same work
    and, after four passes, the same learned structure and about the same loss."""
    inputs = _topic_stream()
    rng = np.random.default_rng(0)
    start = ((rng.random((500, 16)) - 0.5) / 16).astype(np.float32), np.zeros((500, 16), np.float32)
    results = {}
    for workers in (1, 2):
        config = Word2VecConfig(vocab_size=500, vector_size=16, architecture=architecture, workers=workers)
        rows = start[0].copy(), start[1].copy()
        initial = train_stream(config, *rows, *inputs.values(), lr=0.0, update=False)
        trained = [train_stream(config, *rows, *inputs.values(), lr=0.025, update=True) for _ in range(4)]
        final = train_stream(config, *rows, *inputs.values(), lr=0.0, update=False)
        assert {examples for _, examples in trained} == {initial[1]}  # every pair or centre trained once a pass
        assert final[0] < 0.3 * initial[0]  # it learned
        results[workers] = final[0], _topic_separation(rows[0])
    (loss_1, separation_1), (loss_2, separation_2) = results[1], results[2]
    assert loss_2 == pytest.approx(loss_1, rel=0.3)
    assert separation_1 > 0.4 and separation_2 == pytest.approx(separation_1, abs=0.05)


def test_model_trains_in_place_only_with_the_engine_learning_rate():
    model = Word2VecModel(_config("skip-gram"))
    inputs = _stream(1, 5)
    before = model.input_embeddings.weight.detach().clone(), model.output_embeddings.weight.detach().clone()
    with pytest.raises(RuntimeError, match="learning rate"):
        model(**inputs)
    model.eval()
    scored = model(**inputs)
    assert torch.equal(model.output_embeddings.weight, before[1]) and not scored.loss.requires_grad
    model.train()
    model.on_train_step_start(1, {"lr": 0.5})
    outputs = model(**inputs)
    outputs.loss.backward()  # what the engine does: a graph node without gradients for the weights
    assert model.input_embeddings.weight.grad is None and model.output_embeddings.weight.grad is None
    assert not torch.equal(model.output_embeddings.weight, before[1])
    assert int(outputs.num_examples) == int(scored.num_examples) > 10
    model.eval()
    assert float(model(**inputs).loss) < float(scored.loss)  # the stream's loss went down


def test_bad_kernel_and_workers_name_the_key():
    with pytest.raises(ValueError, match="kernel must be one of numba, torch"):
        Word2VecConfig(kernel="fortran")
    with pytest.raises(ValueError, match="workers"):
        Word2VecConfig(workers=0)
    # The torch kernel's tiles need T >= window; the numba kernel takes any block, 1 by default.
    with pytest.raises(ValueError, match="negative_block_size"):
        Word2VecConfig(kernel="torch", window=5, negative_block_size=2)
    assert Word2VecConfig(window=5).negative_block_size == 1
    assert Word2VecConfig(negative=7).shared_negatives == 7
    assert Word2VecConfig(kernel="torch").shared_negatives == 16


def test_a_process_forked_after_training_can_train(tmp_path):
    """DataLoader workers fork the training process: the kernel's thread pool must survive that (numba's
    GNU OpenMP pool kills the child; hfssl uses the workqueue pool)."""
    script = tmp_path / "fork.py"
    script.write_text(
        "import os, numpy as np, torch\n"
        "from hfssl.models.word2vec import Word2VecConfig\n"
        "from hfssl.models.word2vec.modeling_word2vec import train_stream\n"
        "config = Word2VecConfig(vocab_size=50, vector_size=8, workers=2)\n"
        "rows = np.random.default_rng(0).random((50, 8)).astype(np.float32), np.zeros((50, 8), np.float32)\n"
        "n = 8192\n"
        "stream = [torch.randint(0, 50, (n,)), torch.randint(1, 6, (n,)), torch.arange(n) // 1000, torch.randint(0, 50, (n, 5))]\n"
        "train_stream(config, *rows, *stream, lr=0.025, update=True)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    train_stream(config, *rows, *stream, lr=0.025, update=True)\n"
        "    os._exit(0)\n"
        "assert os.waitpid(pid, 0)[1] == 0, 'the forked child died'\n"
        "print('ok')\n"
    )
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != "NUMBA_THREADING_LAYER"}
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0 and completed.stdout.strip() == "ok", completed.stderr[-2000:]
