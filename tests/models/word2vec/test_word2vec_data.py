"""word2vec data: subsampling and noise formulas, the vectorised input builder against a naive loop,
the vocabulary/tokenizer, and clear errors for unusable text."""

from __future__ import annotations

import math

import datasets
import numpy as np
import pytest
import torch

from hfssl.models.word2vec.data import (
    CHUNK_LENGTH,
    build_training_data,
    build_word_tokenizer,
    count_words,
    encode_chunks,
    keep_probabilities,
    make_word2vec_inputs,
    noise_alias,
    noise_distribution,
    select_vocabulary,
)
from hfssl.recipe import RecipeError, recipe_from_dict


def test_keep_probabilities_match_word2vec_c_formula():
    counts = np.array([0, 1_000_000, 100_000, 5_000, 10, 1])
    total = counts.sum()
    sample = 1e-3
    keep = keep_probabilities(counts, sample)
    for word, count in enumerate(counts):
        if count == 0:
            assert keep[word] == 0  # special tokens are never trained
            continue
        threshold = sample * total
        expected = min(1.0, (math.sqrt(count / threshold) + 1) * threshold / count)
        assert keep[word].item() == pytest.approx(expected, rel=1e-12)
    assert keep[1] < keep[2] < 1.0 and keep[4] == 1.0
    assert torch.equal(keep_probabilities(counts, 0.0), torch.tensor([0.0, 1, 1, 1, 1, 1], dtype=torch.float64))


def test_noise_distribution_is_the_unigram_to_the_three_quarters():
    counts = np.array([0, 81, 16, 1, 0, 625])
    noise = noise_distribution(counts, 0.75)
    powered = np.array([0, 27, 8, 1, 0, 125], dtype=np.float64)
    assert torch.allclose(noise, torch.from_numpy(powered / powered.sum()), atol=1e-15)
    # The alias table gives exactly that distribution: column c yields c with probability[c], else alias[c].
    probability, alias = noise_alias(counts, 0.75)
    implied = torch.zeros(6, dtype=torch.float64).index_add_(0, torch.arange(6), probability)
    implied.index_add_(0, alias, 1.0 - probability)
    assert torch.allclose(implied / 6, noise, atol=1e-15)
    with pytest.raises(ValueError, match="no word"):
        noise_distribution(np.zeros(3))


def _naive_pairs(input_ids: torch.Tensor, generator: torch.Generator, keep: torch.Tensor, window: int):
    """word2vec.c's loop over words: subsample, draw each kept centre's window, pair within segments."""
    flat = input_ids.reshape(-1).tolist()
    draws = torch.rand(len(flat), generator=generator)
    stream, segment = [], 0
    for position, token in enumerate(flat):
        if position % input_ids.shape[1] == 0 or token < 0:
            segment += 1
        if token >= 0 and draws[position].item() < keep[token].item():
            stream.append((token, segment))
    windows = torch.randint(1, window + 1, (len(stream),), generator=generator).tolist()
    pairs = []
    for i, (centre, centre_segment) in enumerate(stream):
        for j in range(max(0, i - windows[i]), min(len(stream), i + windows[i] + 1)):
            if j != i and stream[j][1] == centre_segment:
                pairs.append((centre, stream[j][0]))
    return sorted(pairs), len(stream)


