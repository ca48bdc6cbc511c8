"""VICReg: variance, invariance and covariance terms on an expander's embeddings (Bardes et al. 2022)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts
from hfssl.heads import MLPHead
from hfssl.losses import VICRegLoss
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.vicreg.configuration_vicreg import VICRegConfig


@dataclass
class VICRegOutput(ModelOutput):
    """Args:
    loss: ``lambda * invariance + mu * variance + nu * covariance`` (eq. 6).
    invariance_loss: mean squared error between the two views' embeddings (unweighted).
    variance_loss: std hinge, averaged over the two views (unweighted; ``gamma - sqrt(eps)`` when collapsed).
    covariance_loss: squared off-diagonal covariances / d, summed over the two views (unweighted).
    embeddings: backbone features of the first view, ``(B, hidden)``.
    projections: expander outputs of both views, ``(B, 2, projection_dim)``.
    """

    loss: torch.FloatTensor | None = None
    invariance_loss: torch.FloatTensor | None = None
    variance_loss: torch.FloatTensor | None = None
    covariance_loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    projections: torch.FloatTensor | None = None


class VICRegForPreTraining(HfsslPreTrainedModel):
    """VICReg: one shared encoder and expander for both views (the paper's symmetric setting), the
    loss of :class:`hfssl.losses.VICRegLoss` on the expander's outputs."""

    config_class = VICRegConfig

    def __init__(self, config: VICRegConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        # The expander's last Linear has no bias (authors' code): every term of the loss is
        # invariant to a shift shared by both views, so a bias would only collect rounding noise.
        self.projector = MLPHead(
            backbone_hidden_size(config.backbone_config),
            config.projection_hidden_dim,
            config.projection_dim,
            num_layers=config.projection_num_layers,
            last_bias=False,
        )
        self.criterion = VICRegLoss(
            invariance_coefficient=config.invariance_coefficient,
            variance_coefficient=config.variance_coefficient,
            covariance_coefficient=config.covariance_coefficient,
            variance_target=config.variance_target,
            epsilon=config.variance_epsilon,
            gather_distributed=config.gather_distributed,
        )
        self.post_init()


    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> VICRegOutput:
        """Args:
        pixel_values: two views of each image, ``(B, 2, C, H, W)``.
        """
        batch_size = pixel_values.shape[0]
        features, z1, z2 = self.project_views(pixel_values, self.projector)  # (2B, hidden), (B, projection_dim) x 2
        terms = self.criterion(z1, z2)
        return VICRegOutput(
            loss=terms.loss,
            invariance_loss=terms.invariance,
            variance_loss=terms.variance,
            covariance_loss=terms.covariance,
            embeddings=features[:batch_size],
            projections=torch.stack([z1, z2], dim=1),
        )
