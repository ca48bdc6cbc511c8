"""``linear``: logistic regression on standardised frozen features, C chosen on a validation split, at label fractions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hfssl.evaluation.linear_probe import SOLVERS, linear_probe
from hfssl.evaluation.pictures import CONFUSION_PICTURE
from hfssl.evaluation.protocols import ProtocolCard, Rows, feature_protocol, register_protocol
from hfssl.evaluation.subsets import balanced_subset, check_fraction
from hfssl.settings import RecipeError


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
    #: The recipe section these settings are read from, named in errors (protocols reusing them set their own).
    section: ClassVar[str] = "eval.linear"

    def __post_init__(self) -> None:
        if not self.c_grid or any(value <= 0 for value in self.c_grid):
            raise RecipeError(f"{self.section}.c_grid must be a list of positive values, got {self.c_grid!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise RecipeError(f"{self.section}.validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if self.solver not in SOLVERS:
            raise RecipeError(f"{self.section}.solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        check_fractions(self.label_fractions, f"{self.section}.label_fractions")


def check_fractions(fractions: tuple[float, ...], where: str) -> None:
    if not fractions:
        raise RecipeError(f"{where} must list at least one label fraction (1.0: all labels)")
    for fraction in fractions:
        try:
            check_fraction(fraction, where)
        except ValueError as error:
            raise RecipeError(str(error)) from None


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


LINEAR = register_protocol(feature_protocol(
    "linear", linear_score, LinearSettings,
    "logistic regression on standardised frozen features, C chosen on a validation split",
    ProtocolCard("Linear probe", "**Linear probe**: logistic regression on standardised frozen features, its "
                 "regularisation C chosen on a held-out part of the training split.", chosen=("C",)),
    pictures=(CONFUSION_PICTURE,)))
