"""word2vec model, torch kernel: the batched closed-form gradients against naive per-pair formulas, the curvature
damping against its definition, configuration checks and the Auto-class round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoTokenizer

import hfssl  # noqa: F401 - registers the Auto classes
import hfssl.models.word2vec.modeling_word2vec as modeling
from hfssl.models.word2vec import Word2VecConfig, Word2VecModel
from hfssl.models.word2vec.data import build_word_tokenizer
from tiny_word2vec import word2vec_edge_stream

VOCAB, WINDOW, TILE, SHARED = 30, 2, 4, 3


def _stream(seed: int = 0, length: int = 24) -> dict[str, torch.Tensor]:
    return word2vec_edge_stream(TILE, SHARED, VOCAB, WINDOW, length, seed)


def _model(architecture: str, cbow_mean: bool = True, damping: float | None = None, scale: float = 0.5) -> Word2VecModel:
    config = Word2VecConfig(vocab_size=VOCAB, vector_size=8, architecture=architecture, window=WINDOW, negative=5,
                            shared_negatives=SHARED, negative_block_size=TILE, cbow_mean=cbow_mean,
                            max_row_curvature=damping, kernel="torch")
    model = Word2VecModel(config).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.input_embeddings.weight.copy_(torch.randn(VOCAB, 8, generator=generator, dtype=torch.float64) * scale)
        model.output_embeddings.weight.copy_(torch.randn(VOCAB, 8, generator=generator, dtype=torch.float64) * scale)
    return model


def _contexts(inputs: dict[str, torch.Tensor], centre: int) -> list[int]:
    ids, windows, segments = inputs["input_ids"], inputs["window_sizes"], inputs["segment_ids"]
    reach = int(windows[centre])
    return [j for j in range(max(0, centre - reach), min(len(ids), centre + reach + 1))
            if j != centre and segments[j] == segments[centre]]


def _naive_loss(model: Word2VecModel, inputs: dict[str, torch.Tensor], x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The objective written pair by pair (skip-gram) or centre by centre (CBOW), as in the docstring."""
    ids, negatives = inputs["input_ids"], inputs["negative_ids"]
    config = model.config
    weight = config.negative / negatives.shape[1]
    loss = x.new_zeros(())
    for centre in range(len(ids)):
        contexts = _contexts(inputs, centre)
        shared = negatives[centre // TILE]
        if config.architecture == "skip-gram":
            for j in contexts:
                loss = loss - F.logsigmoid(x[ids[j]] @ v[ids[centre]])
                for k in shared:
                    if k != ids[centre]:  # word2vec.c skips a negative equal to the target
                        loss = loss - weight * F.logsigmoid(-x[ids[j]] @ v[k])
        elif contexts:
            hidden = sum(x[ids[j]] for j in contexts)
            if config.cbow_mean:
                hidden = hidden / len(contexts)
            loss = loss - F.logsigmoid(hidden @ v[ids[centre]])
            for k in shared:
                if k != ids[centre]:
                    loss = loss - weight * F.logsigmoid(-hidden @ v[k])
    return loss


def _dense_grads(model: Word2VecModel) -> tuple[torch.Tensor, torch.Tensor]:
    grads = model.input_embeddings.weight.grad, model.output_embeddings.weight.grad
    assert grads[0].is_sparse and grads[1].is_sparse
    return grads[0].to_dense(), grads[1].to_dense()


@pytest.fixture(params=[(2048, 1), (8, 2)], ids=["one-block", "blocks-on-two-threads"])
def blocking(request, monkeypatch):
    """Run both as one block and as several blocks on worker threads (halos between them); the
    number of workers is torch.get_num_interop_threads() (2 on a 2-core machine)."""
    tokens_per_block, threads = request.param
    monkeypatch.setattr(modeling, "TOKENS_PER_BLOCK", tokens_per_block)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    yield
    torch.set_num_threads(previous)


def test_skipgram_loss_and_sparse_gradients_equal_the_naive_pair_loop(blocking):
    model = _model("skip-gram")
    inputs = _stream()
    outputs = model(**inputs)
    outputs.loss.backward()
    input_grad, output_grad = _dense_grads(model)

    x = model.input_embeddings.weight.detach().clone().requires_grad_()
    v = model.output_embeddings.weight.detach().clone().requires_grad_()
    naive = _naive_loss(model, inputs, x, v)
    naive.backward()
    assert torch.allclose(outputs.loss, naive, atol=1e-10)
    assert torch.allclose(input_grad, x.grad, atol=1e-10)
    assert torch.allclose(output_grad, v.grad, atol=1e-10)
    pairs = sum(len(_contexts(inputs, i)) for i in range(len(inputs["input_ids"])))
    assert int(outputs.num_examples) == pairs
    assert torch.allclose(outputs.average_loss, naive.detach() / pairs)


@pytest.mark.parametrize("cbow_mean", [True, False], ids=["mean", "sum"])
def test_cbow_gradients_follow_word2vec_c_update_rule(blocking, cbow_mean):
    """Output vectors get the exact gradient; context vectors get word2vec.c's update: the full
    gradient of the hidden vector (mean mode) or that divided by the context count (sum mode)."""
    model = _model("cbow", cbow_mean=cbow_mean)
    inputs = _stream(seed=3)
    outputs = model(**inputs)
    outputs.loss.backward()
    input_grad, output_grad = _dense_grads(model)

    x = model.input_embeddings.weight.detach().clone()
    v = model.output_embeddings.weight.detach().clone().requires_grad_()
    naive = _naive_loss(model, inputs, x, v)
    naive.backward()
    assert torch.allclose(outputs.loss, naive, atol=1e-10)
    assert torch.allclose(output_grad, v.grad, atol=1e-10)

    ids, negatives = inputs["input_ids"], inputs["negative_ids"]
    expected = torch.zeros_like(x)
    for centre in range(len(ids)):
        contexts = _contexts(inputs, centre)
        if not contexts:
            continue
        hidden = sum(x[ids[j]] for j in contexts)
        hidden = (hidden / len(contexts) if cbow_mean else hidden).requires_grad_()
        loss = -F.logsigmoid(hidden @ v.detach()[ids[centre]])
        for k in negatives[centre // TILE]:
            if k != ids[centre]:
                loss = loss - 5 / SHARED * F.logsigmoid(-hidden @ v.detach()[k])
        (hidden_grad,) = torch.autograd.grad(loss, hidden)
        for j in contexts:
            expected[ids[j]] += hidden_grad if cbow_mean else hidden_grad / len(contexts)
    assert torch.allclose(input_grad, expected, atol=1e-10)
    if cbow_mean:  # word2vec.c's rule is count x the exact gradient of the mean
        exact = x.clone().requires_grad_()
        _naive_loss(model, inputs, exact, v.detach()).backward()
        assert not torch.allclose(input_grad, exact.grad)


def test_curvature_damping_scales_exactly_the_rows_above_the_limit(blocking):
    """With large vectors the summed curvature of some rows exceeds the limit: those rows' updates
    are scaled by limit / curvature, where curvature = sum over the row's loss terms of
    sigma'(s) (u . other vector)^2 along the row's own (per-occurrence) update direction u."""
    limit = 3.0
    inputs = _stream(seed=5)
    plain, damped = _model("skip-gram", scale=1.5), _model("skip-gram", damping=limit, scale=1.5)
    plain(**inputs).loss.backward()
    damped(**inputs).loss.backward()
    plain_in, plain_out = _dense_grads(plain)
    damped_in, damped_out = _dense_grads(damped)

    # Naive curvature per occurrence: each centre tile's rows, then summed per word.
    x, v = plain.input_embeddings.weight.detach(), plain.output_embeddings.weight.detach()
    ids, negatives = inputs["input_ids"], inputs["negative_ids"]
    weight = 5 / SHARED
    terms_in: dict[tuple[int, int], list[tuple[float, torch.Tensor]]] = {}  # (tile, position) -> (w, other)
    terms_out: dict[tuple[int, int], list[tuple[float, torch.Tensor]]] = {}  # (tile, column) -> (w, other)
    grads_in: dict[tuple[int, int], torch.Tensor] = {}
    grads_out: dict[tuple[int, int], torch.Tensor] = {}
    for centre in range(len(ids)):
        tile = centre // TILE
        for j in _contexts(inputs, centre):
            score = x[ids[j]] @ v[ids[centre]]
            for key, store, grads, other, own in (((tile, j), terms_in, grads_in, v[ids[centre]], x[ids[j]]),
                                                  ((tile, ("c", centre)), terms_out, grads_out, x[ids[j]], None)):
                store.setdefault(key, []).append((torch.sigmoid(score) * (1 - torch.sigmoid(score)), other))
                grads[key] = grads.get(key, 0) + (torch.sigmoid(score) - 1) * other
            for slot, k in enumerate(negatives[tile]):
                if k == ids[centre]:
                    continue
                score = x[ids[j]] @ v[k]
                second = weight * torch.sigmoid(score) * (1 - torch.sigmoid(score))
                terms_in[(tile, j)].append((second, v[k]))
                grads_in[(tile, j)] = grads_in[(tile, j)] + weight * torch.sigmoid(score) * v[k]
                key = (tile, ("n", slot))
                terms_out.setdefault(key, []).append((second, x[ids[j]]))
                grads_out[key] = grads_out.get(key, 0) + weight * torch.sigmoid(score) * x[ids[j]]

    def along(terms: list, grad: torch.Tensor) -> float:
        unit = grad / grad.norm()
        return float(sum(c * (unit @ other) ** 2 for c, other in terms))

    per_word_in = torch.zeros(VOCAB, dtype=torch.float64)
    for (tile, position), terms in terms_in.items():
        per_word_in[ids[position]] += along(terms, grads_in[(tile, position)])
    per_word_out = torch.zeros(VOCAB, dtype=torch.float64)
    for (tile, (kind, index)), terms in terms_out.items():
        word = ids[index] if kind == "c" else negatives[tile, index]
        per_word_out[word] += along(terms, grads_out[(tile, (kind, index))])
    assert (per_word_in > limit).any() and (per_word_in[per_word_in > 0] < limit).any()
    scale_in = limit / per_word_in.clamp_min(limit)
    scale_out = limit / per_word_out.clamp_min(limit)
    assert torch.allclose(damped_in, plain_in * scale_in.unsqueeze(1), atol=1e-9)
    assert torch.allclose(damped_out, plain_out * scale_out.unsqueeze(1), atol=1e-9)


def test_no_grad_forward_gives_the_same_loss_and_no_gradient_work():
    model = _model("skip-gram")
    inputs = _stream()
    with torch.no_grad():
        evaluated = model(**inputs).loss
    assert torch.allclose(evaluated, model(**inputs).loss)


def test_word2vec_c_initialisation():
    model = Word2VecModel(Word2VecConfig(vocab_size=50, vector_size=10))
    assert model.input_embeddings.weight.abs().max() <= 0.05
    assert model.input_embeddings.weight.std() > 0
    assert torch.count_nonzero(model.output_embeddings.weight) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"architecture": "glove"}, "architecture"), ({"window": 0}, "window"), ({"sample": 2.0}, "sample"),
     ({"negative_block_size": 2, "window": 5, "kernel": "torch"}, "negative_block_size"),
     ({"kernel": "cuda"}, "kernel must be one of numba, torch"), ({"workers": 0}, "workers"), ({"vocab_size": 3, "word_counts": [1, 2]}, "word_counts"),
     ({"max_row_curvature": 0.0}, "max_row_curvature")],
)
def test_config_rejects_bad_values_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Word2VecConfig(**kwargs)


