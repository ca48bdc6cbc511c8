"""Weighted k-nearest-neighbour classification of frozen features.

The protocol of Wu et al. 2018 ("Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", sec. 3.4) as used by DINO (Caron et al. 2021, appendix): features are
L2-normalised, the k training features with the highest cosine similarity to a test feature vote
for their labels with weight ``exp(similarity / T)`` (T = 0.07), and the class scores are the sums
of the votes. Everything runs in torch, chunked over test rows so that only a
``(chunk, num_train)`` similarity block is ever in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hfssl.evaluation.metrics import top_k_accuracies

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor


def _as_tensor(values: ArrayLike, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))
    return tensor.to(device=device, dtype=dtype)


def _check_labels(labels: torch.Tensor, num_classes: int, name: str) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name} must be class indices in [0, {num_classes}), got values in [{int(labels.min())}, {int(labels.max())}]; "
            "unlabelled rows (label -1) cannot be used for kNN evaluation"
        )


def _prepare(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    num_classes: int | None,
    temperature: float,
    device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Convert and check the inputs shared by :func:`knn_classify` and :func:`knn_evaluate`."""
    train = _as_tensor(train_features, torch.float32, device)
    test = _as_tensor(test_features, torch.float32, device)
    labels = _as_tensor(train_labels, torch.int64, device)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(
            f"train_features and test_features must be (N, D) with the same D, got {tuple(train.shape)} and {tuple(test.shape)}"
        )
    if train.shape[0] == 0:
        raise ValueError("train_features is empty: kNN needs at least one labelled training row")
    if labels.shape != (train.shape[0],):
        raise ValueError(f"train_labels must have shape ({train.shape[0]},), got {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    _check_labels(labels, num_classes, "train_labels")
    return train, test, labels, num_classes


def _neighbours(
    train_features: torch.Tensor, test_features: torch.Tensor, k: int, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities ``(N_test, k)`` and indices ``(N_test, k)`` of the k nearest training rows."""
    train = F.normalize(train_features, dim=1)
    similarities, indices = [], []
    for start in range(0, test_features.shape[0], chunk_size):
        test = F.normalize(test_features[start : start + chunk_size], dim=1)
        block = test @ train.T  # (chunk, N_train) cosine similarities
        values, index = block.topk(k, dim=1, largest=True, sorted=True)
        similarities.append(values)
        indices.append(index)
    return torch.cat(similarities), torch.cat(indices)


def _vote(similarities: torch.Tensor, neighbour_labels: torch.Tensor, temperature: float, num_classes: int) -> torch.Tensor:
    """Class scores ``(N, C)``: each neighbour adds ``exp(sim / T)`` to its class."""
    weights = (similarities / temperature).exp()  # (N, k)
    scores = torch.zeros(similarities.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
    return scores.scatter_add_(1, neighbour_labels, weights)


def knn_classify(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 256,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Weighted kNN class scores (Wu et al. 2018; DINO's ``knn_classifier``).

    Args:
        train_features: ``(N_train, D)`` features of the labelled training set.
        train_labels: ``(N_train,)`` class indices in ``[0, num_classes)``.
        test_features: ``(N_test, D)`` features to classify.
        k: number of neighbours, ``1 <= k <= N_train``.
        temperature: T of the vote weights ``exp(cosine similarity / T)``.
        num_classes: C; defaults to ``max(train_labels) + 1``.
        chunk_size: test rows per similarity block (memory is ``chunk_size * N_train`` floats).
        device: where the similarities are computed.

    Returns:
        ``(N_test, C)`` float32 class scores on ``device``; the predicted class is the arg-max.
    """
    train, test, labels, num_classes = _prepare(train_features, train_labels, test_features, num_classes, temperature, device)
    if not 1 <= k <= train.shape[0]:
        raise ValueError(f"k must be in [1, {train.shape[0]}] (the number of training rows), got {k}")
    similarities, indices = _neighbours(train, test, k, chunk_size)
    return _vote(similarities, labels[indices], temperature, num_classes)


def knn_evaluate(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    ks: Sequence[int] = (20, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 256,
    device: torch.device | str = "cpu",
) -> list[dict[str, float | int]]:
    """Top-1/top-5 accuracy of weighted kNN for each k.

    The neighbours are searched once for the largest k; smaller k use the first columns of the
    sorted neighbour list, which is exactly what a separate search would return. A k larger than
    the training set is clipped to its size (logged).

    Returns:
        one ``{"k", "temperature", "top1", "top5"}`` dict per k, in the order given; ``k`` is the
        value actually used.
    """
    targets = _as_tensor(test_labels, torch.int64, "cpu")
    train, test, labels, inferred_classes = _prepare(train_features, train_labels, test_features, num_classes, temperature, device)
    if num_classes is None and targets.numel():
        num_classes = max(inferred_classes, int(targets.max()) + 1)
    num_classes = inferred_classes if num_classes is None else num_classes
    _check_labels(targets, num_classes, "test_labels")
    if targets.shape != (test.shape[0],):
        raise ValueError(f"test_labels must have shape ({test.shape[0]},), got {tuple(targets.shape)}")
    if not ks or min(ks) < 1:
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    used = []
    for k in ks:
        if k > train.shape[0]:
            logger.info("kNN: k=%d is larger than the %d training rows; using k=%d", k, train.shape[0], train.shape[0])
        used.append(min(k, train.shape[0]))
    similarities, indices = _neighbours(train, test, max(used), chunk_size)
    neighbour_labels = labels[indices]
    results = []
    for k in used:
        scores = _vote(similarities[:, :k], neighbour_labels[:, :k], temperature, num_classes)
        results.append({"k": k, "temperature": temperature, **top_k_accuracies(scores, targets)})
    return results


def knn_evaluate_similarities(
    similarities: ArrayLike,
    train_labels: ArrayLike,
    test_labels: ArrayLike,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
) -> list[dict[str, float | int]]:
    """:func:`knn_evaluate` from a precomputed ``(N_test, N_train)`` cosine-similarity matrix (features that
    are sparse and too wide to densify, such as TF-IDF): the same neighbours, votes and accuracies.

    Returns:
        one ``{"k", "temperature", "top1", "top5"}`` dict per k (clipped to ``N_train``), in the order given.
    """
    scores_all = _as_tensor(similarities, torch.float32, "cpu")
    labels = _as_tensor(train_labels, torch.int64, "cpu")
    targets = _as_tensor(test_labels, torch.int64, "cpu")
    _check_labels(labels, num_classes, "train_labels")
    _check_labels(targets, num_classes, "test_labels")
    if scores_all.shape != (targets.shape[0], labels.shape[0]):
        raise ValueError(f"similarities must have shape ({targets.shape[0]}, {labels.shape[0]}), got "
                         f"{tuple(scores_all.shape)}")
    used = [min(k, labels.shape[0]) for k in ks]
    similarities_k, indices = scores_all.topk(max(used), dim=1)
    results = []
    for k in used:
        scores = _vote(similarities_k[:, :k], labels[indices[:, :k]], temperature, num_classes)
        results.append({"k": k, "temperature": temperature, **top_k_accuracies(scores, targets)})
    return results
