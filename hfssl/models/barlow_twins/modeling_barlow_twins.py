"""Barlow Twins: the cross-correlation of two views' embeddings pushed to the identity (Zbontar et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts
from hfssl.heads import MLPHead
from hfssl.losses import BarlowTwinsLoss
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.barlow_twins.configuration_barlow_twins import BarlowTwinsConfig


@dataclass
class BarlowTwinsOutput(ModelOutput):
    """Args:
    loss: ``on_diagonal + lambda * off_diagonal`` (eq. 1).
    on_diagonal_loss: ``sum_i (1 - C_ii)^2`` (unweighted invariance term).
    off_diagonal_loss: ``sum_{i != j} C_ij^2`` (unweighted redundancy-reduction term).
    embeddings: backbone features of the first view, ``(B, hidden)``.
    projections: projector outputs of both views, ``(B, 2, projection_dim)``.
    """

    loss: torch.FloatTensor | None = None
    on_diagonal_loss: torch.FloatTensor | None = None
    off_diagonal_loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    projections: torch.FloatTensor | None = None


class BarlowTwinsForPreTraining(HfsslPreTrainedModel):
    """Barlow Twins: one shared encoder and projector for both views, the loss of
    :class:`hfssl.losses.BarlowTwinsLoss` (which also does the paper's final batch normalisation)."""

    config_class = BarlowTwinsConfig

    def __init__(self, config: BarlowTwinsConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        # The last Linear has no bias (authors' code): the loss standardises every dimension over the
        # batch, which removes any bias exactly, so it would only collect rounding noise.
        self.projector = MLPHead(
            backbone_hidden_size(config.backbone_config),
            config.projection_hidden_dim,
            config.projection_dim,
            num_layers=config.projection_num_layers,
            last_bias=False,
        )
        self.criterion = BarlowTwinsLoss(config.off_diagonal_weight, gather_distributed=config.gather_distributed)
        self.post_init()


    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> BarlowTwinsOutput:
        """Args:
        pixel_values: two views of each image, ``(B, 2, C, H, W)``.
        """
        batch_size = pixel_values.shape[0]
        features, z1, z2 = self.project_views(pixel_values, self.projector)  # (2B, hidden), (B, projection_dim) x 2
        terms = self.criterion(z1, z2)
        return BarlowTwinsOutput(
            loss=terms.loss,
            on_diagonal_loss=terms.on_diagonal,
            off_diagonal_loss=terms.off_diagonal,
            embeddings=features[:batch_size],
            projections=torch.stack([z1, z2], dim=1),
        )
