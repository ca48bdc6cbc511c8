"""MoCo v2 configuration (He et al. 2020, "Momentum Contrast"; Chen et al. 2020, "Improved Baselines with
Momentum Contrastive Learning")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range


class MoCoConfig(HfsslVisionConfig):
    """Configuration of :class:`MoCoForPreTraining` (MoCo v2).

    Defaults follow the papers: ResNet-50; MoCo v2's 2-layer MLP head (2048 hidden, ReLU, no
    BatchNorm) to 128 dimensions (Chen et al. 2020, sec. 3); a queue of K = 65,536 negatives,
    momentum m = 0.999 kept constant (He et al. 2020, sec. 3.2 and 4) and temperature 0.2 (MoCo v2).

    Args:
        projection_hidden_dim: width of the MLP head's hidden layer.
        projection_dim: size of the queries and keys (and of every queue row).
        projection_num_layers: Linear layers of the MLP head (MoCo v2: 2; 1 gives MoCo v1's linear head).
        queue_size: K, the number of negative keys kept. Training-only state: checkpointed, never released.
        temperature: tau of InfoNCE, in (0, 10].
        teacher_momentum: m of the key encoder's EMA, in [0, 1] (constant by default; a recipe may
            schedule it under ``train.schedules.teacher_momentum``).
        shuffle_batch_norm: in multi-process training, compute the keys on a random permutation of
            the global batch (shuffling BN, He et al. sec. 3.3); see :class:`MoCoForPreTraining`.
    """

    model_type = "hfssl_moco"
    default_backbone = "resnet50"
    # Declared as a config field: transformers v5 otherwise mistakes ``temperature`` for a text
    # generation parameter and refuses to save the config.
    temperature: float = 0.2

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        projection_hidden_dim: int = 2048,
        projection_dim: int = 128,
        projection_num_layers: int = 2,
        queue_size: int = 65536,
        temperature: float = 0.2,
        teacher_momentum: float = 0.999,
        shuffle_batch_norm: bool = True,
        **kwargs: Any,
    ) -> None:
        check_range("temperature", temperature, 0.0, 10.0, low_open=True)
        check_range("projection_dim", projection_dim, 1, 1 << 16)
        check_range("projection_num_layers", projection_num_layers, 1, 8)
        check_range("queue_size", queue_size, 1, 1 << 24)
        check_range("teacher_momentum", teacher_momentum, 0.0, 1.0)
        self.projection_hidden_dim = projection_hidden_dim
        self.projection_dim = projection_dim
        self.projection_num_layers = projection_num_layers
        self.queue_size = int(queue_size)
        self.temperature = temperature
        self.teacher_momentum = teacher_momentum
        self.shuffle_batch_norm = shuffle_batch_norm
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
