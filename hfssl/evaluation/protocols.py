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

import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hfssl.data.config import ImageDataConfig
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.finetune import FineTuneSettings, finetune
from hfssl.evaluation.knn import knn_evaluate
from hfssl.evaluation.few_shot import CLASSIFIERS as FEW_SHOT_CLASSIFIERS
from hfssl.evaluation.few_shot import few_shot_evaluate
from hfssl.evaluation.linear_probe import SOLVERS, linear_probe
from hfssl.evaluation.subsets import balanced_subset, check_fraction
from hfssl.evaluation.word_vectors import DEFAULT_RESTRICT_VOCAB, analogy_rows, word_similarity_rows
from hfssl.registry import CAPABILITIES, IMAGE_FEATURES, MASKED_LM, TEXT_FEATURES, WORD_VECTORS, is_hfssl_run
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
        features = context.image_features()
        rows = [{"features": "model", **row} for row in score(*features.as_tuple(), options, context.num_classes)]
        for row in rows:  # test predictions (a probe's) go to the context, for confusion matrices
            predictions = row.pop("predictions", None)
            if predictions is not None:
                context.record_predictions(probe_label(name, row), predictions, features.test_labels)
        if context.eval_config.baselines:
            rows += [{"features": "raw_pixels", **row}
                     for row in score(*context.raw_pixel_features().as_tuple(), options, context.num_classes)]
            for row in rows:
                row.pop("predictions", None)
        return rows

    return Protocol(name, (IMAGE_FEATURES,), run, settings, description, score)


