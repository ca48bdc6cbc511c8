"""text-knn and alignment-uniformity (hfssl/evaluation/sentence_embeddings.py, its formulas in
hfssl/evaluation/alignment_uniformity.py) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hfssl.evaluation import sentence_embeddings
from hfssl.evaluation.knn import knn_evaluate, knn_evaluate_similarities
from hfssl.evaluation.alignment_uniformity import alignment, uniformity
from hfssl.evaluation.sentence_embeddings import adjacent_sentence_pairs, tfidf_similarities


def test_alignment_and_uniformity_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # squared distances of the pairs: 0, 2, 2
    assert float(alignment(3 * x, y)) == pytest.approx(4 / 3, rel=1e-12)
    assert float(alignment(x, y, alpha=1.0)) == pytest.approx(2 * math.sqrt(2) / 3, rel=1e-12)
    # squared distances between the points of x: 2, 4, 2
    expected = math.log((math.exp(-4) + math.exp(-8) + math.exp(-4)) / 3)
    assert float(uniformity(x * torch.tensor([[2.0], [1.0], [5.0]]))) == pytest.approx(expected, rel=1e-12)


def test_adjacent_sentence_pairs():
    sentences, pairs = adjacent_sentence_pairs(["One. Two! Three?", "Four. One."], max_pairs=10)
    assert sentences == ["One.", "Two!", "Three?", "Four."]
    assert pairs == [(0, 1), (1, 2), (3, 0)]
    assert adjacent_sentence_pairs(["One. Two! Three?", "Four. One."], max_pairs=2)[1] == [(0, 1), (1, 2)]


def test_knn_from_similarities_by_hand():
    similarities = np.array([[0.9, 0.5, 0.4], [0.1, 0.2, 0.3]], dtype=np.float32)
    train_labels, test_labels = np.array([0, 1, 1]), np.array([0, 1])
    # k=1: nearest rows 0 and 2 -> classes 0 and 1, both right; k=3, T=1: test 0 gets e^0.9 = 2.46 for class 0
    # and e^0.5 + e^0.4 = 3.14 for class 1 -> wrong; test 1 -> class 1, right.
    rows = knn_evaluate_similarities(similarities, train_labels, test_labels, (1, 3), 1.0, 2)
    assert [(row["k"], row["top1"]) for row in rows] == [(1, 1.0), (3, 0.5)]
    # The same votes as knn_evaluate on features with those cosine similarities.
    generator = np.random.default_rng(0)
    train, test = generator.normal(size=(6, 4)), generator.normal(size=(3, 4))
    cosine = (test / np.linalg.norm(test, axis=1, keepdims=True)) @ (train / np.linalg.norm(train, axis=1, keepdims=True)).T
    labels, targets = np.array([0, 1, 2, 0, 1, 2]), np.array([2, 0, 1])
    assert knn_evaluate_similarities(cosine, labels, targets, (3,), 0.1, 3) == knn_evaluate(train, labels, test, targets,
                                                                                           (3,), 0.1, 3)


def test_tfidf_similarities_are_cosines_of_the_tfidf_vectors():
    from sklearn.feature_extraction.text import TfidfVectorizer

    train = ["the cat sat on the mat", "the dog ate the cat food", "stocks fell on the news", "the cat and the dog"]
    test = ["a cat on a mat", "stocks and the news"]
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2).fit(train)
    a, b = vectorizer.transform(test).toarray(), vectorizer.transform(train).toarray()
    expected = a @ b.T  # rows are L2-normalised by TfidfVectorizer
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0)
    np.testing.assert_allclose(tfidf_similarities(train, test), expected, rtol=1e-6)


def test_text_knn_rows_score_the_models_features_and_tfidf(monkeypatch):
    texts = [f"document {index} about {'sport' if index % 2 else 'money'}" for index in range(40)]
    labels = np.array([index % 2 for index in range(40)])
    monkeypatch.setattr(sentence_embeddings, "load_classification_set", lambda name: (texts, labels, ["a", "b"]))
    features = np.stack([labels + 0.01 * np.arange(40), 1 - labels], axis=1).astype(np.float32)
    monkeypatch.setattr(sentence_embeddings, "text_features",
                        lambda model, chosen, *args: {"mean": features[[texts.index(text) for text in chosen]]})

    class Encoder:
        config = type("Config", (), {"max_position_embeddings": 64})()

    model = type("Model", (), {"encoder": Encoder()})()
    rows = sentence_embeddings.text_knn_rows(model, ("builtin:bbc_news",), ("mean",), 32, None, 0.3, (5,), 0.07, 8, True)
    model_row, tfidf_row = rows
    assert model_row["features"] == "model" and model_row["top1"] == 1.0 and model_row["num_test"] == 12
    assert tfidf_row["features"] == "tfidf" and tfidf_row["k"] == 5 and tfidf_row["num_train"] == 28