def test_bad_forward_shapes_name_the_problem():
    model = _model("skip-gram")
    inputs = _stream()
    with pytest.raises(ValueError, match="negative_ids"):
        model(**{**inputs, "negative_ids": inputs["negative_ids"][:5]})
    with pytest.raises(ValueError, match="flat"):
        model(**{**inputs, "input_ids": inputs["input_ids"].view(4, -1)})


def test_auto_class_round_trip_with_tokenizer_and_counts(tmp_path):
    words = ["king", "queen", "man", "woman", "apple"]
    tokenizer = build_word_tokenizer(words, lowercase=True, token_pattern=r"[\w']+")
    counts = [0, 50, 40, 30, 20, 10]
    config = Word2VecConfig(vocab_size=6, vector_size=4, word_counts=counts, window=2, negative_block_size=4)
    model = Word2VecModel(config)
    with torch.no_grad():
        model.input_embeddings.weight.copy_(torch.tensor(
            [[0, 0, 0, 0], [1, 1, 0, 0], [1, 0.9, 0.1, 0], [0, 1, 1, 0], [0, 0.9, 1, 0.1], [0, 0, 0, 1.0]]))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert "word_counts" not in (tmp_path / "config.json").read_text()

    assert isinstance(AutoConfig.from_pretrained(tmp_path), Word2VecConfig)
    for auto in (AutoModel, AutoModelForPreTraining):
        loaded = auto.from_pretrained(tmp_path)
        assert type(loaded) is Word2VecModel
        assert loaded.word_counts.tolist() == counts
        assert torch.equal(loaded.input_embeddings.weight, model.input_embeddings.weight)
    reloaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded_tokenizer("King QUEEN zebra", add_special_tokens=False)["input_ids"] == [1, 2, 0]
    # The vocabulary comes from the tokenizer saved beside the model.
    assert loaded.most_similar("king", topn=1)[0][0] == "queen"
    assert loaded.similarity("man", "woman") > loaded.similarity("man", "king")
    assert loaded.get_embeddings(torch.tensor([[1, 2]])).shape == (1, 2, 4)
    with pytest.raises(KeyError, match="zebra"):
        loaded.similarity("zebra", "king")
