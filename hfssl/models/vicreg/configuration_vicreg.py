"""VICReg configuration (Bardes, Ponce, LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range


class VICRegConfig(HfsslVisionConfig):
    """Configuration of :class:`VICRegForPreTraining`.

    Defaults follow sec. 4.1 of the paper: ResNet-50, a 3-layer expander 8192-8192-8192 (BatchNorm
    and ReLU after the two hidden layers), coefficients lambda = mu = 25 and nu = 1, gamma = 1,
    epsilon = 1e-4.

    Args:
        projection_hidden_dim: width of the expander's hidden layers.
        projection_dim: size of the embeddings on which the loss is computed.
        projection_num_layers: number of Linear layers in the expander.
        invariance_coefficient: lambda, weight of the invariance (MSE) term.
        variance_coefficient: mu, weight of the variance (std hinge) term.
        covariance_coefficient: nu, weight of the covariance term.
        variance_target: gamma, the target standard deviation of each dimension.
        variance_epsilon: epsilon added to the variance before the square root.
        gather_distributed: compute variance and covariance over every process's batch (global batch).
    """

    model_type = "hfssl_vicreg"
    default_backbone = "resnet50"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        projection_hidden_dim: int = 8192,
        projection_dim: int = 8192,
        projection_num_layers: int = 3,
        invariance_coefficient: float = 25.0,
        variance_coefficient: float = 25.0,
        covariance_coefficient: float = 1.0,
        variance_target: float = 1.0,
        variance_epsilon: float = 1e-4,
        gather_distributed: bool = True,
        **kwargs: Any,
    ) -> None:
        check_range("projection_hidden_dim", projection_hidden_dim, 1, 1 << 16)
        check_range("projection_dim", projection_dim, 1, 1 << 16)
        check_range("projection_num_layers", projection_num_layers, 1, 8)
        check_range("invariance_coefficient", invariance_coefficient, 0.0, 1e4)
        check_range("variance_coefficient", variance_coefficient, 0.0, 1e4)
        check_range("covariance_coefficient", covariance_coefficient, 0.0, 1e4)
        check_range("variance_target", variance_target, 0.0, 100.0, low_open=True)
        check_range("variance_epsilon", variance_epsilon, 0.0, 1.0, low_open=True)
        self.projection_hidden_dim = projection_hidden_dim
        self.projection_dim = projection_dim
        self.projection_num_layers = projection_num_layers
        self.invariance_coefficient = invariance_coefficient
        self.variance_coefficient = variance_coefficient
        self.covariance_coefficient = covariance_coefficient
        self.variance_target = variance_target
        self.variance_epsilon = variance_epsilon
        self.gather_distributed = gather_distributed
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
