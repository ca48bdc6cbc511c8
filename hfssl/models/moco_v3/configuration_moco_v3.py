"""MoCo v3 configuration (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range


#: Backbone types whose predictor ends without BatchNorm by default (the official ``MoCo_ResNet``).
CONVOLUTIONAL_BACKBONES = ("resnet", "convnext", "convnextv2", "regnet", "efficientnet", "mobilenet_v2", "bit")


class MoCoV3Config(HfsslVisionConfig):
    """Configuration of :class:`MoCoV3ForPreTraining`.

    Defaults follow the paper's ViT setting (sec. 3, sec. 4.2, appendix): ViT-B/16; a 3-layer
    projection MLP (4096 hidden, 256 out, BatchNorm in every layer, the last without affine) and a
    2-layer prediction MLP (4096 hidden, ending like the projector for a ViT); temperature 0.2;
    momentum 0.99 raised to 1 with a cosine schedule; a frozen random patch projection.

    Args:
        projection_hidden_dim / projection_dim / projection_num_layers: the projection MLP (query and
            momentum encoders). The paper's ResNet-50 setting uses 2 layers.
        prediction_hidden_dim / prediction_num_layers: the prediction MLP (query side only).
        prediction_last_batch_norm: whether the prediction MLP ends with a BatchNorm without affine
            parameters, like the projector. ``None`` (default) follows the official code
            (facebookresearch/moco-v3 ``builder.py``): yes for a ViT (``MoCo_ViT``), no for a
            convolutional backbone (``MoCo_ResNet``; :data:`CONVOLUTIONAL_BACKBONES`). Every Linear of
            both MLPs is bias-free either way, as there.
        temperature: tau, in (0, 10] (paper: 0.2 for ViT, 1.0 for ResNet-50).
        teacher_momentum: base momentum m in [0, 1], raised to 1 with a half cosine over training.
        freeze_patch_projection: keep the ViT patch projection at its random initialisation
            (requires_grad False from the start; sec. 4.2 "random patch projection"): the paper finds
            it removes the training instability ("dips" of accuracy) at no cost. Backbones without a
            patch projection (ResNet, ConvNeXt) are not affected.
        gather_distributed: use the keys of every process as negatives (the global batch).
    """

    model_type = "hfssl_moco_v3"
    default_backbone = "vit-base"
    # Declared as a config field: transformers v5 otherwise mistakes ``temperature`` for a text
    # generation parameter and refuses to save the config.
    temperature: float = 0.2

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        projection_hidden_dim: int = 4096,
        projection_dim: int = 256,
        projection_num_layers: int = 3,
        prediction_hidden_dim: int = 4096,
        prediction_num_layers: int = 2,
        prediction_last_batch_norm: bool | None = None,
        temperature: float = 0.2,
        teacher_momentum: float = 0.99,
        freeze_patch_projection: bool = True,
        gather_distributed: bool = True,
        **kwargs: Any,
    ) -> None:
        check_range("temperature", temperature, 0.0, 10.0, low_open=True)
        check_range("projection_dim", projection_dim, 1, 1 << 16)
        check_range("projection_num_layers", projection_num_layers, 1, 8)
        check_range("prediction_num_layers", prediction_num_layers, 1, 8)
        check_range("teacher_momentum", teacher_momentum, 0.0, 1.0)
        self.projection_hidden_dim = projection_hidden_dim
        self.projection_dim = projection_dim
        self.projection_num_layers = projection_num_layers
        self.prediction_hidden_dim = prediction_hidden_dim
        self.prediction_num_layers = prediction_num_layers
        self.prediction_last_batch_norm = prediction_last_batch_norm
        self.temperature = temperature
        self.teacher_momentum = teacher_momentum
        self.freeze_patch_projection = freeze_patch_projection
        self.gather_distributed = gather_distributed
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)

    @property
    def predictor_ends_with_batch_norm(self) -> bool:
        """:attr:`prediction_last_batch_norm`, or the official choice for the backbone when it is ``None``."""
        if self.prediction_last_batch_norm is not None:
            return bool(self.prediction_last_batch_norm)
        return self.backbone_config.model_type not in CONVOLUTIONAL_BACKBONES
