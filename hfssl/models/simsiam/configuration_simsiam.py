"""SimSiam configuration (Chen & He 2021, "Exploring Simple Siamese Representation Learning")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range


class SimSiamConfig(HfsslVisionConfig):
    """Configuration of :class:`SimSiamForPreTraining`.

    Defaults follow sec. 3 ("Baseline settings") of the paper for ImageNet: ResNet-50, a 3-layer
    projection MLP 2048-2048-2048 with BatchNorm on every layer (the output BatchNorm without affine
    parameters) and a 2-layer bottleneck prediction MLP 2048 -> 512 -> 2048 (BatchNorm on its hidden
    layer only). The paper's CIFAR-10 variant uses a 2-layer projector (``projection_num_layers=2``).

    Args:
        projection_hidden_dim: width of the projector's hidden layers.
        projection_dim: output size of the projector and of the predictor (z and p).
        projection_num_layers: number of Linear layers in the projector.
        prediction_hidden_dim: the predictor's bottleneck width (paper: projection_dim / 4).
        stop_gradient: detach the other view's projection in the loss (eq. 3; the method). ``False`` is the
            paper's control of sec. 4.1: gradients flow through both branches and the representation
            collapses (``recipes/simsiam/fashion_mnist_no_stop_gradient.yaml``).
    """

    model_type = "hfssl_simsiam"
    default_backbone = "resnet50"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        projection_hidden_dim: int = 2048,
        projection_dim: int = 2048,
        projection_num_layers: int = 3,
        prediction_hidden_dim: int = 512,
        stop_gradient: bool = True,
        **kwargs: Any,
    ) -> None:
        check_range("projection_hidden_dim", projection_hidden_dim, 1, 1 << 16)
        check_range("projection_dim", projection_dim, 1, 1 << 16)
        check_range("projection_num_layers", projection_num_layers, 1, 8)
        check_range("prediction_hidden_dim", prediction_hidden_dim, 1, 1 << 16)
        self.projection_hidden_dim = projection_hidden_dim
        self.projection_dim = projection_dim
        self.projection_num_layers = projection_num_layers
        if not isinstance(stop_gradient, bool):
            raise ValueError(f"stop_gradient must be true (the method) or false (the collapse control of sec. 4.1), "
                             f"got {stop_gradient!r}")
        self.prediction_hidden_dim = prediction_hidden_dim
        self.stop_gradient = stop_gradient
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
