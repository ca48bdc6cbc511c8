"""DINO configuration (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range


class DINOConfig(HfsslVisionConfig):
    """Configuration of :class:`DINOForPreTraining`.

    Defaults follow the paper (sec. 3.1, appendix and the official ``main_dino.py``) for ViT-S/16:
    a head of 3 Linear layers 2048 wide, GELU, no BatchNorm, a 256-d L2-normalised bottleneck and a
    weight-normalised last layer (norm fixed to 1) of K = 65,536 prototypes; student temperature 0.1;
    teacher temperature warmed up linearly from 0.04 to 0.07 over the first 30 % of training (30 of
    100 epochs) and then constant; centre momentum 0.9; teacher momentum cosine from 0.996 to 1;
    the last layer frozen for the first epoch. K = 65,536 is for ImageNet: small data sets need far
    fewer prototypes (the recipes for digits and Fashion-MNIST use 1,024), and the softmax over K
    dominates the head's cost.

    Args:
        head_hidden_dim / head_bottleneck_dim / head_output_dim: the DINO head's MLP width,
            bottleneck and number of prototypes K.
        head_num_layers: Linear layers before the bottleneck (>= 1).
        head_batch_norm: BatchNorm1d in the head's hidden layers (the paper uses it for ResNet-50).
        normalize_last_layer: fix the last layer's weight norm to 1 (``norm_last_layer``).
        student_temperature: tau_s.
        teacher_temperature: tau_t after the warm-up; warmup_teacher_temperature: tau_t at step 0.
        teacher_temperature_warmup_fraction: the fraction of training over which tau_t rises linearly.
        center_momentum: m of the centre's EMA (eq. 4).
        teacher_momentum: the EMA rate of the teacher at step 0 (cosine to 1 over training).
        freeze_last_layer_epochs: epochs during which the last layer is not updated.
    """

    model_type = "hfssl_dino"
    default_backbone = "vit-small"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        head_hidden_dim: int = 2048,
        head_bottleneck_dim: int = 256,
        head_output_dim: int = 65536,
        head_num_layers: int = 3,
        head_batch_norm: bool = False,
        normalize_last_layer: bool = True,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.07,
        warmup_teacher_temperature: float = 0.04,
        teacher_temperature_warmup_fraction: float = 0.3,
        center_momentum: float = 0.9,
        teacher_momentum: float = 0.996,
        freeze_last_layer_epochs: float = 1.0,
        **kwargs: Any,
    ) -> None:
        check_range("head_output_dim", head_output_dim, 1, 1 << 20)
        check_range("head_bottleneck_dim", head_bottleneck_dim, 1, 1 << 16)
        check_range("head_num_layers", head_num_layers, 1, 8)
        for name, value in (("student_temperature", student_temperature), ("teacher_temperature", teacher_temperature),
                            ("warmup_teacher_temperature", warmup_teacher_temperature)):
            check_range(name, value, 0.0, 10.0, low_open=True)
        check_range("teacher_temperature_warmup_fraction", teacher_temperature_warmup_fraction, 0.0, 1.0, high_open=True)
        check_range("center_momentum", center_momentum, 0.0, 1.0)
        check_range("teacher_momentum", teacher_momentum, 0.0, 1.0)
        check_range("freeze_last_layer_epochs", freeze_last_layer_epochs, 0.0, 1e6)
        self.head_hidden_dim = head_hidden_dim
        self.head_bottleneck_dim = head_bottleneck_dim
        self.head_output_dim = head_output_dim
        self.head_num_layers = head_num_layers
        self.head_batch_norm = head_batch_norm
        self.normalize_last_layer = normalize_last_layer
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.teacher_temperature_warmup_fraction = teacher_temperature_warmup_fraction
        self.center_momentum = center_momentum
        self.teacher_momentum = teacher_momentum
        self.freeze_last_layer_epochs = freeze_last_layer_epochs
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
