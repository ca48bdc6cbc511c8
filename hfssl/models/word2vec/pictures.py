"""word2vec's picture for the model card: a labelled map of frequent words, the PCA of their unit vectors.

PCA (two right singular vectors of the centred unit vectors, numpy), not t-SNE: like every other
method's ``embeddings_2d.png``, and cheap. scikit-learn's t-SNE of these 400 words cost ~2.5 s of CPU
at the end of every ``hfssl train`` (1.6 s of it importing scikit-learn and scipy), about half of
what CBOW's whole training costs on 2.17M words; this map costs ~0.01 s plus matplotlib's drawing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hfssl.plots import PictureContext

#: Words skipped at the top of the frequency list in the picture (function words) and plotted after.
PLOT_SKIP, PLOT_WORDS, PLOT_LABELS = 100, 400, 70


def draw_word_map(model: torch.nn.Module, context: PictureContext) -> list[Path]:
    """``MethodSpec.pictures`` of word2vec: ``images/embeddings_2d.png``."""
    return [save_word_map(model, context.images_dir / "embeddings_2d.png")]


def principal_plane(vectors: np.ndarray) -> np.ndarray:
    """``(N, D)`` -> ``(N, 2)``: the centred rows on their two principal axes, each axis signed so that
    its largest coordinate is positive (deterministic, as scikit-learn's ``svd_flip``)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    if vectors.shape[1] < 2 or len(vectors) < 2:  # nothing to project: plot the first coordinate against zero
        first = centred[:, :1] if vectors.shape[1] else np.zeros((len(vectors), 1))
        return np.concatenate([first, np.zeros_like(first)], axis=1)
    _, _, axes = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    axes = axes[:2]
    signs = np.sign(axes[np.arange(2), np.abs(axes).argmax(axis=1)])
    return centred @ (axes * signs[:, None]).T


def save_word_map(model: torch.nn.Module, path: str | Path) -> Path:
    """PCA of the unit word vectors of frequent words (ranks ``PLOT_SKIP`` to ``PLOT_SKIP + PLOT_WORDS``),
    every few words labelled; the PNG's ``Description`` says ``projection=pca count=N``."""
    from matplotlib.figure import Figure

    words, vectors = model.get_word_vectors()
    skip = PLOT_SKIP if len(words) > PLOT_SKIP + 50 else 0
    words, vectors = words[skip : skip + PLOT_WORDS], vectors[skip : skip + PLOT_WORDS].float().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    points = principal_plane(unit)  # unit vectors: directions, as the cosine similarities see them
    figure = Figure(figsize=(9, 9), dpi=100)
    axes = figure.add_subplot()
    axes.scatter(points[:, 0], points[:, 1], s=6, c="#4c72b0", alpha=0.6)
    step = max(1, len(words) // PLOT_LABELS)
    for index in range(0, len(words), step):
        axes.annotate(words[index], points[index], fontsize=8, alpha=0.9)
    axes.set_title(f"PCA of the word vectors of {len(words)} frequent words (ranks {skip + 1}-{skip + len(words)})")
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, metadata={"Description": f"projection=pca count={len(words)}"})
    return path
