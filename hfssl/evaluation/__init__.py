"""Evaluation of representations: protocols, the context they draw on, one dispatcher, eval_results.json.

* :mod:`~hfssl.evaluation.protocols`: the protocol registry (kNN, linear probe, word similarity,
  analogies), what each protocol needs and its settings.
* :mod:`~hfssl.evaluation.context`: :class:`EvaluationContext`, features / word vectors / settings
  loaded on demand, for an in-memory model or any path.
* :mod:`~hfssl.evaluation.runner`: :func:`evaluate` (end of training and ``hfssl eval``), the
  check run before training (:func:`check_eval_config`), and the results file.
* :mod:`~hfssl.evaluation.features`: frozen features of a labelled image set from any image model.
* :mod:`~hfssl.evaluation.embed`: ``hfssl embed``, a model's features of a whole data set written to a file.
* :mod:`~hfssl.evaluation.knn`, :mod:`~hfssl.evaluation.linear_probe`,
  :mod:`~hfssl.evaluation.word_vectors`: the maths of each protocol.
* :mod:`~hfssl.evaluation.online`: online kNN during training (a trainer callback).
* :mod:`~hfssl.evaluation.metrics`: local ``evaluate`` metric modules (top-k accuracy), offline.
"""

from hfssl.evaluation.context import EvaluationContext, FeatureSet
from hfssl.evaluation.features import FeatureExtractor, extract_features, extract_features_with, load_feature_extractor
from hfssl.evaluation.knn import knn_classify, knn_evaluate
from hfssl.evaluation.linear_probe import linear_probe
from hfssl.evaluation.metrics import load_metric, top_k_accuracies
from hfssl.evaluation.online import OnlineKNN
from hfssl.evaluation.protocols import PROTOCOLS, Protocol, available_protocols, get_protocol, register_protocol
from hfssl.evaluation.runner import (
    check_eval_config,
    check_recipe,
    evaluate,
    evaluate_features,
    evaluate_path,
    merge_eval_results,
    write_eval_results,
)

__all__ = [
    "EvaluationContext", "FeatureSet", "FeatureExtractor", "extract_features", "extract_features_with",
    "load_feature_extractor", "knn_classify", "knn_evaluate", "linear_probe", "load_metric", "top_k_accuracies",
    "OnlineKNN", "PROTOCOLS", "Protocol", "available_protocols", "get_protocol", "register_protocol",
    "check_eval_config", "check_recipe", "evaluate", "evaluate_features", "evaluate_path", "merge_eval_results",
    "write_eval_results",
]
