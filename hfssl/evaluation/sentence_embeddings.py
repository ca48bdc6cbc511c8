"""Evaluation of sentence embeddings: nearest-neighbour topic agreement and alignment / uniformity.

* :func:`text_knn_rows` (protocol ``text-knn``): frozen features of BBC News (5 classes) and Wikipedia lead
  sections (11 topics) on ``text-linear``'s stratified 70/30 split (:func:`hfssl.evaluation.text.stratified_split`),
  scored by the image ``knn`` protocol's weighted vote (Wu et al. 2018: the k most cosine-similar training
  documents vote with ``exp(similarity / T)``), next to the same vote over TF-IDF vectors (uni- and bigrams,
  sub-linear term frequency, L2-normalised; the similarities computed sparse).
* :func:`alignment_uniformity_rows` (protocol ``alignment-uniformity``): Wang & Isola 2020's alignment and
  uniformity (:mod:`hfssl.evaluation.alignment_uniformity`, shared with the image ``invariance`` protocol) of
  L2-normalised embeddings: ``align = E ||f(x) - f(y)||^alpha`` over positive pairs (alpha 2) and
  ``uniform = log E exp(-t ||f(x) - f(y)||^2)`` over all distinct pairs (t 2); lower is better for both. The
  positive pairs here are consecutive sentences of one held-out document (no labelled paraphrases exist offline),
  the uniformity is over every sentence used.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from hfssl.data.text import split_sentences
from hfssl.evaluation.alignment_uniformity import alignment, uniformity
from hfssl.evaluation.knn import knn_evaluate, knn_evaluate_similarities
from hfssl.evaluation.text import TextModel, load_classification_set, stratified_split, text_features

logger = logging.getLogger(__name__)


def adjacent_sentence_pairs(documents: list[str], max_pairs: int) -> tuple[list[str], list[tuple[int, int]]]:
    """Distinct sentences and index pairs ``(i, i + 1)`` of consecutive sentences of one document, in document
    order, at most ``max_pairs`` pairs (the sentences are those the pairs use)."""
    sentences: list[str] = []
    index: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    for document in documents:
        parts = split_sentences(document)
        for first, second in zip(parts, parts[1:]):
            if len(pairs) >= max_pairs:
                return sentences, pairs
            if first == second:
                continue
            ids = []
            for sentence in (first, second):
                if sentence not in index:
                    index[sentence] = len(sentences)
                    sentences.append(sentence)
                ids.append(index[sentence])
            pairs.append((ids[0], ids[1]))
    return sentences, pairs


def alignment_uniformity_rows(text_model: TextModel, documents: list[str], poolings: tuple[str, ...], max_length: int,
                              max_pairs: int, batch_size: int, alpha: float, t: float) -> list[dict[str, Any]]:
    """One row per pooling: ``alignment`` over adjacent-sentence pairs and ``uniformity`` over their sentences."""
    sentences, pairs = adjacent_sentence_pairs(documents, max_pairs)
    if len(pairs) < 2:
        raise ValueError(f"the held-out documents hold {len(pairs)} pairs of consecutive sentences; alignment needs at "
                         "least 2 (documents of several sentences)")
    limit = int(getattr(text_model.encoder.config, "max_position_embeddings", max_length))
    features = text_features(text_model, sentences, min(max_length, limit), batch_size, poolings)
    first = torch.tensor([a for a, _ in pairs])
    second = torch.tensor([b for _, b in pairs])
    rows = []
    for pooling in poolings:
        embeddings = torch.from_numpy(features[pooling])
        rows.append({"features": "model", "pooling": pooling, "pairs": len(pairs), "sentences": len(sentences),
                     "alignment": float(alignment(embeddings[first], embeddings[second], alpha)),
                     "uniformity": float(uniformity(embeddings, t))})
    return rows


def tfidf_similarities(train_texts: list[str], test_texts: list[str]) -> np.ndarray:
    """``(N_test, N_train)`` cosine similarities of TF-IDF vectors (the ``text-linear`` baseline's vectoriser)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)  # rows L2-normalised
    train = vectorizer.fit_transform(train_texts)
    return (vectorizer.transform(test_texts) @ train.T).toarray().astype(np.float32)


def text_knn_rows(text_model: TextModel, datasets: tuple[str, ...], poolings: tuple[str, ...], max_length: int,
                  max_documents: int | None, test_fraction: float, ks: tuple[int, ...], temperature: float,
                  batch_size: int, baselines: bool, seed: int = 0) -> list[dict[str, Any]]:
    """``text-knn`` rows: per data set, one row per pooling and k (``features: model``) and the TF-IDF rows."""
    rows: list[dict[str, Any]] = []
    limit = int(getattr(text_model.encoder.config, "max_position_embeddings", max_length))
    for name in datasets:
        texts, labels, names = load_classification_set(name)
        train, test = stratified_split(labels, test_fraction, max_documents, seed)
        counts = {"dataset": name, "num_train": int(len(train)), "num_test": int(len(test)), "num_classes": len(names)}
        features = text_features(text_model, [texts[i] for i in np.concatenate([train, test])], min(max_length, limit),
                                 batch_size, poolings)
        for pooling in poolings:
            train_f, test_f = features[pooling][: len(train)], features[pooling][len(train):]
            for result in knn_evaluate(train_f, labels[train], test_f, labels[test], ks, temperature, len(names)):
                rows.append({"features": "model", "pooling": pooling, **counts, **result})
        if baselines:
            similarities = tfidf_similarities([texts[i] for i in train], [texts[i] for i in test])
            for result in knn_evaluate_similarities(similarities, labels[train], labels[test], ks, temperature, len(names)):
                rows.append({"features": "tfidf", **counts, **result})
        logger.info("text-knn %s: %s", name, [(row.get("pooling", row["features"]), row["k"], round(row["top1"], 4))
                                              for row in rows if row["dataset"] == name])
    return rows
