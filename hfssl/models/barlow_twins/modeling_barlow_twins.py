"""Barlow Twins: the cross-correlation of two views' embeddings pushed to the identity (Zbontar et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts
from hfssl.heads import MLPHead
from hfssl.losses import BarlowTwinsLoss
from hfssl.modeling_utils import HfsslPreTrainedModel, ParameterGroup
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


#: The official biases' learning rate over the weights' (``--learning-rate-biases 0.0048``,
#: ``--learning-rate-weights 0.2``).
BIAS_LR_SCALE = 0.0048 / 0.2


class BarlowTwinsForPreTraining(HfsslPreTrainedModel):
    """Barlow Twins: one shared encoder and projector for both views, the loss of
    :class:`hfssl.losses.BarlowTwinsLoss` (which also does the paper's final batch normalisation).

    Optimiser groups as in the official code (LARS, learning rate 0.2 for the weights and 0.0048 for
    the biases and BatchNorm parameters, which are neither decayed nor adapted by LARS' trust ratio):
    the parameter group ``biases_and_norms`` (every parameter with one dimension) at
    :data:`BIAS_LR_SCALE` = 0.0048 / 0.2 of ``optim.lr``, without weight decay. A recipe changes it
    under ``optim.parameter_groups.biases_and_norms`` (the AdamW recipes set ``lr_scale: 1.0``).
    """

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

    def parameter_groups(self) -> list[ParameterGroup]:
        """Biases and BatchNorm parameters (``ndim == 1``, as the official code splits them) at the
        official bias learning rate, without weight decay or LARS adaptation."""
        names = tuple(name for name, parameter in self.named_parameters() if parameter.ndim == 1)
        return [ParameterGroup("biases_and_norms", names, lr_scale=BIAS_LR_SCALE, weight_decay=False)]

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
