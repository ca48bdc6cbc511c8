"""Publishing: the plain-transformers encoder export, model cards, and pushes to the Hugging Face Hub.

* :mod:`hfssl.hub.export`: ``export_encoder`` writes ``DIR/encoder`` (backbone + image processor).
* :mod:`hfssl.hub.card`: ``write_model_card`` renders ``DIR/README.md`` from ``model_cards/``;
  ``save_projection_plot`` / ``save_reconstruction_plot`` draw the card's pictures.
* :mod:`hfssl.hub.push`: ``push_run`` / ``push_model_to_hub`` upload a run in one commit per repo.
* :mod:`hfssl.hub.cli`: the ``hfssl push`` and ``hfssl card`` commands.

Names are imported lazily so that ``import hfssl.hub.export`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "export_encoder": "hfssl.hub.export",
    "build_card": "hfssl.hub.card",
    "write_model_card": "hfssl.hub.card",
    "validate_card": "hfssl.hub.card",
    "save_projection_plot": "hfssl.hub.card",
    "save_reconstruction_plot": "hfssl.hub.card",
    "push_run": "hfssl.hub.push",
    "push_model_to_hub": "hfssl.hub.push",
    "HubPushError": "hfssl.hub.push",
    "MissingTokenError": "hfssl.hub.push",
    "InvalidRepoIdError": "hfssl.hub.push",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hfssl.hub' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
