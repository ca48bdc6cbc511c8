"""Projection and prediction heads. Heads compose (a list of layers), they do not inherit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class NormalizedLinear(nn.Module):
    """A bias-free Linear whose weight rows are divided by their L2 norm in every forward pass.

    This is ``torch.nn.utils.parametrizations.weight_norm(nn.Linear(..., bias=False))`` with the
    magnitude ``g`` fixed to 1 (DINO's ``norm_last_layer=True``, Caron et al. 2021, appendix): the
    direction ``v`` is the only parameter, so the state dict holds one plain ``weight`` tensor that
    any loader understands. Shapes: ``(batch, input_dim) -> (batch, output_dim)``.
    """

    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(output_dim, input_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Linear's default initialisation

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, F.normalize(self.weight, dim=1))


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021, sec. 3.1 and appendix): an MLP of ``num_layers``
    Linear layers (GELU, optional BatchNorm) to a ``bottleneck_dim`` bottleneck, L2 normalisation,
    then a weight-normalised Linear to ``output_dim`` prototypes (K; 65,536 in the paper).

    Args:
        input_dim: backbone feature size.
        hidden_dim: MLP width (2048 in the paper).
        bottleneck_dim: size of the normalised bottleneck (256).
        output_dim: K, the number of prototypes (the softmax size).
        num_layers: Linear layers before the bottleneck (3), at least 1.
        batch_norm: BatchNorm1d after each hidden Linear (off for ViTs in the paper, on for ResNets).
        normalize_last_layer: fix the last layer's weight norm to 1 (:class:`NormalizedLinear`,
            the paper's default, which stabilises training); otherwise a plain bias-free Linear.
    Shapes: ``(batch, input_dim) -> (batch, output_dim)``.
    """

    def __init__(self, input_dim: int, hidden_dim: int, bottleneck_dim: int, output_dim: int, num_layers: int = 3,
                 batch_norm: bool = False, normalize_last_layer: bool = True) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        width = input_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(width, hidden_dim))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            width = hidden_dim
        layers.append(nn.Linear(width, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.last_layer = (NormalizedLinear(bottleneck_dim, output_dim) if normalize_last_layer
                           else nn.Linear(bottleneck_dim, output_dim, bias=False))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        bottleneck = F.normalize(self.mlp(features), dim=-1)  # (batch, bottleneck_dim), unit rows
        return self.last_layer(bottleneck)  # (batch, output_dim)
