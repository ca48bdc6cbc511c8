"""Barlow Twins configuration (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range


class BarlowTwinsConfig(HfsslVisionConfig):
    """Configuration of :class:`BarlowTwinsForPreTraining`.

    Defaults follow sec. 2 ("Implementation details") and sec. 4 of the paper: ResNet-50, a 3-layer
    projector 8192-8192-8192 (BatchNorm and ReLU after the two hidden layers), lambda = 5e-3.

    Args:
        projection_hidden_dim: width of the projector's hidden layers.
        projection_dim: size of the embeddings whose cross-correlation is computed.
        projection_num_layers: number of Linear layers in the projector.
        off_diagonal_weight: lambda, the weight of the redundancy-reduction (off-diagonal) term.
        gather_distributed: compute the cross-correlation over every process's batch (global batch).
    """

    model_type = "hfssl_barlow_twins"
    default_backbone = "resnet50"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        projection_hidden_dim: int = 8192,
        projection_dim: int = 8192,
        projection_num_layers: int = 3,
        off_diagonal_weight: float = 5e-3,
        gather_distributed: bool = True,
        **kwargs: Any,
    ) -> None:
        check_range("projection_hidden_dim", projection_hidden_dim, 1, 1 << 16)
        check_range("projection_dim", projection_dim, 1, 1 << 16)
        check_range("projection_num_layers", projection_num_layers, 1, 8)
        check_range("off_diagonal_weight", off_diagonal_weight, 0.0, 1.0)
        self.projection_hidden_dim = projection_hidden_dim
        self.projection_dim = projection_dim
        self.projection_num_layers = projection_num_layers
        self.off_diagonal_weight = off_diagonal_weight
        self.gather_distributed = gather_distributed
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
