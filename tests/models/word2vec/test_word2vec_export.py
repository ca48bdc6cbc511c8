"""word2vec text and binary formats: gensim reads what hfssl writes, hfssl reads what gensim writes,
and an imported file becomes a working Word2VecModel."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

from hfssl.models.word2vec import Word2VecConfig, Word2VecModel
from hfssl.models.word2vec.data import build_word_tokenizer
from hfssl.models.word2vec.export import (
    export_word2vec_format,
    load_word2vec_format,
    model_from_word2vec_format,
    save_word2vec_format,
)


@pytest.fixture
def model() -> Word2VecModel:
    words = ["über", "cat", "dog", "mouse", "naïve"]
    counts = [0, 3, 50, 40, 0, 7]  # [UNK] and "mouse" are not trained and not exported
    config = Word2VecConfig(vocab_size=6, vector_size=5, word_counts=counts, window=2, negative_block_size=4)
    model = Word2VecModel(config)
    with torch.no_grad():
        model.input_embeddings.weight.copy_(torch.randn(6, 5, generator=torch.Generator().manual_seed(0)) * 1e3)
    model.set_vocabulary(build_word_tokenizer(words, True, r"[\w']+"))
    return model


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_gensim_reads_our_files_and_we_read_gensims(tmp_path, model, binary):
    path = export_word2vec_format(model, tmp_path / "vectors", binary=binary)
    vectors = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    # Trained words only, most frequent first.
    assert vectors.index_to_key == ["cat", "dog", "naïve", "über"]
    weight = model.input_embeddings.weight.detach()
    for word, row in (("cat", 2), ("dog", 3), ("naïve", 5), ("über", 1)):
        assert np.array_equal(vectors[word], weight[row].numpy()), word

    gensim_path = tmp_path / "from_gensim"
    vectors.save_word2vec_format(str(gensim_path), binary=binary)
    words, loaded = load_word2vec_format(gensim_path)  # format detected from the file
    assert words == vectors.index_to_key
    assert np.allclose(loaded, vectors.vectors, rtol=1e-6) if not binary else np.array_equal(loaded, vectors.vectors)


def test_import_builds_a_model_with_frequency_ordered_counts(tmp_path, model):
    path = export_word2vec_format(model, tmp_path / "vectors.bin", binary=True)
    imported, tokenizer = model_from_word2vec_format(path)
    assert imported.config.vector_size == 5
    assert tokenizer.convert_ids_to_tokens([1, 2, 3, 4]) == ["cat", "dog", "naïve", "über"]
    assert imported.word_counts.tolist() == [0, 4, 3, 2, 1]
    assert torch.equal(imported.get_embeddings(torch.tensor([1])), model.get_embeddings(torch.tensor([2])))
    assert imported.most_similar("cat", topn=3)[0][0] in {"dog", "naïve", "über"}
    # A written-then-read model saves and reloads like any other.
    imported.save_pretrained(tmp_path / "imported")
    assert Word2VecModel.from_pretrained(tmp_path / "imported").word_counts.tolist() == [0, 4, 3, 2, 1]


def test_words_that_the_format_cannot_hold_are_refused(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        save_word2vec_format(tmp_path / "bad.txt", ["new york"], np.zeros((1, 3)))
    for words, index in ((["a", "", "b"], 1), (["a", "b", "c\u00a0d"], 2), (["a", "b\tc", ""], 1)):
        with pytest.raises(ValueError, match=re.escape(f"word {index} ({words[index]!r})")):  # named among good words
            save_word2vec_format(tmp_path / "bad.txt", words, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="shape"):
        save_word2vec_format(tmp_path / "bad.txt", ["a", "b"], np.zeros((3, 3)))
    (tmp_path / "no_header.txt").write_text("a 1 2 3\n")
    with pytest.raises(ValueError, match="header"):
        load_word2vec_format(tmp_path / "no_header.txt")


def test_text_file_holds_each_value_to_nine_significant_digits(tmp_path):
    """The text writer's one format per line gives the digits of formatting value by value (``.9g``),
    also for the values where float32 -> text is delicate."""
    values = np.array([[0.1, -0.0, 1e-45, -3.4028235e38], [1 / 3, 123456789.0, -2.5e-8, 7.0]], dtype=np.float32)
    path = save_word2vec_format(tmp_path / "v.txt", ["a", "b"], values)
    expected = "2 4\n" + "".join(word + " " + " ".join(f"{value:.9g}" for value in row) + "\n"
                                 for word, row in zip(["a", "b"], values))
    assert path.read_text() == expected
    assert np.array_equal(load_word2vec_format(path)[1], values)  # exact round trip


def test_word_map_is_the_pca_of_the_unit_vectors(tmp_path, model):
    from sklearn.decomposition import PCA

    from hfssl.models.word2vec.pictures import principal_plane, save_word_map
    from hfssl.plots import png_description

    vectors = np.random.default_rng(0).standard_normal((50, 8))
    ours, theirs = principal_plane(vectors), PCA(n_components=2).fit_transform(vectors)
    assert np.allclose(np.abs(ours), np.abs(theirs)) and np.allclose(np.abs(ours.T @ theirs), np.diag((ours ** 2).sum(0)))
    assert np.array_equal(principal_plane(vectors), ours)  # deterministic signs
    path = save_word_map(model, tmp_path / "map.png")
    assert png_description(path) == {"projection": "pca", "count": "4"}
