"""Evaluation of frozen representations: kNN, linear probes, collapse monitors, eval_results.json.

* :mod:`~hfssl.evaluation.features`: load an hfssl run / exported encoder / transformers vision
  model and extract frozen features of a prepared image set.
* :mod:`~hfssl.evaluation.knn`: weighted kNN (Wu et al. 2018, as in DINO).
* :mod:`~hfssl.evaluation.linear_probe`: logistic regression on standardised frozen features.
* :mod:`~hfssl.evaluation.monitor`: embedding std and effective rank (collapse).
* :mod:`~hfssl.evaluation.runner`: the protocol registry, ``evaluate_path`` and the results file.
* :mod:`~hfssl.evaluation.metrics`: local ``evaluate`` metric modules (top-k accuracy), offline.

Names are re-exported lazily (PEP 562) so that the training loop's import of the collapse monitor
does not import scikit-learn and ``evaluate``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY_EXPORTS = {
    "FeatureExtractor": "hfssl.evaluation.features",
    "load_feature_extractor": "hfssl.evaluation.features",
    "extract_features": "hfssl.evaluation.features",
    "extract_features_with": "hfssl.evaluation.features",
    "knn_classify": "hfssl.evaluation.knn",
    "knn_evaluate": "hfssl.evaluation.knn",
    "linear_probe": "hfssl.evaluation.linear_probe",
    "collapse_metrics": "hfssl.evaluation.monitor",
    "effective_rank": "hfssl.evaluation.monitor",
    "EvalProtocol": "hfssl.evaluation.runner",
    "PROTOCOLS": "hfssl.evaluation.runner",
    "register_protocol": "hfssl.evaluation.runner",
    "get_protocol": "hfssl.evaluation.runner",
    "available_protocols": "hfssl.evaluation.runner",
    "evaluate_features": "hfssl.evaluation.runner",
    "evaluate_path": "hfssl.evaluation.runner",
    "raw_pixel_features": "hfssl.evaluation.runner",
    "merge_eval_results": "hfssl.evaluation.runner",
    "write_eval_results": "hfssl.evaluation.runner",
    "load_metric": "hfssl.evaluation.metrics",
    "top_k_accuracies": "hfssl.evaluation.metrics",
}

__all__ = list(_LAZY_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _LAZY_EXPORTS:
        value = getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hfssl.evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
