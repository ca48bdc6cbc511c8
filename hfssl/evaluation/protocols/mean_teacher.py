"""``mean-teacher``: Mean Teacher (Tarvainen & Valpola 2017), EMA-teacher consistency on a label fraction and the
unlabelled training images (:mod:`hfssl.evaluation.semi_supervised`)."""

from __future__ import annotations

from hfssl.evaluation.protocols.semi_supervised_card import semi_supervised_protocol
from hfssl.evaluation.semi_supervised import MeanTeacherSettings

MEAN_TEACHER = semi_supervised_protocol(
    MeanTeacherSettings,
    "Mean Teacher", "**Mean Teacher** (Tarvainen & Valpola 2017): the classifier's class probabilities are pulled "
    "towards those of its exponential moving average on another view of every image (sigmoid ramp-up); the EMA "
    "teacher is scored")
