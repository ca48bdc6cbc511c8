"""Word similarity and analogies: our parsers and metrics against gensim's evaluate functions on the
same vectors, 3CosAdd on vectors built to have known answers, and the registered protocols."""

from __future__ import annotations

import numpy as np
import pytest
from gensim.models import KeyedVectors
from gensim.test.utils import datapath

from hfssl.evaluation.word_vectors import (
    WordVectors,
    analogy_rows,
    data_file,
    evaluate_analogies,
    evaluate_word_similarity,
    read_analogies,
    read_word_pairs,
)


@pytest.fixture(scope="module")
def lee_vectors() -> KeyedVectors:
    return KeyedVectors.load_word2vec_format(datapath("lee_fasttext.vec"))


def test_data_files_parse_completely():
    assert len(read_word_pairs(data_file("wordsim353.tsv"))) == 353
    assert len(read_word_pairs(data_file("simlex999.txt"))) == 999
    sections = read_analogies(data_file("questions-words.txt"))
    assert len(sections) == 14 and sum(len(questions) for _, questions in sections) == 19544
    assert sections[0][0] == "capital-common-countries" and sections[0][1][0] == ("Athens", "Greece", "Baghdad", "Iraq")


@pytest.mark.parametrize("name", ["wordsim353.tsv", "simlex999.txt"])
def test_word_similarity_equals_gensim(lee_vectors, name):
    ours = evaluate_word_similarity(WordVectors.from_keyed_vectors(lee_vectors), data_file(name))
    pearson, spearman, oov_percent = lee_vectors.evaluate_word_pairs(datapath(name))
    assert ours["spearman"] == pytest.approx(spearman.statistic, abs=1e-6)
    assert ours["pearson"] == pytest.approx(pearson.statistic, abs=1e-6)
    assert 100 * ours["oov_ratio"] == pytest.approx(oov_percent)
    assert ours["oov_pairs"] > 0 and ours["num_pairs"] == len(read_word_pairs(data_file(name)))


def test_analogies_equal_gensim_per_section(lee_vectors):
    restrict = 1500
    ours = evaluate_analogies(WordVectors.from_keyed_vectors(lee_vectors), data_file("questions-words.txt"), restrict)
    accuracy, sections = lee_vectors.evaluate_word_analogies(datapath("questions-words.txt"), restrict_vocab=restrict)
    by_name = {section["section"]: section for section in sections}
    assert ours["evaluated"] == len(by_name["Total accuracy"]["correct"]) + len(by_name["Total accuracy"]["incorrect"])
    assert ours["evaluated"] > 40
    assert ours["correct"] == len(by_name["Total accuracy"]["correct"])
    assert ours["accuracy"] == pytest.approx(accuracy)
    for section in ours["sections"]:
        theirs = by_name.get(section["section"])
        evaluated = len(theirs["correct"]) + len(theirs["incorrect"]) if theirs else 0
        assert section["evaluated"] == evaluated
        assert section["correct"] == (len(theirs["correct"]) if theirs else 0)


def test_three_cos_add_finds_constructed_answers_and_excludes_the_question_words():
    """queen = king + g, woman = man + g, france = paris + c, italy = rome + c, plus noise larger than
    the offsets: the nearest word to b - a + c is then the question word c itself, which 3CosAdd
    excludes, and the answer d comes next."""
    rng = np.random.default_rng(0)
    base = {word: rng.normal(size=16) for word in ["king", "man", "paris", "rome", "filler", "noise"]}
    gender, capital = 0.05 * rng.normal(size=16), 0.05 * rng.normal(size=16)

    def noisy(vector: np.ndarray) -> np.ndarray:
        return vector + 0.2 * rng.normal(size=16)

    vectors = {**base, "queen": noisy(base["king"] + gender), "woman": noisy(base["man"] + gender),
               "france": noisy(base["paris"] + capital), "italy": noisy(base["rome"] + capital)}
    words = list(vectors)
    unit = {word: vector / np.linalg.norm(vector) for word, vector in vectors.items()}
    query = unit["queen"] - unit["king"] + unit["man"]
    assert max(words, key=lambda word: unit[word] @ query) == "man"  # without the exclusion: wrong
    table = WordVectors(words, np.stack([vectors[word] for word in words]).astype(np.float32))
    path = data_file("questions-words.txt")
    result = evaluate_analogies(table, path, restrict_vocab=len(words))
    expected = sum(1 for _, questions in read_analogies(path) for question in questions
                   if all(word.lower() in vectors for word in question))
    assert result["evaluated"] == expected >= 4  # king queen man woman, Paris France Rome Italy, ...
    assert result["correct"] == result["evaluated"]
    # Restricting the vocabulary to the 2 most frequent words leaves nothing to evaluate.
    assert evaluate_analogies(table, path, restrict_vocab=2)["evaluated"] == 0


def test_protocol_rows_for_a_vector_file(tmp_path, lee_vectors):
    path = tmp_path / "vectors.txt"
    lee_vectors.save_word2vec_format(str(path))
    from hfssl.evaluation.runner import evaluate_path
    from hfssl.recipe import EvalConfig

    rows = evaluate_path(str(path), None, EvalConfig(), ["word-similarity"])["results"]
    assert [(row["protocol"], row["dataset"]) for row in rows] == [("word-similarity", "wordsim353"),
                                                                  ("word-similarity", "simlex999")]
    assert all(set(row) >= {"spearman", "pearson", "oov_pairs", "oov_ratio"} for row in rows)
    analogy = analogy_rows(WordVectors.from_keyed_vectors(lee_vectors), restrict_vocab=1000)
    assert analogy[0]["section"] == "all" and len(analogy) == 15
    from hfssl.evaluation.protocols import get_protocol
    from hfssl.registry import WORD_VECTORS

    assert get_protocol("word-similarity").needs == (WORD_VECTORS,) and get_protocol("analogy").needs == (WORD_VECTORS,)
