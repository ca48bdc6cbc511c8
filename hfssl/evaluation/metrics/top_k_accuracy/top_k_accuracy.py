"""Top-k accuracy as a local `evaluate` metric module: predictions are class scores.

Loaded with ``evaluate.load(<path to this file>)`` (see :func:`hfssl.evaluation.metrics.load_metric`),
so it works offline: no Hub lookup happens for a local script. At ``top_k=1`` it has the
semantics of evaluate's ``accuracy`` metric (scikit-learn's ``accuracy_score`` on the arg-max
class, with ``normalize`` and ``sample_weight``).

Ties are broken towards the lower class index, as ``numpy.argmax`` does, so that the top-1 value
never depends on the sort algorithm: the true class is in the top k when fewer than k classes
score strictly higher or score equally with a lower index.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Top-k accuracy: the fraction of examples whose true class is among the k highest-scoring classes.
Predictions are per-class scores (logits, probabilities or kNN votes), one row per example.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): class scores, shape (n_samples, n_classes).
    references (`list` of `int`): true class indices in [0, n_classes).
    top_k (`int`): how many of the highest-scoring classes count as a hit. Defaults to 1.
    normalize (`bool`): return the fraction (True) or the (weighted) number of hits (False).
    sample_weight (`list` of `float`): per-example weights. Defaults to None.
Returns:
    top_k_accuracy (`float`): the fraction (or count) of hits.
Examples:
    >>> metric = evaluate.load("hfssl/evaluation/metrics/top_k_accuracy")
    >>> metric.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], references=[2, 0], top_k=2)
    {'top_k_accuracy': 1.0}
"""

_CITATION = """
@inproceedings{wu2018unsupervised,
  title={Unsupervised Feature Learning via Non-Parametric Instance Discrimination},
  author={Wu, Zhirong and Xiong, Yuanjun and Yu, Stella X. and Lin, Dahua},
  booktitle={CVPR}, year={2018}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, top_k=1, normalize=True, sample_weight=None):
        scores = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2:
            raise ValueError(f"predictions must be class scores of shape (n_samples, n_classes), got shape {scores.shape}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        num_classes = scores.shape[1]
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"references must be class indices in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]")
        rows = np.arange(len(labels))
        true_scores = scores[rows, labels][:, None]  # (n, 1)
        class_index = np.arange(num_classes)[None, :]  # (1, C)
        # Rank of the true class in a descending sort that breaks ties towards the lower index.
        rank = (scores > true_scores).sum(axis=1) + ((scores == true_scores) & (class_index < labels[:, None])).sum(axis=1)
        hits = (rank < top_k).astype(np.float64)
        weights = np.ones_like(hits) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        total = float((hits * weights).sum())
        if normalize:
            total = total / float(weights.sum())
        return {"top_k_accuracy": total}
