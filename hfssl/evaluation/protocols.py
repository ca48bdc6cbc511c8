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


# ---- image-text dual encoders: zero-shot classification and retrieval ---------------------------------

from hfssl.evaluation.image_text import (class_text_embeddings, retrieval_recalls,  # noqa: E402
                                         zero_shot_scores)
from hfssl.data.images import read_labels, read_pixels  # noqa: E402
from hfssl.registry import IMAGE_TEXT_EMBEDDINGS  # noqa: E402


@dataclass
class ZeroShotSettings:
    """``eval.zero-shot``: prompt templates (``{}`` takes the class name), averaged over (CLIP sec. 3.1.4);
    ``class_names`` replaces the data's label names (same order); ``datasets`` adds rows measured on the
    held-out split of other sources with the same layout (``builtin:emoji_twitter``: a style shift)."""

    templates: tuple[str, ...] = ("a photo of a {}.", "a picture of {}.", "{}")
    class_names: tuple[str, ...] | None = None
    datasets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.templates or any("{}" not in template for template in self.templates):
            raise RecipeError(f"eval.zero-shot.templates must be prompts that each hold '{{}}' for the class name, "
                              f"got {self.templates!r}")
        if self.class_names is not None and (not self.class_names or not all(str(n).strip() for n in self.class_names)):
            raise RecipeError(f"eval.zero-shot.class_names must be non-empty names, got {self.class_names!r}")


@dataclass
class RetrievalSettings:
    """``eval.retrieval``: the K of recall@K."""

    ks: tuple[int, ...] = (1, 5, 10)

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise RecipeError(f"eval.retrieval.ks must be positive ranks, got {self.ks!r}")


def _pairs_arrays(split: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return read_pixels(split), read_labels(split), list(split.with_format(None)["text"])


def run_zero_shot(context: EvaluationContext, settings: ZeroShotSettings) -> Rows:
    encoder = context.dual_encoder()
    rows: Rows = []
    for source in (None, *settings.datasets):
        pairs = context.image_text_test(source)
        names = list(settings.class_names) if settings.class_names is not None else pairs.label_names
        if not names:
            raise ValueError(f"zero-shot classification needs class names: {pairs.source!r} has no class labels "
                             "(set data.label_column) and eval.zero-shot.class_names is not set")
        pixels, labels, _ = _pairs_arrays(pairs.test)
        if (labels < 0).any() or labels.max() >= len(names):
            raise ValueError(f"zero-shot classification needs every test image of {pairs.source!r} labelled with one "
                             f"of its {len(names)} class names; found labels {sorted(set(labels.tolist()))[:10]}")
        classes = class_text_embeddings(encoder, names, settings.templates)
        row: dict[str, Any] = {"templates": len(settings.templates), "num_classes": len(names), "class_names": names,
                               "prompt": settings.templates[0],
                               **zero_shot_scores(encoder.embed_images(pixels), labels, classes)}
        if source is not None:
            row = {"dataset": source, **row}
        rows.append(row)
    return rows


def run_retrieval(context: EvaluationContext, settings: RetrievalSettings) -> Rows:
    encoder = context.dual_encoder()
    pixels, _, captions = _pairs_arrays(context.image_text_pairs().test)
    return retrieval_recalls(encoder.embed_images(pixels), captions, encoder.embed_texts(captions), settings.ks)


register_protocol(Protocol(
    "zero-shot", (IMAGE_TEXT_EMBEDDINGS,), run_zero_shot, ZeroShotSettings,
    "zero-shot classification: class names x prompt templates (ensembled), top-1/top-5 (image-text models)"))
register_protocol(Protocol(
    "retrieval", (IMAGE_TEXT_EMBEDDINGS,), run_retrieval, RetrievalSettings,
    "image-to-text and text-to-image recall@1/5/10 on held-out pairs (image-text models)"))
