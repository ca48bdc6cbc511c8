"""``layer-linear``: the linear probe on the pooled features of every stage / block of the encoder.

The seeds evaluate RotNet (Gidaris et al. 2018, sec. 3.1) and Jigsaw with a classifier on the feature
map of every convolutional block, to show where in the network the transferable features are; DINO and
MAE probe every ViT block the same way. Layer ``i`` (1-based, the stem / patch embeddings left out) is
the pooled output of stage ``i`` (ResNet, ConvNeXt: the spatial average of its feature map) or block
``i`` (ViT: after the final LayerNorm, pooled as the model pools): the ``layer-features`` capability
(:func:`hfssl.backbones.pool_hidden_states`), from an hfssl model's ``get_layer_embeddings`` or any
transformers vision model through ``FeatureExtractor.embed_layers``. The last layer is the encoder's
output, so its row is the ``linear`` protocol's.

Each layer gets exactly the linear probe of ``linear`` (:func:`hfssl.evaluation.protocols.linear.linear_score`:
standardised features, C chosen on a validation split, the torch or scikit-learn solver, label
fractions): the settings are ``linear``'s, read from ``eval.layer-linear``, plus ``layers`` to probe a
subset. The card shows the rows as a layer x accuracy table of their own (:attr:`ProtocolCard.table`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.protocols import (
    IMAGE,
    CardTable,
    Protocol,
    ProtocolCard,
    Rows,
    register_protocol,
)
from hfssl.evaluation.protocols.linear import LinearSettings, linear_score
from hfssl.registry import LAYER_FEATURES
from hfssl.settings import RecipeError


@dataclass
class LayerLinearSettings(LinearSettings):
    """``eval.layer-linear``: the linear probe's settings (``c_grid``, ``validation_fraction``, ``solver``,
    ``label_fractions``, ``seed``; see ``eval.linear``) for every layer, and ``layers``: the 1-based
    stage / block indices to probe (default: all of them)."""

    layers: tuple[int, ...] | None = None
    section: ClassVar[str] = "eval.layer-linear"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layers is not None and (not self.layers or any(index < 1 for index in self.layers)):
            raise RecipeError(f"eval.layer-linear.layers must list 1-based layer indices (1 = the first stage or "
                              f"block), or be left out for all, got {self.layers!r}")


def run_layer_linear(context: EvaluationContext, settings: LayerLinearSettings) -> Rows:
    """One linear probe per layer (and label fraction); rows carry ``layer`` (1-based) and ``width``."""
    layers = context.layer_features()
    chosen = list(settings.layers) if settings.layers is not None else list(range(1, len(layers) + 1))
    too_deep = [index for index in chosen if index > len(layers)]
    if too_deep:
        raise ValueError(f"eval.layer-linear.layers asks for layer(s) {too_deep}, but {context.describe_model()} has "
                         f"{len(layers)} stages / blocks; give indices from 1 to {len(layers)}, or leave layers out")
    rows: Rows = []
    for index in chosen:
        features = layers[index - 1]
        for row in linear_score(*features.as_tuple(), settings, context.num_classes):
            row.pop("predictions", None)
            rows.append({"features": "model", "layer": index, "width": int(features.train_features.shape[1]), **row})
    return rows


def layer_table(rows: list[dict[str, Any]]) -> CardTable:
    """The card's layer x accuracy table: one row per layer (and label fraction), in layer order."""
    fractions = any(row.get("label_fraction") is not None for row in rows)
    top5 = any(isinstance(row.get("top5"), (int, float)) for row in rows)
    columns = ("Layer", "width") + (("label fraction",) if fractions else ()) + ("C", "top-1 accuracy") + (
        ("top-5 accuracy",) if top5 else ())
    ordered = sorted(rows, key=lambda row: (-(row.get("label_fraction") or 1.0), row["layer"]))
    deepest = max(row["layer"] for row in rows)
    cells = []
    for row in ordered:
        line = [f"{row['layer']}" + (" (output)" if row["layer"] == deepest else ""), str(row["width"])]
        if fractions:
            line.append(_number(row.get("label_fraction", 1.0)))
        line += [_number(row.get("C")), _percent(row.get("top1"))]
        if top5:
            line.append(_percent(row.get("top5")))
        cells.append(tuple(line))
    return CardTable("Linear probe per layer", columns, tuple(cells),
                     "Layer i: the pooled output of stage / block i of the encoder (the stem left out); accuracies "
                     "in % on the test split; the regularisation C chosen per layer as for the linear probe.")


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else "-"


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) else "-"


LAYER_LINEAR = register_protocol(Protocol(
    "layer-linear", (LAYER_FEATURES,), run_layer_linear, LayerLinearSettings,
    "the linear probe on the pooled features of every stage / block of the encoder (a layer x accuracy table)",
    data=IMAGE, held_out=True,
    card=ProtocolCard("Linear probe per layer",
                      "**Linear probe per layer**: the linear probe (logistic regression on standardised frozen "
                      "features, C chosen on a held-out part of the training split) on the pooled output of "
                      "every stage (convolutional encoders) or block (ViT) of the encoder, as RotNet and Jigsaw "
                      "are evaluated per convolutional block.", chosen=("C",), table=layer_table)))
