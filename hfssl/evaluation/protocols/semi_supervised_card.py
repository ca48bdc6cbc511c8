"""The shared registration of the semi-supervised protocols (``pseudo-label``, ``mean-teacher``, ``fixmatch``):
each module of this package declares its own with :func:`semi_supervised_protocol`; this module registers none."""

from __future__ import annotations

from typing import Any

from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.pictures import CONFUSION_PICTURE
from hfssl.evaluation.protocols import IMAGE, Protocol, ProtocolCard, Rows, probe_label, register_protocol
from hfssl.evaluation.protocols.finetune import trained_output
from hfssl.evaluation.semi_supervised import SemiSupervisedSettings, run_label_fractions
from hfssl.registry import IMAGE_FEATURES

_SHARED = ("a classifier (the evaluated encoder, or its architecture from scratch with init=random, plus a linear "
           "head) trained on a class-balanced seeded share of the training labels and all training images, as a "
           "plain transformers `AutoModelForImageClassification`; top-1/top-5 on the test split")


def semi_supervised_protocol(settings: type[SemiSupervisedSettings], title: str, explanation: str) -> Protocol:
    """Register the semi-supervised protocol of ``settings.algorithm`` (its name) with its card entry."""
    name = settings.algorithm

    def run(context: EvaluationContext, options: Any) -> Rows:
        encoder = context.encoder_path()
        rows = []
        for result in run_label_fractions(context, options, encoder,
                                          trained_output(context, options.output_dir, encoder, name)):
            row = {"features": "model", **result.row, "model_dir": str(result.model_dir)}
            context.record_predictions(probe_label(name, row), result.predictions, result.labels)
            rows.append(row)
        return rows

    return register_protocol(Protocol(
        name, (IMAGE_FEATURES,), run, settings, f"{title}: {_SHARED}", data=IMAGE, held_out=True,
        pictures=(CONFUSION_PICTURE,),
        card=ProtocolCard(title, f"{explanation}: {_SHARED}.", bookkeeping=("num_unlabelled",), tuned=True)))
