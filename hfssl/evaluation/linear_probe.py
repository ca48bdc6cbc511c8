"""Linear probe: multinomial logistic regression on frozen, standardised features.

The evaluation of SimCLR (Chen et al. 2020, appendix B.6) and BYOL (Grill et al. 2020, appendix
C.1) on small data sets: L2-regularised logistic regression, features standardised with the mean
and standard deviation of the training rows, the inverse regularisation strength C chosen on a
stratified validation split carved from the training set, then a refit on the whole training set
with the chosen C. Deterministic: the split and the solvers use a fixed ``random_state``.

Two solvers minimise the same objective, scikit-learn's ``C * sum_i CE_i + ||W||^2 / 2`` (the
intercept not penalised):

* ``solver="torch"`` (the default): full-batch L-BFGS with a strong-Wolfe line search in torch on
  the features' device (the GPU when there is one), in float32, each C warm-started from the
  solution of the next stronger one and the final refit from the chosen C's validation fit. On 2
  CPU cores it is several times faster than scikit-learn (BENCHMARKS.md, "Evaluation protocols").
* ``solver="sklearn"``: scikit-learn's ``LogisticRegression`` (L-BFGS, float64) in a ``Pipeline``
  with a ``StandardScaler``, the reference implementation.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

from hfssl.evaluation.metrics import top_k_accuracies

SOLVERS = ("torch", "sklearn")

logger = logging.getLogger(__name__)


def _fit(features: np.ndarray, labels: np.ndarray, c: float, max_iter: int, random_state: int) -> Pipeline:
    """Standardise (fit on these rows only) then fit logistic regression with inverse strength ``c``."""
    # scikit-learn is imported here, not with the module: it adds ~1 s to every hfssl process (`import hfssl`).
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

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


def validation_split(
    features: np.ndarray, labels: np.ndarray, validation_fraction: float, random_state: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(fit_x, val_x, fit_y, val_y)``: a seeded validation split of the training rows, stratified by class when
    every class can be (the one the probes choose their C / epoch on)."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(features, labels, test_size=validation_fraction, random_state=random_state, stratify=labels)
    except ValueError as error:
        # A class with a single row, or fewer validation rows than classes, cannot be stratified.
        logger.warning("probe: no stratified validation split (%s); using a random split", error)
        return train_test_split(features, labels, test_size=validation_fraction, random_state=random_state)


# ---- the torch solver ---------------------------------------------------------------------------


@dataclass
class SoftmaxRegression:
    """A fitted multinomial logistic regression on standardised features (the torch solver).

    Attributes:
        mean / scale: ``(D,)`` standardisation of the training rows (a constant column keeps scale 1).
        weight: ``(D, K)`` and bias ``(K,)``: ``logits = ((x - mean) / scale) @ weight + bias``.
        iterations: L-BFGS iterations the fit took.
    """

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    iterations: int

    def logits(self, features: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(features, dtype=torch.float32, device=self.weight.device)
        return ((x - self.mean) / self.scale) @ self.weight + self.bias

    def predict(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.logits(features).argmax(dim=1).cpu().numpy()

    def probabilities(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        return torch.softmax(self.logits(features), dim=1).double().cpu().numpy()


def standardisation(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, scale)`` of ``(N, D)`` rows as scikit-learn's ``StandardScaler`` (population std; 0 -> 1)."""
    mean = features.mean(dim=0)
    scale = features.std(dim=0, unbiased=False)
    return mean, torch.where(scale > 0, scale, torch.ones_like(scale))


