"""Publishing: model cards and pushes to the Hugging Face Hub.

* :mod:`hfssl.hub.card`: ``write_model_card`` renders ``DIR/README.md`` from the family templates in
  ``hfssl/model_cards``, with the parts every card shares (metadata, model-index, evaluation and
  recipe tables, validation).
* :mod:`hfssl.hub.run`: reading a run directory for its card (``read_run``, ``describe_data_source``).
* :mod:`hfssl.hub.cards`: each card family's part, one module per family (``FAMILY_CARDS``).
* :mod:`hfssl.hub.push`: ``push_run`` / ``push_model_to_hub`` upload a run in one commit per repo.
* :mod:`hfssl.hub.cli`: the ``hfssl push`` and ``hfssl card`` commands.
* :mod:`hfssl.hub.checkpoints`: checkpoints mirrored to a Hub branch (``hfssl train --hub-checkpoints``) and
  downloaded for ``--resume-from hf://OWNER/NAME[@BRANCH]``.

Importing this package installs :func:`~hfssl.hub.push.push_model_to_hub` as the implementation of
``HfsslPreTrainedModel.push_to_hub`` (models never import the hub layer).
"""

from hfssl.hub.card import build_card, validate_card, write_model_card
from hfssl.hub.push import HubPushError, InvalidRepoIdError, MissingTokenError, push_model_to_hub, push_run
from hfssl.modeling_utils import set_push_handler

set_push_handler(push_model_to_hub)

__all__ = [
    "build_card",
    "validate_card",
    "write_model_card",
    "push_run",
    "push_model_to_hub",
    "HubPushError",
    "MissingTokenError",
    "InvalidRepoIdError",
]
