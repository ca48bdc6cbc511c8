"""``pseudo-label``: Pseudo-Label (Lee 2013) with a confidence threshold on a label fraction and the unlabelled
training images (:mod:`hfssl.evaluation.semi_supervised`)."""

from __future__ import annotations

from hfssl.evaluation.protocols.semi_supervised_card import semi_supervised_protocol
from hfssl.evaluation.semi_supervised import PseudoLabelSettings

PSEUDO_LABEL = semi_supervised_protocol(
    PseudoLabelSettings,
    "Pseudo-Label", "**Pseudo-Label** (Lee 2013): the classifier's own confident predictions (probability >= "
    "threshold) on the unlabelled training images are trained as targets next to the labelled share")
