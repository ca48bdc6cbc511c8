"""Projection and prediction heads. Heads compose (a list of layers), they do not inherit."""

from __future__ import annotations

from torch import nn


class MLPHead(nn.Sequential):
    """``Linear -> [BatchNorm] -> ReLU`` repeated, then a last ``Linear`` (optionally with BatchNorm).

    Args:
        input_dim: size of the incoming features.
        hidden_dim: width of the hidden layers.
        output_dim: size of the output.
        num_layers: number of Linear layers (>= 1). SimCLR uses 2 (Chen et al. 2020, sec. 2.1),
            BYOL's projector and predictor use 2 (Grill et al. 2020, sec. 3.3).
        batch_norm: BatchNorm1d after every hidden Linear.
        last_batch_norm: BatchNorm1d (without affine) after the last Linear (SimCLR v2 / MoCo v3 style).
        last_bias: whether the last Linear has a bias; default: unless ``last_batch_norm`` (VICReg's
            and Barlow Twins' expanders have none: their losses remove a shared shift exactly).
    Shapes: ``(batch, input_dim) -> (batch, output_dim)``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int = 2,
        batch_norm: bool = True,
        last_batch_norm: bool = False,
        last_bias: bool | None = None,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        width = input_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(width, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            width = hidden_dim
        layers.append(nn.Linear(width, output_dim, bias=not last_batch_norm if last_bias is None else last_bias))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(output_dim, affine=False))
        super().__init__(*layers)
