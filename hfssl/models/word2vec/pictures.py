"""word2vec's picture for the model card: a labelled t-SNE map of frequent words."""

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


def save_word_map(model: torch.nn.Module, path: str | Path) -> Path:
    """t-SNE of the word vectors of frequent words (ranks ``PLOT_SKIP`` to ``PLOT_SKIP + PLOT_WORDS``),
    every few words labelled; the PNG's ``Description`` says ``projection=tsne count=N``."""
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    words, vectors = model.get_word_vectors()
    skip = PLOT_SKIP if len(words) > PLOT_SKIP + 50 else 0
    words, vectors = words[skip : skip + PLOT_WORDS], vectors[skip : skip + PLOT_WORDS].float().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    perplexity = float(min(30, max(2, len(words) // 4)))
    # One OpenMP thread: 2 s instead of 45 s for 400 words when the cores are shared (measured).
    with threadpool_limits(limits=1):
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0,
                      metric="cosine").fit_transform(unit)
    figure = Figure(figsize=(9, 9), dpi=100)
    axes = figure.add_subplot()
    axes.scatter(points[:, 0], points[:, 1], s=6, c="#4c72b0", alpha=0.6)
    step = max(1, len(words) // PLOT_LABELS)
    for index in range(0, len(words), step):
        axes.annotate(words[index], points[index], fontsize=8, alpha=0.9)
    axes.set_title(f"t-SNE of the word vectors of {len(words)} frequent words (ranks {skip + 1}-{skip + len(words)})")
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, metadata={"Description": f"projection=tsne count={len(words)}"})
    return path
