"""Evaluation protocols: what each needs, its settings, and how it runs on an :class:`EvaluationContext`.

A :class:`Protocol` is registered once under the name recipes (``eval.protocols``) and ``hfssl eval
--protocol`` use. It declares:

* ``needs``: the capabilities the evaluated model must provide (``image-features``,
  ``word-vectors``, ...; see :mod:`hfssl.registry`): a recipe asking for a protocol its model cannot
  serve is refused before training starts (:func:`hfssl.evaluation.runner.check_eval_config`);
* ``settings``: a dataclass of its own settings, read from the recipe's ``eval.<name>`` mapping
  (``eval: {knn: {k: [20, 200], temperature: 0.07}}``) and checked like every recipe section;
* ``run(context, settings) -> rows``: result rows with the protocol's own metric names
  (``top1``/``top5``, ``spearman``, ``accuracy``; accuracies as fractions in [0, 1]). Rows of image
  feature protocols carry ``"features": "model"`` or ``"raw_pixels"`` (the baselines).

Feature protocols (kNN, linear) are built by :func:`feature_protocol` from a ``score(train_f,
train_y, test_f, test_y, settings, num_classes) -> rows`` function, which also runs on arbitrary
arrays through :func:`hfssl.evaluation.runner.evaluate_features`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.knn import knn_evaluate
from hfssl.evaluation.linear_probe import linear_probe
from hfssl.evaluation.word_vectors import DEFAULT_RESTRICT_VOCAB, analogy_rows, word_similarity_rows
from hfssl.registry import CAPABILITIES, IMAGE_FEATURES, WORD_VECTORS
from hfssl.settings import RecipeError

Rows = list[dict[str, Any]]
Score = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any, int], Rows]


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol; see the module docstring.

    Attributes:
        name: the name in ``eval.protocols`` and ``--protocol``.
        needs: capabilities the evaluated model must provide.
        run: ``(context, settings) -> rows``.
        settings: the dataclass of its settings (``None``: it has none).
        description: one line for ``hfssl eval --help`` and error messages.
        score: for feature protocols, the function on ``(N, D)`` features (else ``None``).
    """

    name: str
    needs: tuple[str, ...]
    run: Callable[[EvaluationContext, Any], Rows]
    settings: type | None = None
    description: str = ""
    score: Score | None = None

    def __post_init__(self) -> None:
        unknown = [need for need in self.needs if need not in CAPABILITIES]
        if unknown:
            raise ValueError(f"protocol {self.name!r}: unknown needs {unknown}; known capabilities: {CAPABILITIES}")


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add (or replace) a protocol in :data:`PROTOCOLS` and return it."""
    PROTOCOLS[protocol.name] = protocol
    return protocol


def available_protocols() -> list[str]:
    """Names of every registered protocol."""
    return sorted(PROTOCOLS)


def get_protocol(name: str) -> Protocol:
    """Look up a protocol by name, with the list of known ones in the error."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; known protocols: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


def feature_protocol(name: str, score: Score, settings: type, description: str) -> Protocol:
    """A protocol on frozen image features: ``score`` on the model's features, and on raw pixels
    when ``eval.baselines`` is set."""

    def run(context: EvaluationContext, options: Any) -> Rows:
        rows = [{"features": "model", **row}
                for row in score(*context.image_features().as_tuple(), options, context.num_classes)]
        if context.eval_config.baselines:
            rows += [{"features": "raw_pixels", **row}
                     for row in score(*context.raw_pixel_features().as_tuple(), options, context.num_classes)]
        return rows

    return Protocol(name, (IMAGE_FEATURES,), run, settings, description, score)


# ---- kNN and the linear probe ---------------------------------------------------------------------


@dataclass
class KNNSettings:
    """``eval.knn``: neighbour counts and the vote temperature (Wu et al. 2018; DINO uses k=20, T=0.07)."""

    k: tuple[int, ...] = (20, 200)
    temperature: float = 0.07

    def __post_init__(self) -> None:
        if not self.k or any(value < 1 for value in self.k):
            raise RecipeError(f"eval.knn.k must be a list of positive neighbour counts, got {self.k!r}")
        if self.temperature <= 0:
            raise RecipeError(f"eval.knn.temperature must be > 0, got {self.temperature!r}")


@dataclass
class LinearSettings:
    """``eval.linear``: the inverse-regularisation values to choose from on a validation split."""

    c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    validation_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not self.c_grid or any(value <= 0 for value in self.c_grid):
            raise RecipeError(f"eval.linear.c_grid must be a list of positive values, got {self.c_grid!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise RecipeError(f"eval.linear.validation_fraction must be in (0, 1), got {self.validation_fraction!r}")


def knn_score(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
              settings: KNNSettings, num_classes: int) -> Rows:
    return knn_evaluate(train_f, train_y, test_f, test_y, settings.k, settings.temperature, num_classes)


def linear_score(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                 settings: LinearSettings, num_classes: int) -> Rows:
    return [linear_probe(train_f, train_y, test_f, test_y, settings.c_grid, settings.validation_fraction, num_classes)]


# ---- word vectors ---------------------------------------------------------------------------------------


@dataclass
class AnalogySettings:
    """``eval.analogy``: answers are searched among the ``restrict_vocab`` most frequent words (gensim's default)."""

    restrict_vocab: int = DEFAULT_RESTRICT_VOCAB

    def __post_init__(self) -> None:
        if self.restrict_vocab < 1:
            raise RecipeError(f"eval.analogy.restrict_vocab must be >= 1, got {self.restrict_vocab!r}")


def run_word_similarity(context: EvaluationContext, settings: None) -> Rows:
    return word_similarity_rows(context.word_vectors())


def run_analogy(context: EvaluationContext, settings: AnalogySettings) -> Rows:
    return analogy_rows(context.word_vectors(), settings.restrict_vocab)


register_protocol(feature_protocol(
    "knn", knn_score, KNNSettings, "weighted kNN on L2-normalised features (Wu et al. 2018), top-1/top-5 per k"))
register_protocol(feature_protocol(
    "linear", linear_score, LinearSettings,
    "logistic regression on standardised frozen features, C chosen on a validation split"))
register_protocol(Protocol(
    "word-similarity", (WORD_VECTORS,), run_word_similarity, None,
    "Spearman on WordSim-353 and SimLex-999 (word2vec models and files)"))
register_protocol(Protocol(
    "analogy", (WORD_VECTORS,), run_analogy, AnalogySettings,
    "3CosAdd accuracy on the Google analogy set, top 30,000 words (word2vec)"))
