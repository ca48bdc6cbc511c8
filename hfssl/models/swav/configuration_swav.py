"""SwAV configuration (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range


class SwAVConfig(HfsslVisionConfig):
    """Configuration of :class:`SwAVForPreTraining`.

    Defaults follow the paper and the official ``main_swav.py`` for ResNet-50 on ImageNet: a projection
    MLP 2048 -> 2048 (BatchNorm, ReLU) -> 128, L2-normalised, scored against K = 3,000 L2-normalised
    prototypes; temperature 0.1; codes from 3 Sinkhorn-Knopp iterations with epsilon 0.05, computed
    for the 2 global crops; prototypes frozen for the first epoch. Small data sets need fewer
    prototypes (the recipes use 100-300, about 10-30 per class, as the paper's 3,000 for 1,000 classes).

    Args:
        projection_hidden_dim / projection_dim: the projection MLP (its output is L2-normalised).
        num_prototypes: K.
        temperature: tau of the swapped prediction's softmax.
        sinkhorn_epsilon / sinkhorn_iterations: the Sinkhorn-Knopp codes.
        num_assigned_views: the crops whose codes are predicted (``crops_for_assign``): the first
            ``num_assigned_views`` global crops.
        queue_size: rows of past features kept per assigned crop and per process (0: no queue), used
            for the codes once full; the paper uses 3,840 for batches of 256 (its ``queue_length``
            is divided by the number of processes). Training-only state.
        queue_start_step: the first optimiser step whose features enter the queue (the official code
            starts it at epoch 15).
        freeze_prototypes_epochs: epochs during which the prototypes are not updated.
    """

    model_type = "hfssl_swav"
    default_backbone = "resnet50"
    # Declared as a config field: transformers v5 otherwise mistakes ``temperature`` for a text
    # generation parameter and refuses to save the config.
    temperature: float = 0.1

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        projection_hidden_dim: int = 2048,
        projection_dim: int = 128,
        num_prototypes: int = 3000,
        temperature: float = 0.1,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        num_assigned_views: int = 2,
        queue_size: int = 0,
        queue_start_step: int = 0,
        freeze_prototypes_epochs: float = 1.0,
        **kwargs: Any,
    ) -> None:
        check_range("projection_dim", projection_dim, 1, 1 << 16)
        check_range("num_prototypes", num_prototypes, 1, 1 << 20)
        check_range("temperature", temperature, 0.0, 10.0, low_open=True)
        check_range("sinkhorn_epsilon", sinkhorn_epsilon, 0.0, 10.0, low_open=True)
        check_range("sinkhorn_iterations", sinkhorn_iterations, 1, 1000)
        check_range("num_assigned_views", num_assigned_views, 1, 64)
        check_range("queue_size", queue_size, 0, 1 << 24)
        check_range("queue_start_step", queue_start_step, 0, 1 << 40)
        check_range("freeze_prototypes_epochs", freeze_prototypes_epochs, 0.0, 1e6)
        self.projection_hidden_dim = projection_hidden_dim
        self.projection_dim = projection_dim
        self.num_prototypes = num_prototypes
        self.temperature = temperature
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.num_assigned_views = int(num_assigned_views)
        self.queue_size = int(queue_size)
        self.queue_start_step = int(queue_start_step)
        self.freeze_prototypes_epochs = freeze_prototypes_epochs
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