def fit_softmax_regression(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    c: float,
    max_iter: int = 1000,
    tolerance: float = 1e-5,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimise scikit-learn's objective ``C * sum_i CE_i + ||W||^2 / 2`` by full-batch L-BFGS.

    The objective is divided by ``C * N`` (the same minimiser), so that ``tolerance`` bounds the
    largest gradient entry of the mean cross-entropy, as scikit-learn's ``tol`` does.

    Args:
        features: ``(N, D)`` float32 standardised rows on the solving device.
        labels: ``(N,)`` int64 class indices in ``[0, num_classes)``.
        c: inverse regularisation strength (> 0).
        init: ``(weight (D, K), bias (K,))`` to start from (a warm start), else zeros.

    Returns:
        ``(weight, bias, iterations)``.
    """
    count, width = features.shape
    if init is None:
        weight = torch.zeros(width, num_classes, dtype=features.dtype, device=features.device)
        bias = torch.zeros(num_classes, dtype=features.dtype, device=features.device)
    else:
        weight, bias = (tensor.detach().clone() for tensor in init)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    penalty = 1.0 / (2.0 * c * count)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=tolerance, tolerance_change=1e-10, max_eval=2 * max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(features @ weight + bias, labels) + penalty * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    iterations = int(optimizer.state[optimizer._params[0]].get("n_iter", 0))
    closure()  # the gradient at the solution: converged when its largest entry is within the tolerance
    largest = max(float(weight.grad.abs().max()), float(bias.grad.abs().max()))
    # float32 gradients stop improving near 1e-5: L-BFGS then ends on a flat loss, which is converged.
    if iterations >= max_iter or largest > 100 * tolerance:
        logger.warning("linear probe: torch L-BFGS did not converge in %d iterations at C=%g (largest gradient entry "
                       "%.2g); the accuracy may be slightly low", iterations, c, largest)
    return weight.detach(), bias.detach(), iterations


class _TorchProbe:
    """The torch solver over one set of rows: standardised once, each C warm-started."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, num_classes: int, device: torch.device,
                 max_iter: int, tolerance: float) -> None:
        x = torch.as_tensor(np.asarray(features, dtype=np.float32), device=device)
        self.mean, self.scale = standardisation(x)
        self.x = (x - self.mean) / self.scale
        self.y = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=device)
        self.num_classes, self.max_iter, self.tolerance = num_classes, max_iter, tolerance

    def fit(self, c: float, init: tuple[torch.Tensor, torch.Tensor] | None = None) -> SoftmaxRegression:
        weight, bias, iterations = fit_softmax_regression(self.x, self.y, self.num_classes, c, self.max_iter,
                                                          self.tolerance, init)
        return SoftmaxRegression(self.mean, self.scale, weight, bias, iterations)


def probe_device(device: torch.device | str | None) -> torch.device:
    """The device a probe runs on: the given one, else CUDA when available, else the CPU."""
    return torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_probe_inputs(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                       num_classes: int | None, probe: str) -> int:
    """Refuse features and labels a probe on frozen features cannot use (``probe`` names it in the message);
    return the number of classes (``max(label) + 1`` when ``num_classes`` is ``None``)."""
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {train_x.shape} and {test_x.shape}")
    if train_y.shape != (len(train_x),) or test_y.shape != (len(test_x),):
        raise ValueError(f"labels must match the feature rows: {train_y.shape} for {len(train_x)} train rows, {test_y.shape} for {len(test_x)} test rows")
    if len(np.unique(train_y)) < 2:
        raise ValueError(f"the {probe} needs at least two classes in the training labels, got {np.unique(train_y).tolist()}")
    num_classes = int(max(train_y.max(), test_y.max())) + 1 if num_classes is None else num_classes
    for name, labels in (("train_labels", train_y), ("test_labels", test_y)):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"{name} must be class indices in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]")
    return num_classes


def _check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"linear probe solver must be one of {', '.join(SOLVERS)}, got {solver!r} (eval.linear.solver)")


def select_c(
    features: np.ndarray,
    labels: np.ndarray,
    c_grid: Sequence[float],
    validation_fraction: float = 0.1,
    max_iter: int = 1000,
    random_state: int = 0,
    solver: str = "torch",
    device: torch.device | str | None = None,
    num_classes: int | None = None,
    tolerance: float = 1e-5,
) -> tuple[float, dict[float, float]]:
    """Choose C by top-1 accuracy on a stratified validation split of the training rows.

    Returns:
        the best C (the smallest one among ties: the strongest regularisation) and the validation
        top-1 accuracy of every C.
    """
    best, accuracy, _ = _select_c(features, labels, c_grid, validation_fraction, max_iter, random_state, solver,
                                  probe_device(device), num_classes, tolerance)
    return best, accuracy


