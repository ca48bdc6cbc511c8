"""SimCLR configuration (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range


class SimCLRConfig(HfsslVisionConfig):
    """Configuration of :class:`SimCLRForPreTraining`.

    Defaults follow the paper: ResNet-50, a 2-layer projection MLP (2048 -> 128, sec. 2.1 and
    B.9) and temperature 0.1 (the ImageNet setting of sec. 5.1).

    Args:
        projection_hidden_dim: width of the projection MLP's hidden layer.
        projection_dim: size of the projection z on which NT-Xent is computed.
        projection_num_layers: number of Linear layers in the projection MLP.
        temperature: tau of NT-Xent, in (0, 10].
        gather_distributed: gather negatives from every process (global batch).
    """

    model_type = "hfssl_simclr"
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
        projection_num_layers: int = 2,
        temperature: float = 0.1,
        gather_distributed: bool = True,
        **kwargs: Any,
    ) -> None:
        check_range("temperature", temperature, 0.0, 10.0, low_open=True)
        check_range("projection_dim", projection_dim, 1, 1 << 16)
        check_range("projection_num_layers", projection_num_layers, 1, 8)
        self.projection_hidden_dim = projection_hidden_dim
        self.projection_dim = projection_dim
        self.projection_num_layers = projection_num_layers
        self.temperature = temperature
        self.gather_distributed = gather_distributed
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
