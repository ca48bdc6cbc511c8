"""BYOL configuration (Grill et al. 2020, "Bootstrap Your Own Latent")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range


class BYOLConfig(HfsslVisionConfig):
    """Configuration of :class:`BYOLForPreTraining`.

    Defaults follow sec. 3.3 of the paper: ResNet-50, projector and predictor MLPs 4096 -> 256,
    base teacher momentum 0.996 raised to 1 with a cosine schedule over training.

    Args:
        projection_hidden_dim / projection_dim: the projector MLP (online and target).
        prediction_hidden_dim: the predictor MLP's hidden width (output is ``projection_dim``).
        teacher_momentum: base EMA rate tau_base in [0, 1].
    """

    model_type = "hfssl_byol"
    default_backbone = "resnet50"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        projection_hidden_dim: int = 4096,
        projection_dim: int = 256,
        prediction_hidden_dim: int = 4096,
        teacher_momentum: float = 0.996,
        **kwargs: Any,
    ) -> None:
        check_range("teacher_momentum", teacher_momentum, 0.0, 1.0)
        check_range("projection_dim", projection_dim, 1, 1 << 16)
        self.projection_hidden_dim = projection_hidden_dim
        self.projection_dim = projection_dim
        self.prediction_hidden_dim = prediction_hidden_dim
        self.teacher_momentum = teacher_momentum
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
