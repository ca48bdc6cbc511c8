"""SimCLR: two augmented views, a projection MLP and NT-Xent (Chen et al. 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts
from hfssl.heads import MLPHead
from hfssl.losses import NTXentLoss
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.simclr.configuration_simclr import SimCLRConfig


@dataclass
class SimCLROutput(ModelOutput):
    """Args:
    loss: NT-Xent over the 2B views of the batch.
    embeddings: backbone features of the first view, ``(B, hidden)``.
    projections: projections of both views, ``(B, 2, projection_dim)``.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    projections: torch.FloatTensor | None = None


class SimCLRForPreTraining(HfsslPreTrainedModel):
    config_class = SimCLRConfig

    def __init__(self, config: SimCLRConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        self.projector = MLPHead(
            backbone_hidden_size(config.backbone_config),
            config.projection_hidden_dim,
            config.projection_dim,
            num_layers=config.projection_num_layers,
        )
        self.criterion = NTXentLoss(config.temperature, config.gather_distributed)
        self.post_init()


    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> SimCLROutput:
        """Args:
        pixel_values: two views of each image, ``(B, 2, C, H, W)``.
        """
        batch_size = pixel_values.shape[0]
        features, z1, z2 = self.project_views(pixel_values, self.projector)  # (2B, hidden), (B, projection_dim) x 2
        loss = self.criterion(z1, z2)
        return SimCLROutput(
            loss=loss,
            embeddings=features[:batch_size],
            projections=torch.stack([z1, z2], dim=1),
        )
