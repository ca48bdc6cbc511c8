"""``fixmatch``: FixMatch (Sohn et al. 2020), weak-view pseudo-labels above tau trained on RandAugment + Cutout
views, on a label fraction and the unlabelled training images (:mod:`hfssl.evaluation.semi_supervised`)."""

from __future__ import annotations

from hfssl.evaluation.protocols.semi_supervised_card import semi_supervised_protocol
from hfssl.evaluation.semi_supervised import FixMatchSettings

FIXMATCH = semi_supervised_protocol(
    FixMatchSettings,
    "FixMatch", "**FixMatch** (Sohn et al. 2020): the prediction on a weak view (flip + crop) of an unlabelled "
    "image, when its confidence reaches tau, is the target of a strong view (RandAugment + Cutout)")