def probe_label(name: str, row: dict[str, Any]) -> str:
    """A file-name-safe label of one probe's row: ``linear``, ``linear-fraction-0.01``, ``finetune-random``."""
    label = name
    if row.get("init", "pretrained") != "pretrained":
        label += f"-{row['init']}"
    if row.get("label_fraction") is not None:
        label += f"-fraction-{row['label_fraction']:g}"
    return label


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
    """``eval.linear``: the inverse-regularisation values to choose from on a validation split, the
    solver (``torch``: full-batch L-BFGS on the device, the default; ``sklearn``: scikit-learn's), and
    the label fractions to probe with (class-balanced seeded subsets of the training split,
    SimCLRv2's ``[0.01, 0.1, 1.0]``; ``seed`` draws them)."""

    c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    validation_fraction: float = 0.1
    solver: str = "torch"
    label_fractions: tuple[float, ...] = (1.0,)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.c_grid or any(value <= 0 for value in self.c_grid):
            raise RecipeError(f"eval.linear.c_grid must be a list of positive values, got {self.c_grid!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise RecipeError(f"eval.linear.validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if self.solver not in SOLVERS:
            raise RecipeError(f"eval.linear.solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        _check_fractions(self.label_fractions, "eval.linear.label_fractions")


def _check_fractions(fractions: tuple[float, ...], where: str) -> None:
    if not fractions:
        raise RecipeError(f"{where} must list at least one label fraction (1.0: all labels)")
    for fraction in fractions:
        try:
            check_fraction(fraction, where)
        except ValueError as error:
            raise RecipeError(str(error)) from None


@dataclass
class FewShotSettings:
    """``eval.few-shot``: N-way K-shot episodes drawn from the test split (see :mod:`hfssl.evaluation.few_shot`)."""

    ways: int = 5
    shots: tuple[int, ...] = (1, 5)
    queries: int = 15
    episodes: int = 600
    classifiers: tuple[str, ...] = FEW_SHOT_CLASSIFIERS
    c: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("ways", "queries", "episodes"):
            if getattr(self, name) < 1:
                raise RecipeError(f"eval.few-shot.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.ways < 2:
            raise RecipeError(f"eval.few-shot.ways must be >= 2 (a 1-way episode is always right), got {self.ways!r}")
        if not self.shots or any(value < 1 for value in self.shots):
            raise RecipeError(f"eval.few-shot.shots must list positive shot counts, got {self.shots!r}")
        unknown = [name for name in self.classifiers if name not in FEW_SHOT_CLASSIFIERS]
        if not self.classifiers or unknown:
            raise RecipeError(f"eval.few-shot.classifiers must be a list from {', '.join(FEW_SHOT_CLASSIFIERS)}, "
                              f"got {list(self.classifiers)!r}")
        if self.c <= 0:
            raise RecipeError(f"eval.few-shot.c must be > 0, got {self.c!r}")


def knn_score(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
              settings: KNNSettings, num_classes: int) -> Rows:
    return knn_evaluate(train_f, train_y, test_f, test_y, settings.k, settings.temperature, num_classes)


def linear_score(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                 settings: LinearSettings, num_classes: int) -> Rows:
    """One probe per label fraction; rows of a fraction below 1 carry ``label_fraction`` and
    ``num_labelled`` (the confusion matrix of each probe goes to ``predictions``, kept out of the file)."""
    rows = []
    for fraction in settings.label_fractions:
        rows_used = balanced_subset(train_y, fraction, settings.seed) if fraction < 1.0 else slice(None)
        row = linear_probe(train_f[rows_used], train_y[rows_used], test_f, test_y, settings.c_grid,
                           settings.validation_fraction, num_classes, solver=settings.solver, return_predictions=True)
        extra = {"label_fraction": fraction, "num_labelled": int(len(train_y[rows_used]))} if fraction < 1.0 else {}
        rows.append({**extra, "solver": settings.solver, **row})
    return rows


def few_shot_score(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                   settings: FewShotSettings, num_classes: int) -> Rows:
    """Episodes from the test split (the classes a model is evaluated on); the training split is unused."""
    return few_shot_evaluate(test_f, test_y, settings.ways, tuple(settings.shots), settings.queries, settings.episodes,
                             tuple(settings.classifiers), settings.c, settings.seed)


# ---- fine-tuning --------------------------------------------------------------------------------------


def _finetune_output(context: EvaluationContext, settings: FineTuneSettings, encoder: str) -> Path:
    if settings.output_dir is not None:
        return Path(settings.output_dir)
    if context.run_dir is not None:
        return Path(context.run_dir) / "finetune"
    path = Path(str(context.model_path))
    if is_hfssl_run(path):
        return path / "finetune"
    if path.name == "encoder" and is_hfssl_run(path.parent):
        return path.parent / "finetune"
    return Path.cwd() / f"finetune-{Path(encoder).name or 'model'}"


def run_finetune(context: EvaluationContext, settings: FineTuneSettings) -> Rows:
    """Fine-tune the evaluated encoder once per label fraction (:mod:`hfssl.evaluation.finetune`)."""
    encoder = context.encoder_path()
    splits = context.image_splits()
    base = _finetune_output(context, settings, encoder)
    rows = []
    for fraction in settings.label_fractions:
        folder = ("all-labels" if fraction >= 1.0 else f"fraction-{fraction:g}") + (
            "" if settings.init == "pretrained" else f"-{settings.init}")
        result = finetune(encoder, splits.train, splits.test, splits.label_names, context.num_classes, settings,
                          base / folder, fraction, context.data_config if isinstance(context.data_config, ImageDataConfig)
                          else None)
        row = {"features": "model", **result.row, "model_dir": str(result.model_dir)}
        context.record_predictions(probe_label("finetune", row), result.predictions, result.labels)
        rows.append(row)
    return rows


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
register_protocol(feature_protocol(
    "few-shot", few_shot_score, FewShotSettings,
    "N-way K-shot episodes from the test split: nearest-centroid and logistic regression, mean accuracy +- 95 % CI"))
register_protocol(Protocol(
    "finetune", (IMAGE_FEATURES,), run_finetune, FineTuneSettings,
    "fine-tune the encoder + a classification head with the engine (all parameters), top-1/top-5 on the test split"))
register_protocol(Protocol(
    "word-similarity", (WORD_VECTORS,), run_word_similarity, None,
    "Spearman on WordSim-353 and SimLex-999 (word2vec models and files)"))
register_protocol(Protocol(
    "analogy", (WORD_VECTORS,), run_analogy, AnalogySettings,
    "3CosAdd accuracy on the Google analogy set, top 30,000 words (word2vec)"))


# ---- masked language models (text) ------------------------------------------------------------------


@dataclass
class MLMAccuracySettings:
    """``eval.mlm-accuracy``: held-out rows of ``max_seq_length`` tokens (default: the run's
    ``model.max_seq_length``, else 128), BERT's masking with fixed seeds."""

    max_seq_length: int | None = None
    max_documents: int | None = None
    batch_size: int = 32
    seed: int = 0
    mask_probability: float = 0.15
    mask_replace_probability: float = 0.8
    random_replace_probability: float = 0.1

    def __post_init__(self) -> None:
        if self.max_seq_length is not None and self.max_seq_length < 8:
            raise RecipeError(f"eval.mlm-accuracy.max_seq_length must be >= 8, got {self.max_seq_length!r}")
        if self.max_documents is not None and self.max_documents < 1:
            raise RecipeError(f"eval.mlm-accuracy.max_documents must be >= 1 (or null), got {self.max_documents!r}")
        if self.batch_size < 1:
            raise RecipeError(f"eval.mlm-accuracy.batch_size must be >= 1, got {self.batch_size!r}")
        if not 0.0 < self.mask_probability < 1.0:
            raise RecipeError(f"eval.mlm-accuracy.mask_probability must be in (0, 1), got {self.mask_probability!r}")
        if self.mask_replace_probability + self.random_replace_probability > 1.0 or min(
                self.mask_replace_probability, self.random_replace_probability) < 0:
            raise RecipeError("eval.mlm-accuracy: mask_replace_probability and random_replace_probability must be >= 0 "
                              "and sum to at most 1")


@dataclass
class TextLinearSettings:
    """``eval.text-linear``: labelled text sets, poolings, truncation, an optional stratified cap, the
    split and the probe's C grid. The defaults are DATA.md's protocol: every document (BBC News 2,225;
    Wikipedia 9,033), a stratified 70/30 split (seed 0), where TF-IDF + logistic regression scores
    98.4 % / 89.7 %."""

    datasets: tuple[str, ...] = ("builtin:bbc_news", "builtin:wikipedia_topics")
    pooling: tuple[str, ...] = ("mean", "cls")
    max_length: int = 128
    max_documents: int | None = None
    test_fraction: float = 0.3
    c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    validation_fraction: float = 0.1
    batch_size: int = 32

    def __post_init__(self) -> None:
        from hfssl.evaluation.text import CLASSIFICATION_SETS

        unknown = [name for name in self.datasets if name not in CLASSIFICATION_SETS]
        if not self.datasets or unknown:
            raise RecipeError(f"eval.text-linear.datasets must name some of {', '.join(CLASSIFICATION_SETS)}, got "
                              f"{list(self.datasets)!r}")
        if not self.pooling or any(value not in ("mean", "cls") for value in self.pooling):
            raise RecipeError(f"eval.text-linear.pooling must list mean and/or cls, got {list(self.pooling)!r}")
        if self.max_length < 8:
            raise RecipeError(f"eval.text-linear.max_length must be >= 8, got {self.max_length!r}")
        if self.max_documents is not None and self.max_documents < 20:
            raise RecipeError(f"eval.text-linear.max_documents must be >= 20 (or null for all), got {self.max_documents!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise RecipeError(f"eval.text-linear.test_fraction must be in (0, 1), got {self.test_fraction!r}")
        LinearSettings(self.c_grid, self.validation_fraction)  # the same checks as eval.linear


def run_mlm_accuracy(context: EvaluationContext, settings: MLMAccuracySettings) -> Rows:
    from hfssl.evaluation.text import masked_token_accuracy
    from hfssl.models.mlm.data import held_out_texts

    text_model = context.text_model()
    data = context.text_data()
    texts, split = held_out_texts(data, settings.max_documents)
    length = settings.max_seq_length or _trained_sequence_length(context) or 128
    result = masked_token_accuracy(text_model, texts, length, settings.batch_size, settings.seed,
                                   settings.mask_probability, settings.mask_replace_probability,
                                   settings.random_replace_probability)
    return [{"dataset": data.source, "split": split, "max_seq_length": length,
             "mlm_head": "trained" if text_model.head_trained else "untrained", **result}]


def _trained_sequence_length(context: EvaluationContext) -> int | None:
    """The training row length of an hfssl MLM model (in memory or by its recipe), else ``None``."""
    if context.model is not None:
        return getattr(context.model.config, "max_seq_length", None)
    recipe = context.recipe
    if recipe is None and context.model_path is not None:  # the encoder/ folder of a run: the run's recipe
        from hfssl.evaluation.context import run_recipe_path
        from hfssl.recipe import load_recipe

        recipe_file = run_recipe_path(context.model_path)
        recipe = load_recipe(recipe_file) if recipe_file is not None else None
    if recipe is not None and recipe.method == "mlm":
        return recipe.model.get("max_seq_length")
    return None


def run_text_linear(context: EvaluationContext, settings: TextLinearSettings) -> Rows:
    from hfssl.evaluation.text import text_classification_rows

    return text_classification_rows(context.text_model(), tuple(settings.datasets), tuple(settings.pooling),
                                    settings.max_length, settings.max_documents, settings.test_fraction,
                                    tuple(settings.c_grid), settings.validation_fraction, settings.batch_size,
                                    context.eval_config.baselines)


register_protocol(Protocol(
    "mlm-accuracy", (MASKED_LM,), run_mlm_accuracy, MLMAccuracySettings,
    "held-out masked-token accuracy and perplexity with fixed BERT masks (masked language models)"))
register_protocol(Protocol(
    "text-linear", (TEXT_FEATURES,), run_text_linear, TextLinearSettings,
    "linear probe on frozen text features (mean and CLS pooling): BBC News and Wikipedia topics, with TF-IDF"))

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
        if not self.templates or any(_template_fields(template) != [""] for template in self.templates):
            bad = [template for template in self.templates if _template_fields(template) != [""]]
            raise RecipeError(f"eval.zero-shot.templates must be prompts that each hold '{{}}' exactly once for the "
                              f"class name (write a literal brace as '{{{{' or '}}}}'), got {(bad or self.templates)!r}")
        if self.class_names is not None and (not self.class_names or not all(str(n).strip() for n in self.class_names)):
            raise RecipeError(f"eval.zero-shot.class_names must be non-empty names, got {self.class_names!r}")


def _template_fields(template: str) -> list[str] | None:
    """The replacement fields of a ``str.format`` template (``""`` for ``{}``), ``None`` when it does not parse."""
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError:  # a single '{' or '}'
        return None


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