def _select_c(features: np.ndarray, labels: np.ndarray, c_grid: Sequence[float], validation_fraction: float,
              max_iter: int, random_state: int, solver: str, device: torch.device, num_classes: int | None,
              tolerance: float) -> tuple[float, dict[float, float], SoftmaxRegression | None]:
    """:func:`select_c`, also returning the torch solver's fit at the best C (the refit's warm start)."""
    _check_solver(solver)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1) to choose C from {list(c_grid)}, got {validation_fraction}")
    fit_x, val_x, fit_y, val_y = validation_split(features, labels, validation_fraction, random_state)
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    accuracy: dict[float, float] = {}
    fits: dict[float, SoftmaxRegression] = {}
    probe = _TorchProbe(fit_x, fit_y, num_classes, device, max_iter, tolerance) if solver == "torch" else None
    previous = None
    for c in sorted(c_grid):  # strongest regularisation first: each fit warm-starts the next
        if probe is not None:
            fitted = probe.fit(c, previous)
            previous, fits[c] = (fitted.weight, fitted.bias), fitted
            predicted = fitted.predict(val_x)
        else:
            predicted = _fit(fit_x, fit_y, c, max_iter, random_state).predict(val_x)
        accuracy[c] = float((predicted == val_y).mean())
        logger.info("linear probe (%s): C=%g validation top-1 %.4f (%d fit / %d validation rows)", solver, c,
                    accuracy[c], len(fit_y), len(val_y))
    best = max(accuracy, key=lambda c: (accuracy[c], -c))
    return best, accuracy, fits.get(best)


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
    solver: str = "torch",
    device: torch.device | str | None = None,
    tolerance: float = 1e-5,
    return_predictions: bool = False,
    return_probabilities: bool = False,
) -> dict[str, Any]:
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
        solver: ``"torch"`` (full-batch L-BFGS on ``device``) or ``"sklearn"`` (see the module docstring).
        device: where the torch solver runs (default: CUDA when available, else the CPU).
        tolerance: the torch solver's bound on the largest gradient entry.
        return_predictions: add ``"predictions"``, the ``(N_test,)`` predicted classes (for a
            confusion matrix); not part of the eval_results.json row.
        return_probabilities: add ``"probabilities"``, the ``(N_test, K)`` class probabilities (for calibration);
            not part of the eval_results.json row either.

    Returns:
        ``{"C", "top1", "top5"}`` (the eval_results.json row); the validation accuracy of every C
        is logged (see :func:`select_c`).
    """
    _check_solver(solver)
    train_x = np.asarray(train_features, dtype=np.float64)
    test_x = np.asarray(test_features, dtype=np.float64)
    train_y = np.asarray(train_labels, dtype=np.int64)
    test_y = np.asarray(test_labels, dtype=np.int64)
    if not c_grid:
        raise ValueError("c_grid is empty: give at least one inverse regularisation strength C (eval.linear_c_grid)")
    num_classes = check_probe_inputs(train_x, train_y, test_x, test_y, num_classes, "linear probe")
    device = probe_device(device)
    # With a single C there is nothing to choose, so no rows are held out.
    chosen = None
    if len(c_grid) == 1:
        best = float(c_grid[0])
    else:
        best, _, chosen = _select_c(train_x, train_y, c_grid, validation_fraction, max_iter, random_state, solver,
                                    device, num_classes, tolerance)
    if solver == "torch":
        probe = _TorchProbe(train_x, train_y, num_classes, device, max_iter, tolerance)
        fitted = probe.fit(best, (chosen.weight, chosen.bias) if chosen is not None else None)
        scores = fitted.probabilities(test_x)
    else:
        scores = _class_scores(_fit(train_x, train_y, best, max_iter, random_state), test_x, num_classes)
    accuracies = top_k_accuracies(scores, test_y)
    logger.info("linear probe (%s): C=%g test top-1 %.4f top-5 %.4f", solver, best, accuracies["top1"], accuracies["top5"])
    row: dict[str, Any] = {"C": best, **accuracies}
    if return_predictions:
        row["predictions"] = scores.argmax(axis=1)
    if return_probabilities:
        row["probabilities"] = scores
    return row
