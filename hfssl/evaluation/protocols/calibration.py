"""``calibration``: how well the linear probe's probabilities on frozen features match its accuracy.

The probe is the ``linear`` protocol's (logistic regression on standardised features, C chosen on a validation
split, at label fractions); its test probabilities are scored by :mod:`hfssl.evaluation.calibration`: expected and
maximum calibration error over confidence bins, negative log-likelihood, Brier score, top-1 and mean confidence.
Each probe's reliability diagram is a card picture (``images/reliability_<probe>.png``). The raw-pixel baseline
gets the same rows when ``eval.baselines`` is set.

The pictures are shared: a protocol that scores another classifier's probabilities (``finetune``) keeps its bins
with :func:`keep_reliability` under a key of its own and draws them with :func:`reliability_draw`, into the same
declared picture (:data:`RELIABILITY_PICTURE`), its ``subject`` naming the classifier in the caption.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from hfssl.evaluation.calibration import DEFAULT_BINS, ReliabilityBins, calibration_scores, reliability_bins
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.linear_probe import linear_probe
from hfssl.evaluation.protocols import IMAGE, TOP1, Metric, Protocol, ProtocolCard, Rows, probe_label, register_protocol
from hfssl.evaluation.protocols.linear import LinearSettings
from hfssl.evaluation.subsets import balanced_subset
from hfssl.plots import Picture, register_picture, save_reliability_diagram
from hfssl.registry import IMAGE_FEATURES
from hfssl.settings import RecipeError

ECE = Metric("ece", "expected_calibration_error", "ECE", True)
NLL = Metric("nll", "negative_log_likelihood", "NLL", False)
BRIER = Metric("brier", "brier_score", "Brier score", False)
RELIABILITY_PREFIX = "reliability_"
#: Where the protocol keeps its reliability bins for its pictures (:meth:`EvaluationContext.keep`).
KEPT = "calibration"


@dataclass
class CalibrationSettings(LinearSettings):
    """``eval.calibration``: the linear probe's settings (``c_grid``, ``validation_fraction``, ``solver``,
    ``label_fractions``, ``seed``, as ``eval.linear``) and the number of confidence ``bins`` (15, Guo et al.)."""

    bins: int = DEFAULT_BINS
    section: ClassVar[str] = "eval.calibration"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.bins, int) or isinstance(self.bins, bool) or not 1 <= self.bins <= 100:
            raise RecipeError(f"{self.section}.bins must be an integer from 1 to 100, got {self.bins!r}")


def calibration_rows(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                     settings: CalibrationSettings, num_classes: int) -> list[tuple[dict[str, Any], Any]]:
    """One linear probe per label fraction: its row (calibration scores, C, the fraction) and its reliability bins."""
    results = []
    for fraction in settings.label_fractions:
        rows_used = balanced_subset(train_y, fraction, settings.seed) if fraction < 1.0 else slice(None)
        probe = linear_probe(train_f[rows_used], train_y[rows_used], test_f, test_y, settings.c_grid,
                             settings.validation_fraction, num_classes, solver=settings.solver,
                             return_probabilities=True)
        probabilities = probe["probabilities"]
        extra = {"label_fraction": fraction, "num_labelled": int(len(train_y[rows_used]))} if fraction < 1.0 else {}
        row = {**extra, "probe": "linear", "C": probe["C"], "bins": settings.bins,
               **calibration_scores(probabilities, test_y, settings.bins)}
        results.append((row, reliability_bins(probabilities, test_y, settings.bins)))
    return results


def calibration_score(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                      settings: CalibrationSettings, num_classes: int) -> Rows:
    """The rows of :func:`calibration_rows` (the protocol's ``score`` on any features)."""
    return [row for row, _ in calibration_rows(train_f, train_y, test_f, test_y, settings, num_classes)]


def _run(context: EvaluationContext, settings: CalibrationSettings) -> Rows:
    features = context.image_features()
    rows = []
    for row, table in calibration_rows(*features.as_tuple(), settings, context.num_classes):
        rows.append({"features": "model", **row})
        keep_reliability(context, KEPT, probe_label("calibration", row), "linear probe", table, row["ece"])
    if context.eval_config.baselines:
        rows += [{"features": "raw_pixels", **row}
                 for row in calibration_score(*context.raw_pixel_features().as_tuple(), settings, context.num_classes)]
    return rows


def keep_reliability(context: EvaluationContext, key: str, label: str, subject: str, table: ReliabilityBins,
                     ece: float) -> None:
    """Keep one classifier's reliability bins under ``key`` for :func:`reliability_draw`: ``label`` names its file
    (``reliability_<label>.png``, file-name safe, unique), ``subject`` says in the caption what classifier it is."""
    context.keep(key, (label, subject, table, ece))


def reliability_draw(key: str) -> Callable[[EvaluationContext, Path], list[Path]]:
    """A protocol's ``draw`` hook: the reliability diagram of every classifier kept under ``key``."""

    def draw(context: EvaluationContext, images_dir: Path) -> list[Path]:
        return [save_reliability_diagram(table.edges, table.count, table.confidence, table.accuracy, ece,
                                         images_dir / f"{RELIABILITY_PREFIX}{label}.png", title=label, subject=subject)
                for label, subject, table, ece in context.kept(key)]

    return draw


def _probe(description: dict[str, str], name: str) -> str:
    return description.get("reliability", name.removeprefix(RELIABILITY_PREFIX).removesuffix(".png")).replace("_", " ")


def _subject(description: dict[str, str]) -> str:
    return description.get("subject", "linear probe").replace("_", " ")


def _caption(description: dict[str, str], name: str) -> str:
    ece = description.get("ece")
    value = f" (ECE {100 * float(ece):.1f} %)" if ece else ""
    subject = _subject(description)
    return (f"Reliability diagram of the {subject} ({_probe(description, name)}) on the test split{value}: the test "
            f"images grouped by the {subject}'s top-1 probability; each bar is the accuracy in its group, the diagonal "
            "perfect calibration, the shaded part the gap to the group's mean confidence (above the bar: over-confident; "
            "inside it: under-confident).")


RELIABILITY_PICTURE = register_picture(Picture(
    f"{RELIABILITY_PREFIX}*.png",
    lambda description, name: f"reliability diagram of the {_subject(description)} ({_probe(description, name)})",
    _caption, order=56))

CALIBRATION = register_protocol(Protocol(
    "calibration", (IMAGE_FEATURES,), _run, CalibrationSettings,
    "calibration of a linear probe on frozen features: ECE, NLL and Brier score, with a reliability diagram",
    calibration_score, data=IMAGE, held_out=True,
    card=ProtocolCard("Calibration (linear probe)",
                      "**Calibration**: the linear probe's test probabilities against its accuracy: expected "
                      "calibration error (ECE, the confidence-accuracy gap over 15 confidence bins; lower is better), "
                      "negative log-likelihood and Brier score (lower is better).",
                      metrics=(ECE, NLL, BRIER, TOP1), setting_labels={"bins": "bins"}, chosen=("C",),
                      bookkeeping=("probe", "mce", "mean_confidence")),
    pictures=(RELIABILITY_PICTURE,), draw=reliability_draw(KEPT)))
