"""Evaluation pictures: projections, confusion matrices, and the card that shows them."""

from __future__ import annotations

import numpy as np
import pytest

import hfssl.evaluation.pictures  # noqa: F401 - declares the evaluation's pictures
from hfssl.plots import (card_pictures, confusion_matrix, png_description, project_2d, save_confusion_matrix,
                         save_projection_plot, umap_available)


def test_confusion_matrix_counts():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    predictions = np.array([0, 1, 1, 1, 2, 0, 2])
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    assert np.array_equal(confusion_matrix(predictions, labels, 3), expected)
    with pytest.raises(ValueError, match="class indices"):
        confusion_matrix(np.array([3]), np.array([0]), 3)


def test_pictures_are_drawn_and_the_card_lists_them(tmp_path):
    generator = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = np.eye(3, 5)[labels] * 4 + generator.normal(size=(60, 5))
    images = tmp_path / "images"
    save_projection_plot(features, labels, ["a", "b", "c"], images / "embeddings_tsne.png", "tsne")
    predictions = labels.copy()
    predictions[:4] = 1
    path = save_confusion_matrix(predictions, labels, ["a", "b", "c"], images / "confusion_linear.png", "linear")
    assert png_description(path) == {"confusion": "linear", "count": "60", "accuracy": f"{56 / 60:.4f}"}
    pictures = card_pictures(tmp_path)
    assert [picture["path"] for picture in pictures] == ["images/embeddings_tsne.png", "images/confusion_linear.png"]
    assert "t-SNE of the frozen embeddings of 60 test images" in pictures[0]["caption"]
    assert "93.3 % correct" in pictures[1]["caption"]


def test_umap_is_optional():
    features = np.random.default_rng(0).normal(size=(30, 4))
    if umap_available():
        assert project_2d(features, "umap").shape == (30, 2)
    else:
        with pytest.raises(ValueError, match=r"pip install 'hfssl\[umap\]'"):
            project_2d(features, "umap")
