"""Linear probe: multinomial logistic regression on frozen, standardised features.

The evaluation of SimCLR (Chen et al. 2020, appendix B.6) and BYOL (Grill et al. 2020, appendix
C.1) on small data sets: L2-regularised logistic regression with scikit-learn's L-BFGS solver,
features standardised with a ``StandardScaler`` fit on the training rows, the inverse
regularisation strength C chosen on a stratified validation split carved from the training set,
then a refit on the whole training set with the chosen C. Deterministic: the split and the solver
use a fixed ``random_state``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from hfssl.evaluation.metrics import top_k_accuracies

logger = logging.getLogger(__name__)


def _fit(features: np.ndarray, labels: np.ndarray, c: float, max_iter: int, random_state: int) -> Pipeline:
    """Standardise (fit on these rows only) then fit logistic regression with inverse strength ``c``."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=random_state))
    with warnings.catch_warnings():
        # Reported once through the log below, with the C it concerns, instead of a bare warning.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels)
    if int(np.max(model[-1].n_iter_)) >= max_iter:
        logger.warning("linear probe: L-BFGS did not converge in %d iterations at C=%g; the accuracy may be slightly low", max_iter, c)
    return model


def _class_scores(model: Pipeline, features: np.ndarray, num_classes: int) -> np.ndarray:
    """``(N, num_classes)`` probabilities; classes absent from the training rows get probability 0."""
    probabilities = model.predict_proba(features)  # columns follow model.classes_
    scores = np.zeros((features.shape[0], num_classes), dtype=np.float64)
    scores[:, model.classes_] = probabilities
    return scores


def _validation_split(
    features: np.ndarray, labels: np.ndarray, validation_fraction: float, random_state: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        return train_test_split(features, labels, test_size=validation_fraction, random_state=random_state, stratify=labels)
    except ValueError as error:
        # A class with a single row, or fewer validation rows than classes, cannot be stratified.
        logger.warning("linear probe: no stratified validation split (%s); using a random split", error)
        return train_test_split(features, labels, test_size=validation_fraction, random_state=random_state)


def select_c(
    features: np.ndarray,
    labels: np.ndarray,
    c_grid: Sequence[float],
    validation_fraction: float = 0.1,
    max_iter: int = 1000,
    random_state: int = 0,
) -> tuple[float, dict[float, float]]:
    """Choose C by top-1 accuracy on a stratified validation split of the training rows.

    Returns:
        the best C (the smallest one among ties: the strongest regularisation) and the validation
        top-1 accuracy of every C.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1) to choose C from {list(c_grid)}, got {validation_fraction}")
    fit_x, val_x, fit_y, val_y = _validation_split(features, labels, validation_fraction, random_state)
    accuracy = {}
    for c in sorted(c_grid):
        model = _fit(fit_x, fit_y, c, max_iter, random_state)
        accuracy[c] = float((model.predict(val_x) == val_y).mean())
        logger.info("linear probe: C=%g validation top-1 %.4f (%d fit / %d validation rows)", c, accuracy[c], len(fit_y), len(val_y))
    best = max(accuracy, key=lambda c: (accuracy[c], -c))
    return best, accuracy


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    c_grid: Sequence[float] = (0.001, 0.01, 0.1, 1.0, 10.0),
    validation_fraction: float = 0.1,
    num_classes: int | None = None,
    max_iter: int = 1000,
    random_state: int = 0,
) -> dict[str, float]:
    """Fit a linear probe on frozen features and report test accuracy.

    Args:
        train_features: ``(N_train, D)`` frozen features of the labelled training set.
        train_labels: ``(N_train,)`` class indices.
        test_features: ``(N_test, D)`` features of the test set.
        test_labels: ``(N_test,)`` class indices.
        c_grid: candidate inverse regularisation strengths; with one value no validation split is made.
        validation_fraction: share of the training rows held out (stratified) to choose C.
        num_classes: C for the score matrix; defaults to ``max(label) + 1``.
        max_iter: L-BFGS iterations.
        random_state: seed of the validation split and of the solver.

    Returns:
        ``{"C", "top1", "top5"}`` (the eval_results.json row); the validation accuracy of every C
        is logged (see :func:`select_c`).
    """
    train_x = np.asarray(train_features, dtype=np.float64)
    test_x = np.asarray(test_features, dtype=np.float64)
    train_y = np.asarray(train_labels, dtype=np.int64)
    test_y = np.asarray(test_labels, dtype=np.int64)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {train_x.shape} and {test_x.shape}")
    if train_y.shape != (len(train_x),) or test_y.shape != (len(test_x),):
        raise ValueError(f"labels must match the feature rows: {train_y.shape} for {len(train_x)} train rows, {test_y.shape} for {len(test_x)} test rows")
    if not c_grid:
        raise ValueError("c_grid is empty: give at least one inverse regularisation strength C (eval.linear_c_grid)")
    if len(np.unique(train_y)) < 2:
        raise ValueError(f"the linear probe needs at least two classes in the training labels, got {np.unique(train_y).tolist()}")
    num_classes = int(max(train_y.max(), test_y.max())) + 1 if num_classes is None else num_classes
    for name, labels in (("train_labels", train_y), ("test_labels", test_y)):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"{name} must be class indices in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]")
    # With a single C there is nothing to choose, so no rows are held out.
    best = float(c_grid[0]) if len(c_grid) == 1 else select_c(train_x, train_y, c_grid, validation_fraction, max_iter, random_state)[0]
    model = _fit(train_x, train_y, best, max_iter, random_state)
    accuracies = top_k_accuracies(_class_scores(model, test_x, num_classes), test_y)
    logger.info("linear probe: C=%g test top-1 %.4f top-5 %.4f", best, accuracies["top1"], accuracies["top5"])
    return {"C": best, **accuracies}