def _pairs_of_inputs(inputs: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
    ids, windows, segments = inputs["input_ids"].tolist(), inputs["window_sizes"].tolist(), inputs["segment_ids"].tolist()
    pairs = []
    for i in range(len(ids)):
        for j in range(max(0, i - windows[i]), min(len(ids), i + windows[i] + 1)):
            if j != i and segments[j] == segments[i] and segments[i] >= 0:
                pairs.append((ids[i], ids[j]))
    return sorted(pairs)


def test_vectorised_inputs_give_the_pairs_of_a_naive_word_loop():
    """Same generator seed -> the same subsampling, windows and therefore the same pairs."""
    rng = np.random.default_rng(0)
    rows = rng.integers(1, 40, size=(3, 64))
    rows[0, 10] = rows[1, 30] = -1  # document separators
    rows[2, 50:] = -1  # padding at the end of the last row
    input_ids = torch.from_numpy(rows)
    counts = np.concatenate([[0], rng.integers(1, 500, size=39)])
    counts[3] = 40_000  # a frequent word that subsampling thins out
    keep = keep_probabilities(counts, 1e-2).float()
    noise = noise_alias(counts)
    inputs = make_word2vec_inputs(input_ids, torch.Generator().manual_seed(7), keep, noise, window=3,
                                  block_size=8, shared_negatives=5)
    expected, kept = _naive_pairs(input_ids, torch.Generator().manual_seed(7), keep, window=3)
    assert _pairs_of_inputs(inputs) == expected
    assert len(expected) > 200
    n = inputs["input_ids"].numel()
    assert n % 8 == 0 and n - kept < 8
    assert inputs["negative_ids"].shape == (n // 8, 5)
    assert (inputs["window_sizes"][kept:] == 0).all() and (inputs["segment_ids"][kept:] == -1).all()
    assert (rows[rows >= 0] == 3).sum() > (inputs["input_ids"][:kept] == 3).sum()  # subsampled


def test_negatives_and_subsampling_follow_their_distributions():
    counts = np.array([0, 5000, 2000, 500, 100, 10])
    keep = keep_probabilities(counts, 0.05).float()
    noise = noise_alias(counts)
    input_ids = torch.tensor([[1, 2, 3, 4, 5, 1, 2, 3] * 2048])
    inputs = make_word2vec_inputs(input_ids, torch.Generator().manual_seed(0), keep, noise, window=2, block_size=8,
                                  shared_negatives=4096)
    frequencies = torch.bincount(inputs["negative_ids"].flatten(), minlength=6).double()
    frequencies /= frequencies.sum()
    assert torch.allclose(frequencies, noise_distribution(counts), atol=0.005)
    assert frequencies[0] == 0
    kept = inputs["input_ids"][inputs["segment_ids"] >= 0]
    for word in range(1, 6):
        rate = (kept == word).sum().item() / (input_ids == word).sum().item()
        assert rate == pytest.approx(keep[word].item(), abs=0.03)


def test_counting_and_tokenizer_split_text_the_same_way():
    texts = ["The cat sat. The cat's hat!", "", "the DOG sat on the mat", "naïve café"]
    counts, rows = count_words(texts, lowercase=True, token_pattern=r"[\w']+")
    assert rows == 4
    assert counts["the"] == 4 and counts["cat"] == 1 and counts["cat's"] == 1 and counts["naïve"] == 1
    vocabulary = select_vocabulary(counts, min_count=2, max_vocab_size=None)
    assert vocabulary == [("the", 4), ("sat", 2)]
    assert select_vocabulary(counts, 1, 3) == [("the", 4), ("sat", 2), ("cat", 1)]  # ties: first appearance
    tokenizer = build_word_tokenizer([word for word, _ in vocabulary], True, r"[\w']+")
    assert tokenizer.convert_ids_to_tokens([0, 1, 2]) == ["[UNK]", "the", "sat"]
    trained = np.array([False, True, True])
    chunks = encode_chunks(texts, tokenizer, trained)
    assert len(chunks) == 1 and chunks[0].shape == (CHUNK_LENGTH,)
    assert chunks[0][:8].tolist() == [1, 2, 1, -1, 1, 2, 1, -1]  # the sat the | the sat the | padding
    cased, _ = count_words(["The the THE"], lowercase=False, token_pattern=r"[A-Z]+")
    assert cased == {"T": 1, "THE": 1}  # case kept: "the" has no capital


def _recipe(source: str, **data) -> object:
    return recipe_from_dict({
        "method": "word2vec",
        "model": {"vector_size": 8, "min_count": 2, "window": 2, "negative_block_size": 8,
                  "negative": 3},  # more negatives than the tests' 4-word vocabularies is refused
        "data": {"source": source, **data},
        "optim": {"name": "sgd", "lr": 0.025, "momentum": 0.0, "weight_decay": 0.0, "schedule": "linear"},
        "train": {"batch_size": 2, "epochs": 1},
    })


def _save(tmp_path, rows: dict) -> str:
    path = tmp_path / "text_data"
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    return str(path)


def test_build_training_data_end_to_end_on_a_local_dataset(tmp_path):
    from hfssl.registry import get_method

    texts = ["the quick brown fox jumps over the lazy dog"] * 30 + ["rare words appear once"]
    recipe = _recipe(_save(tmp_path, {"body": texts}), text_column="body")
    data = get_method("word2vec").load_training_data(recipe, accelerator=None)  # build_data + build_inputs
    vocab_size = data.config_updates["vocab_size"]
    counts = np.array(data.config_updates["word_counts"])
    assert vocab_size == len(counts) == 9  # [UNK] + 8 distinct words seen >= 2 times
    assert counts[0] == 0 and counts[1] == 60  # "the"
    batch = data.collate_fn([data.train_dataset[0]])
    assert batch["input_ids"].shape == (1, CHUNK_LENGTH)
    inputs = data.make_inputs(batch, torch.Generator().manual_seed(0))
    assert set(inputs) == {"input_ids", "window_sizes", "segment_ids", "negative_ids"}
    data.save_artifacts(tmp_path / "run")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run")
    assert tokenizer("The LAZY dog", add_special_tokens=False)["input_ids"] == [1, tokenizer.convert_tokens_to_ids("lazy"),
                                                                                tokenizer.convert_tokens_to_ids("dog")]
    assert (tmp_path / "run" / "word_counts.json").is_file()


def test_streaming_source_builds_the_same_vocabulary(tmp_path):
    texts = ["alpha beta gamma alpha beta", "gamma delta alpha"] * 5
    source = _save(tmp_path, {"text": texts})
    eager = build_training_data(_recipe(source), accelerator=None)
    streamed = build_training_data(_recipe(source, streaming=True), accelerator=None)
    assert eager.config_updates == streamed.config_updates
    first = next(iter(streamed.train_dataset))
    assert np.array_equal(np.asarray(first["input_ids"]), np.asarray(eager.train_dataset[0]["input_ids"]))


@pytest.mark.parametrize(
    ("rows", "data", "message"),
    [
        ({"text": ["", "   ", "!!!"]}, {}, "holds no words"),
        ({"text": ["every word differs here", "nothing repeats at all"]}, {}, "min_count=2"),
        ({"body": ["some text", "more text"]}, {}, "no text column 'text'.*'body'"),
        ({"text": [1, 2, 3]}, {}, "not strings"),
    ],
    ids=["empty-text", "all-under-min-count", "missing-column", "non-string-column"],
)
def test_unusable_text_gets_a_clear_error(tmp_path, rows, data, message):
    with pytest.raises(ValueError, match=message):
        build_training_data(_recipe(_save(tmp_path, rows), **data), accelerator=None)


def test_non_string_values_in_a_stream_name_the_row(tmp_path):
    from hfssl.models.word2vec.data import iter_texts

    dataset = datasets.Dataset.from_dict({"text": ["fine", "also fine"]}).to_iterable_dataset()
    dataset = dataset.map(lambda row, index: {"text": 7 if index == 1 else row["text"]}, with_indices=True)
    with pytest.raises(ValueError, match="row 1 of column 'text'"):
        list(iter_texts(dataset, "text", "demo"))


def test_word2vec_needs_plain_sgd(tmp_path):
    """The method's own recipe check (MethodSpec.check_recipe) runs when the recipe loads, before any data."""
    raw = {"method": "word2vec", "data": {"source": _save(tmp_path, {"text": ["a b a b"]})},
           "optim": {"name": "sgd", "momentum": 0.9, "weight_decay": 0.0}}
    with pytest.raises(RecipeError, match="momentum"):
        recipe_from_dict(raw)


# ---- the numba kernel's compiled input builder ----------------------------------------------------------------

_MASK = (1 << 64) - 1


def _splitmix(value: int) -> int:
    """SplitMix64's finaliser in plain Python integers (the reference for the compiled generator)."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def _reference_stream(rows: np.ndarray, keep_threshold: np.ndarray, table: np.ndarray, window: int, block: int,
                      shared: int, seed: int) -> tuple[list, list, list, list]:
    """build_stream's documented rules, word by word in Python: counter-based draws keyed per stream."""
    golden = 0x9E3779B97F4A7C15

    def bits(stream: int, counter: int) -> int:
        key = _splitmix(seed ^ ((stream * golden) & _MASK))
        return _splitmix((key + (counter + 1) * golden) & _MASK)

    ids, windows, segments, segment = [], [], [], 0
    length = rows.shape[1]
    for position, token in enumerate(rows.reshape(-1).tolist()):
        if position % length == 0 or token < 0:
            segment += 1
        if token >= 0 and bits(1, position) >> 32 < int(keep_threshold[token]):
            windows.append(1 + ((bits(2, len(ids)) >> 32) * window >> 32))
            ids.append(token)
            segments.append(segment)
    padded = max(block, math.ceil(len(ids) / block) * block)
    extra = padded - len(ids)
    negatives = []
    for index in range(padded // block * shared):
        draw = bits(3, index)
        column = (draw >> 32) * len(table) >> 32
        entry = int(table[column])
        negatives.append(column if draw & 0xFFFFFFFF < entry >> 32 else entry & 0xFFFFFFFF)
    return ids + [0] * extra, windows + [0] * extra, segments + [-1] * extra, negatives


def test_compiled_inputs_follow_their_documented_rules_draw_for_draw():
    """build_stream equals a word-by-word Python loop of its documented draws, and gives the pairs of
    word2vec.c's loop over the kept words (the naive pair enumeration of the torch builder's test)."""
    from hfssl.models.word2vec.kernels import build_stream, draw_tables

    rng = np.random.default_rng(1)
    rows = rng.integers(1, 40, size=(3, 64))
    rows[0, 10] = rows[1, 30] = -1
    rows[2, 50:] = -1
    counts = np.concatenate([[0], rng.integers(1, 500, size=39)])
    counts[3] = 40_000
    probability, alias = noise_alias(counts)
    keep_threshold, table = draw_tables(keep_probabilities(counts, 1e-2).numpy(), probability.numpy(), alias.numpy())
    for seed in (0, 123456789, (1 << 62) - 1):
        ids, windows, segments, negatives = build_stream(rows, keep_threshold, table, 3, 8, 5, seed)
        expected = _reference_stream(rows, keep_threshold, table, 3, 8, 5, seed)
        assert ids.tolist() == expected[0] and windows.tolist() == expected[1]
        assert segments.tolist() == expected[2] and negatives.reshape(-1).tolist() == expected[3]
        assert negatives.shape == (ids.shape[0] // 8, 5) and ids.shape[0] % 8 == 0
        assert set(windows[segments >= 0].tolist()) <= {1, 2, 3} and 0 < (segments >= 0).sum() < (rows >= 0).sum()
    assert not np.array_equal(build_stream(rows, keep_threshold, table, 3, 8, 5, 1)[0],
                              build_stream(rows, keep_threshold, table, 3, 8, 5, 2)[0])


def test_compiled_negatives_windows_and_subsampling_follow_their_distributions():
    from hfssl.models.word2vec.kernels import build_stream, draw_tables

    counts = np.array([0, 5000, 2000, 500, 100, 10])
    keep = keep_probabilities(counts, 0.05)
    probability, alias = noise_alias(counts)
    rows = np.array([[1, 2, 3, 4, 5, 1, 2, 3] * 2048])
    ids, windows, segments, negatives = build_stream(rows, *draw_tables(keep.numpy(), probability.numpy(),
                                                                        alias.numpy()), 4, 8, 4096, 0)
    frequencies = np.bincount(negatives.reshape(-1), minlength=6) / negatives.size
    assert np.allclose(frequencies, noise_distribution(counts).numpy(), atol=0.005) and frequencies[0] == 0
    kept = ids[segments >= 0]
    for word in range(1, 6):
        assert (kept == word).sum() / (rows == word).sum() == pytest.approx(keep[word].item(), abs=0.03)
    assert np.allclose(np.bincount(windows[segments >= 0], minlength=5)[1:] / kept.size, 0.25, atol=0.03)


def test_input_builder_uses_the_compiled_builder_with_the_numba_kernel_only():
    from hfssl.models.word2vec.data import InputBuilder
    from hfssl.models.word2vec.configuration_word2vec import Word2VecConfig

    counts = np.array([0, 5000, 2000, 500, 100, 10])
    batch = {"input_ids": torch.tensor([[1, 2, 3, 4, 5, -1, 2, 3] * 128])}
    outputs = {}
    for kernel in ("numba", "torch"):
        config = Word2VecConfig(vocab_size=6, window=2, kernel=kernel, word_counts=counts.tolist())
        builder = InputBuilder(counts, config)
        first = builder(batch, torch.Generator().manual_seed(3))
        again = builder(batch, torch.Generator().manual_seed(3))
        assert all(torch.equal(first[name], again[name]) for name in first)  # a function of the step's seed
        assert first["negative_ids"].shape[0] * config.negative_block_size == first["input_ids"].shape[0]
        outputs[kernel] = first
    torch_inputs = make_word2vec_inputs(batch["input_ids"], torch.Generator().manual_seed(3),
                                        keep_probabilities(counts, 1e-3).float(), noise_alias(counts), 2, 32, 16)
    assert all(torch.equal(outputs["torch"][name], torch_inputs[name]) for name in torch_inputs)
    assert not torch.equal(outputs["numba"]["window_sizes"][:100], torch_inputs["window_sizes"][:100])


def test_dataset_word_counts_equal_the_plain_count_and_are_cached(tmp_path, monkeypatch):
    """count_dataset_words merges per-batch counts into exactly count_words' result (counts and
    first-appearance order, which breaks the vocabulary's ties); a second call reads the datasets cache."""
    import hfssl.data.text as text_module

    rng = np.random.default_rng(0)
    words = [f"w{index}" for index in range(300)] + ["The", "the", "don't", "naïve"]
    texts = [" ".join(rng.choice(words, size=rng.integers(0, 40))) + "!" for _ in range(250)] + [None, ""]
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "corpus"))
    dataset = datasets.load_from_disk(str(tmp_path / "corpus"))
    expected, rows = count_words([text or "" for text in texts], True, r"[\w']+")
    counted, counted_rows = text_module.count_dataset_words(dataset, "text", "demo", True, r"[\w']+", batch_size=32)
    assert list(counted.items()) == list(expected.items()) and counted_rows == rows == 252
    assert select_vocabulary(counted, 2, 50) == select_vocabulary(expected, 2, 50)

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("counted again instead of reading the cache")

    monkeypatch.setattr(text_module, "count_words", fail)
    again, _ = text_module.count_dataset_words(datasets.load_from_disk(str(tmp_path / "corpus")), "text", "demo", True,
                                               r"[\w']+", batch_size=32)
    assert list(again.items()) == list(expected.items())
    with pytest.raises(AssertionError, match="counted again"):  # other settings are other cache entries
        text_module.count_dataset_words(dataset, "text", "demo", False, r"[\w']+", batch_size=32)
