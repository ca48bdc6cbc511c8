"""``distill``: SimCLRv2's phase 3, a fine-tuned teacher distilled into a student classifier on the unlabelled
train images (:mod:`hfssl.evaluation.distill`)."""

from __future__ import annotations

from pathlib import Path

from hfssl.data.config import ImageDataConfig
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.distill import DistillSettings, distill
from hfssl.evaluation.pictures import CONFUSION_PICTURE
from hfssl.evaluation.protocols import IMAGE, Protocol, ProtocolCard, Rows, probe_label, register_protocol
from hfssl.registry import IMAGE_FEATURES, is_hfssl_run


def _distill_output(context: EvaluationContext, settings: DistillSettings, encoder: str) -> Path:
    if settings.output_dir is not None:
        return Path(settings.output_dir)
    folder = f"fraction-{settings.label_fraction:g}" + ("-small" if settings.student_config else
                                                        "" if settings.init == "pretrained" else f"-{settings.init}")
    if context.run_dir is not None:
        return Path(context.run_dir) / "distill" / folder
    path = Path(str(context.model_path))
    if is_hfssl_run(path):
        return path / "distill" / folder
    if path.name == "encoder" and is_hfssl_run(path.parent):
        return path.parent / "distill" / folder
    return Path.cwd() / f"distill-{Path(encoder).name or 'model'}" / folder


def run_distill(context: EvaluationContext, settings: DistillSettings) -> Rows:
    """Distil ``eval.distill.teacher`` into a student starting from the evaluated encoder (or its architecture, or
    ``student_config``), scored on the test split (:mod:`hfssl.evaluation.distill`)."""
    encoder = context.encoder_path()
    splits = context.image_splits()
    result = distill(encoder, splits.train, splits.test, splits.label_names, context.num_classes, settings,
                     _distill_output(context, settings, encoder),
                     context.data_config if isinstance(context.data_config, ImageDataConfig) else None)
    row = {"features": "model", **result.row, "model_dir": str(result.model_dir)}
    context.record_predictions(probe_label("distill", row), result.predictions, result.labels)
    return [row]


DISTILL = register_protocol(Protocol(
    "distill", (IMAGE_FEATURES,), run_distill, DistillSettings,
    "SimCLRv2 distillation: a fine-tuned teacher (eval.distill.teacher) labels every train image with "
    "temperature-softened probabilities and a student classifier (this encoder, its architecture from scratch, or "
    "student_config) learns them, optionally mixed with the labelled loss; top-1/top-5 on the test split",
    data=IMAGE, held_out=True, pictures=(CONFUSION_PICTURE,),
    card=ProtocolCard("Distilled", "**Distillation** (SimCLRv2 phase 3): a fine-tuned teacher's temperature-softened "
                      "predictions on the unlabelled training images teach a student classifier (a plain transformers "
                      "`AutoModelForImageClassification`), at the stated fraction of labels; the teacher's own test top-1 "
                      "is in `eval_results.json` (`teacher_top1`).", tuned=True,
                      setting_labels={"label_fraction": "labels", "temperature": "T", "labelled_weight": "a"},
                      bookkeeping=("num_unlabelled", "teacher", "student_parameters", "teacher_parameters",
                                   "teacher_top1", "batch_size", "lr", "max_steps", "epochs"))))
