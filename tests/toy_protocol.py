"""A protocol that lives only in tests/: what a newcomer writes to add a protocol, touching nothing in hfssl/.

``toy-centroid`` scores how tightly the frozen test features sit around their class: the mean cosine
similarity between a test feature and the centroid of its class's training features (1.0: every
feature points at its class's centroid). It declares its own metric (for the card's model-index), a
setting, the data it reads, that it measures on the held-out split, its card entry and a picture it
draws. :func:`register` adds it as a module of ``hfssl/evaluation/protocols/`` would be added on
discovery; the ``hfssl.protocols`` entry point loads this module in another process
(``tests/evaluation/test_protocol_extension.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hfssl.evaluation.protocols import (IMAGE, Metric, Protocol, ProtocolCard, Rows, register_protocol,
                                        unregister_protocol)
from hfssl.plots import PICTURES, Picture, figure, register_picture
from hfssl.registry import IMAGE_FEATURES
from hfssl.settings import RecipeError

NAME = "toy-centroid"
CENTROID_COSINE = Metric("centroid_cosine", "cosine_similarity", "mean cosine to the class centroid", False)
PICTURE = Picture("toy_centroid_histogram.png", "Histogram of the test features' cosine to their class centroid",
                  lambda description, name: f"Cosine similarity of {description.get('count', 'the')} test features "
                                            "to the centroid of their class's training features.",
                  heading="Centroid cosines", order=80)


@dataclass
class ToyCentroidSettings:
    """``eval.toy-centroid``: whether features are L2-normalised before the centroids are taken."""

    normalize: bool = True
    min_count: int = 1

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise RecipeError(f"eval.toy-centroid.min_count must be >= 1, got {self.min_count!r}")


def _unit(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def centroid_cosines(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                     normalize: bool) -> np.ndarray:
    """``(M,)`` cosine of each test feature to the centroid of its class's training features."""
    train_f, test_f = (_unit(train_f), _unit(test_f)) if normalize else (train_f, test_f)
    centroids = {label: train_f[train_y == label].mean(axis=0) for label in np.unique(train_y)}
    rows = np.stack([centroids[label] for label in test_y])
    return np.sum(_unit(rows) * _unit(test_f), axis=1)


def run(context, settings: ToyCentroidSettings) -> Rows:  # noqa: ANN001 - an EvaluationContext
    features = context.image_features()
    cosines = centroid_cosines(*features.as_tuple(), settings.normalize)
    context._cache["toy_cosines"] = cosines
    return [{"features": "model", "normalize": settings.normalize, "centroid_cosine": float(cosines.mean())}]


def draw(context, images_dir: Path) -> list[Path]:  # noqa: ANN001 - an EvaluationContext
    cosines = context._cache["toy_cosines"]
    canvas = figure(4, 3)
    canvas.add_subplot(1, 1, 1).hist(cosines, bins=20)
    path = images_dir / PICTURE.file
    canvas.savefig(path, format="png", metadata={"Description": f"hfssl toy count={len(cosines)}"})
    return [path]


PROTOCOL = Protocol(
    NAME, (IMAGE_FEATURES,), run, ToyCentroidSettings, "mean cosine of test features to their class centroid",
    data=IMAGE, held_out=True, pictures=(PICTURE,), draw=draw,
    card=ProtocolCard("Centroid cosine", "**Centroid cosine**: the mean cosine similarity between a test feature and "
                      "the centroid of its class's training features.", metrics=(CENTROID_COSINE,),
                      setting_labels={"normalize": "unit"}))


def register() -> Protocol:
    register_picture(PICTURE)
    return register_protocol(PROTOCOL)


def unregister() -> None:
    unregister_protocol(NAME)
    PICTURES.pop(PICTURE.file, None)


register()  # on import, as a plug-in module loaded through the hfssl.protocols entry point registers itself
