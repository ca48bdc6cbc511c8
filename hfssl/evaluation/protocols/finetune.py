"""``finetune``: the encoder + a classification head trained with the engine (:mod:`hfssl.evaluation.finetune`).

Its rows carry the fine-tuned classifier's test accuracy and calibration (ECE, MCE, NLL, Brier score: the
``calibration`` protocol's functions), and each classifier's reliability diagram is a card picture
(``images/reliability_finetune*.png``, drawn by the ``calibration`` protocol's :func:`reliability_draw`)."""

from __future__ import annotations

from pathlib import Path

from hfssl.data.config import ImageDataConfig
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.finetune import FineTuneSettings, finetune
from hfssl.evaluation.pictures import CONFUSION_PICTURE
from hfssl.evaluation.protocols import IMAGE, TOP1, TOP5, Protocol, ProtocolCard, Rows, probe_label, register_protocol
from hfssl.evaluation.protocols.calibration import (
    BRIER,
    ECE,
    NLL,
    RELIABILITY_PICTURE,
    keep_reliability,
    reliability_draw,
)
from hfssl.registry import IMAGE_FEATURES, is_hfssl_run

#: Where the protocol keeps its classifiers' reliability bins for its pictures (:meth:`EvaluationContext.keep`).
KEPT = "finetune-calibration"


def trained_output(context: EvaluationContext, output_dir: str | None, encoder: str, name: str = "finetune") -> Path:
    """Where a protocol that trains a classifier (``name``: finetune, fixmatch, ...) puts its runs: ``output_dir``
    when set, else ``RUN/<name>`` for an hfssl run (or its ``encoder/``), else ``./<name>-<encoder folder>``."""
    if output_dir is not None:
        return Path(output_dir)
    if context.run_dir is not None:
        return Path(context.run_dir) / name
    path = Path(str(context.model_path))
    if is_hfssl_run(path):
        return path / name
    if path.name == "encoder" and is_hfssl_run(path.parent):
        return path.parent / name
    return Path.cwd() / f"{name}-{Path(encoder).name or 'model'}"


def run_finetune(context: EvaluationContext, settings: FineTuneSettings) -> Rows:
    """Fine-tune the evaluated encoder once per label fraction (:mod:`hfssl.evaluation.finetune`)."""
    encoder = context.encoder_path()
    splits = context.image_splits()
    base = trained_output(context, settings.output_dir, encoder)
    rows = []
    for fraction in settings.label_fractions:
        folder = ("all-labels" if fraction >= 1.0 else f"fraction-{fraction:g}") + (
            "" if settings.init == "pretrained" else f"-{settings.init}") + (
            f"-freeze-{settings.freeze_stages}" if settings.freeze_stages else "")
        result = finetune(encoder, splits.train, splits.test, splits.label_names, context.num_classes, settings,
                          base / folder, fraction, context.data_config if isinstance(context.data_config, ImageDataConfig)
                          else None)
        row = {"features": "model", **result.row, "model_dir": str(result.model_dir)}
        label = probe_label("finetune", row)
        context.record_predictions(label, result.predictions, result.labels)
        keep_reliability(context, KEPT, label, "fine-tuned classifier", result.extras["reliability"], row["ece"])
        rows.append(row)
    return rows


FINETUNE = register_protocol(Protocol(
    "finetune", (IMAGE_FEATURES,), run_finetune, FineTuneSettings,
    "fine-tune the encoder + a classification head with the engine (all parameters, or all but the stem and the first "
    "freeze_stages stages / blocks), top-1/top-5 and calibration (ECE, NLL, Brier) on the test split",
    data=IMAGE, held_out=True, pictures=(CONFUSION_PICTURE, RELIABILITY_PICTURE), draw=reliability_draw(KEPT),
    card=ProtocolCard("Fine-tuned", "**Fine-tuning**: the encoder plus a linear classification head, every parameter "
                      "(or, with freeze_stages=N, all but the stem and the first N stages / blocks) "
                      "trained on the labelled training split (or a class-balanced share of it), as a plain transformers "
                      "`AutoModelForImageClassification`; its test probabilities are scored for calibration as the "
                      "linear probe's are (ECE over 15 confidence bins, NLL, Brier score; lower is better).",
                      metrics=(TOP1, TOP5, ECE, NLL, BRIER), bookkeeping=("mce", "mean_confidence", "bins"),
                      tuned=True)))
