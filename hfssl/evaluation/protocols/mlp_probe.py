"""``mlp-probe``: non-linear top layers trained on frozen features, the epoch chosen on a validation split
(:mod:`hfssl.evaluation.mlp_probe`; RotNet's "train only the top layers" column), at label fractions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hfssl.evaluation.mlp_probe import mlp_probe
from hfssl.evaluation.pictures import CONFUSION_PICTURE
from hfssl.evaluation.protocols import ProtocolCard, Rows, feature_protocol, register_protocol
from hfssl.evaluation.protocols.linear import check_fractions
from hfssl.evaluation.subsets import balanced_subset
from hfssl.settings import RecipeError


@dataclass
class MLPProbeSettings:
    """``eval.mlp-probe``: the head (``depth`` hidden layers of ``hidden_dim`` units with batch norm, ReLU
    and ``dropout``), its training (AdamW, ``lr``, ``weight_decay``, cosine decay over at most ``epochs``,
    mini-batches of ``batch_size``, early stopping after ``patience`` epochs without a better validation
    top-1; ``null``: none), the validation split that picks the epoch, the label fractions (class-balanced
    seeded subsets, as ``eval.linear``) and ``seed`` (initialisation, shuffling, dropout, splits)."""

    hidden_dim: int = 512
    depth: int = 2
    dropout: float = 0.2
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    patience: int | None = 10
    validation_fraction: float = 0.1
    label_fractions: tuple[float, ...] = (1.0,)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden_dim < 1 or self.depth < 0:
            raise RecipeError(f"eval.mlp-probe: hidden_dim must be >= 1 and depth >= 0 (0: a linear head), got "
                              f"{self.hidden_dim!r} and {self.depth!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise RecipeError(f"eval.mlp-probe.dropout must be in [0, 1), got {self.dropout!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise RecipeError(f"eval.mlp-probe: epochs must be >= 1 and batch_size >= 2 (batch norm), got "
                              f"{self.epochs!r} and {self.batch_size!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise RecipeError(f"eval.mlp-probe: lr must be > 0 and weight_decay >= 0, got {self.lr!r} and {self.weight_decay!r}")
        if self.patience is not None and self.patience < 1:
            raise RecipeError(f"eval.mlp-probe.patience must be >= 1 epochs (or null: no early stopping), got {self.patience!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise RecipeError(f"eval.mlp-probe.validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        check_fractions(self.label_fractions, "eval.mlp-probe.label_fractions")


def mlp_score(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
              settings: MLPProbeSettings, num_classes: int) -> Rows:
    """One MLP probe per label fraction; rows carry the head and its training (the card labels them by width and
    depth), and, for a fraction below 1, ``label_fraction`` and ``num_labelled``."""
    rows = []
    for fraction in settings.label_fractions:
        used = balanced_subset(train_y, fraction, settings.seed) if fraction < 1.0 else slice(None)
        row = mlp_probe(train_f[used], train_y[used], test_f, test_y, num_classes, settings.hidden_dim, settings.depth,
                        settings.dropout, settings.epochs, settings.lr, settings.weight_decay, settings.batch_size,
                        settings.validation_fraction, settings.patience, settings.seed, return_predictions=True)
        extra = {"label_fraction": fraction, "num_labelled": int(len(train_y[used]))} if fraction < 1.0 else {}
        rows.append({**extra, "hidden_dim": settings.hidden_dim, "depth": settings.depth, "dropout": settings.dropout,
                     "max_epochs": settings.epochs, "lr": settings.lr, "weight_decay": settings.weight_decay, **row})
    return rows


MLP_PROBE = register_protocol(feature_protocol(
    "mlp-probe", mlp_score, MLPProbeSettings,
    "an MLP (hidden layers with batch norm, ReLU, dropout) trained on standardised frozen features, its epoch "
    "chosen on a validation split",
    ProtocolCard("MLP probe", "**MLP probe**: non-linear top layers (hidden layers of the width shown, batch norm, "
                 "ReLU, dropout) trained with AdamW on standardised frozen features, the weights of the epoch with the "
                 "best top-1 on a held-out part of the training split kept (RotNet's \"train only the top layers\").",
                 setting_labels={"hidden_dim": "width"},
                 bookkeeping=("best_epoch", "dropout", "max_epochs", "lr", "weight_decay")),
    pictures=(CONFUSION_PICTURE,)))
