"""The evaluation's pictures, drawn by the end of training and by ``hfssl eval --plot``.

* 2-D projections of the test embeddings coloured by label, one per ``eval.projections`` entry:
  ``images/embeddings_2d.png`` (PCA), ``images/embeddings_tsne.png`` (t-SNE, scikit-learn),
  ``images/embeddings_umap.png`` (UMAP, only when the optional ``umap-learn`` is installed; skipped
  with a log line otherwise);
* a confusion matrix of every probe that recorded its test predictions (linear probes per label
  fraction, fine-tuning): ``images/confusion_<probe>.png``.

Only what the evaluation already computed is drawn (no features are extracted for a picture).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hfssl.evaluation.context import EvaluationContext
from hfssl.plots import Picture, register_picture, save_confusion_matrix, save_projection_plot, umap_available

logger = logging.getLogger(__name__)

#: projection -> file under images/ (PCA keeps the name cards have always linked).
PROJECTION_FILES = {"pca": "embeddings_2d.png", "tsne": "embeddings_tsne.png", "umap": "embeddings_umap.png"}
CONFUSION_PREFIX = "confusion_"
#: test points drawn in a projection (t-SNE's cost grows with the square of the count).
PLOT_POINTS = 2000
_PROJECTION_NAMES = {"tsne": "t-SNE", "umap": "UMAP"}


def _count(description: dict[str, str]) -> str:
    return f"{int(description['count']):,} " if description.get("count", "").isdigit() else ""


def _projection_alt(description: dict[str, str], name: str) -> str:
    return f"{_PROJECTION_NAMES.get(description.get('projection', ''), 'a 2-D projection')} of test-set embeddings coloured by label"


def _projection_caption(description: dict[str, str], name: str) -> str:
    method = _PROJECTION_NAMES.get(description.get("projection", ""), "A 2-D projection")
    # Whether the labels were used in training is the card family's to say (the main projection's caption, the
    # training-data section): these pictures are also drawn by `hfssl eval --plot` for any encoder.
    return (f"{method} of the frozen embeddings of {_count(description)}test images, coloured by their label. Classes "
            "that form separate groups here are easy for the kNN and linear probes.")


def _confusion_probe(description: dict[str, str], name: str) -> str:
    return description.get("confusion", name.removeprefix(CONFUSION_PREFIX).removesuffix(".png")).replace("_", " ")


def _confusion_caption(description: dict[str, str], name: str) -> str:
    accuracy = description.get("accuracy")
    share = f" ({100 * float(accuracy):.1f} % correct)" if accuracy else ""
    return (f"Confusion matrix of the {_confusion_probe(description, name)} protocol on the test split{share}: rows are "
            "the true classes, columns the predicted ones, each row normalised to 100 %.")


# The PCA (embeddings_2d.png) is the card's main picture, captioned by the family; these follow it.
for _order, _method in enumerate(("tsne", "umap")):
    register_picture(Picture(PROJECTION_FILES[_method], _projection_alt, _projection_caption, order=50 + _order))
CONFUSION_PICTURE = register_picture(Picture(
    f"{CONFUSION_PREFIX}*.png", lambda description, name: f"confusion matrix of {_confusion_probe(description, name)}",
    _confusion_caption, order=55))


def draw_evaluation_pictures(context: EvaluationContext, images_dir: Path, projections: tuple[str, ...] | None = None,
                             label_names: list[str] | None = None, points: int = PLOT_POINTS) -> list[Path]:
    """Draw the projections of the test features and the probes' confusion matrices; see the module docstring.

    Args:
        context: the evaluation's context after :func:`hfssl.evaluation.evaluate` ran on it.
        images_dir: where the PNGs go (``RUN/images``).
        projections: defaults to ``context.eval_config.projections``.
        label_names: class names (default: the context's).
        points: how many test points the projections draw (the first ones: a uniform sample).

    Returns:
        the PNGs written.
    """
    images_dir = Path(images_dir)
    names = label_names if label_names is not None else (context.label_names or
                                                         (context.image_splits().label_names if "splits" in context._cache else None))
    pictures: list[Path] = []
    if "features" in context._cache:
        features = context.image_features()
        for method in projections if projections is not None else context.eval_config.projections:
            if method == "umap" and not umap_available():
                logger.info("pictures: no UMAP projection (umap-learn is not installed: pip install 'hfssl[umap]')")
                continue
            pictures.append(save_projection_plot(features.test_features[:points], features.test_labels[:points], names,
                                                 images_dir / PROJECTION_FILES[method], method))
    for label, predictions, labels in context.predictions:
        pictures.append(save_confusion_matrix(predictions, labels, names, images_dir / f"{CONFUSION_PREFIX}{label}.png",
                                              title=label))
    return pictures
