"""End of a word2vec run (main process): exports, word-similarity and analogy evaluation, a 2-D
picture of the vectors, and the model card.

Writes into the run directory (the engine has already saved ``config.json``,
``model.safetensors`` and, through ``save_artifacts``, the tokenizer and ``word_counts.json``):

* ``vectors.txt`` / ``vectors.bin``: the trained words, most frequent first, in word2vec's text
  and binary formats (``gensim.models.KeyedVectors.load_word2vec_format`` reads both);
* ``encoder/``: the vectors as a plain transformers model with the tokenizer (no hfssl needed);
* ``eval_results.json``: ``word-similarity`` (WordSim-353, SimLex-999) and ``analogy`` rows for the
  protocols listed in ``eval.protocols``;
* ``images/embeddings_2d.png``: t-SNE of frequent words, labelled;
* ``README.md``: the model card (``hfssl.hub.card.write_model_card``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfssl.training.recipe import Recipe

logger = logging.getLogger(__name__)

#: Words skipped at the top of the frequency list in the picture (function words) and plotted after.
PLOT_SKIP, PLOT_WORDS, PLOT_LABELS = 100, 400, 70


def finalize_word2vec_run(run_dir: str | Path, model: torch.nn.Module, recipe: Recipe, training_data: Any) -> dict[str, Any]:
    """Export, evaluate, draw and describe a trained word2vec run (``MethodSpec.finalize``).

    Returns:
        paths of what was written and the evaluation results (``eval_results``).
    """
    from transformers import AutoTokenizer

    from hfssl.models.word2vec.export import export_encoder, export_word2vec_format

    run_dir = Path(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model.set_vocabulary(tokenizer)
    model.eval()
    outputs: dict[str, Any] = {
        "vectors_text": str(export_word2vec_format(model, run_dir / "vectors.txt", binary=False)),
        "vectors_binary": str(export_word2vec_format(model, run_dir / "vectors.bin", binary=True)),
        "encoder": str(export_encoder(model, tokenizer, run_dir / "encoder")),
    }
    results = evaluate_run_model(model, recipe)
    if results is not None:
        from hfssl.evaluation.runner import write_eval_results

        outputs["eval_results"] = write_eval_results(results, run_dir / "eval_results.json")
    outputs["picture"] = str(draw_word_map(model, run_dir / "images" / "embeddings_2d.png"))
    from hfssl.hub.card import write_model_card

    outputs["card"] = str(write_model_card(run_dir))
    return outputs


def evaluate_run_model(model: torch.nn.Module, recipe: Recipe) -> dict[str, Any] | None:
    """The ``word-similarity`` and ``analogy`` protocols of ``recipe.eval.protocols``, as ``eval_results.json``."""
    from hfssl.evaluation.word_vectors import WordVectors, analogy_rows, word_similarity_rows

    protocols = list(recipe.eval.protocols)
    unknown = [name for name in protocols if name not in ("word-similarity", "analogy")]
    if unknown:
        logger.warning("word2vec runs evaluate with word-similarity and analogy; skipping %s", unknown)
    if not any(name in protocols for name in ("word-similarity", "analogy")):
        return None
    vectors = WordVectors.from_model(model)
    rows: list[dict[str, Any]] = []
    if "word-similarity" in protocols:
        rows += [{"protocol": "word-similarity", **row} for row in word_similarity_rows(vectors)]
    if "analogy" in protocols:
        rows += [{"protocol": "analogy", **row} for row in analogy_rows(vectors)]
    for row in rows:
        if row.get("section", "all") == "all":
            metric = "spearman" if row["protocol"] == "word-similarity" else "accuracy"
            logger.info("%s %s: %s %s", row["protocol"], row["dataset"], metric, row[metric])
    return {"dataset": recipe.data.source, "train_split": recipe.data.train_split, "test_split": None,
            "results": rows, "baselines": []}


def draw_word_map(model: torch.nn.Module, path: str | Path) -> Path:
    """t-SNE of the word vectors of frequent words (ranks ``PLOT_SKIP`` to ``PLOT_SKIP + PLOT_WORDS``),
    every few words labelled; the PNG's ``Description`` says ``projection=tsne count=N``."""
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    from hfssl.models.word2vec.export import trained_words

    words, vectors = trained_words(model)
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
