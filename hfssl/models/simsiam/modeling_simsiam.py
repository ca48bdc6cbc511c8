"""SimSiam: a shared encoder, a predictor and a stop-gradient, no momentum encoder (Chen & He 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts
from hfssl.heads import MLPHead
from hfssl.losses import SimSiamLoss
from hfssl.modeling_utils import HfsslPreTrainedModel, ParameterGroup
from hfssl.models.simsiam.configuration_simsiam import SimSiamConfig


@dataclass
class SimSiamOutput(ModelOutput):
    """Args:
    loss: symmetric negative cosine ``D(p1, z2) / 2 + D(p2, z1) / 2`` (eq. 4), in [-1, 1].
    embeddings: backbone features of the first view, ``(B, hidden)``.
    projections: projections z of both views, ``(B, 2, projection_dim)`` (the stop-gradient targets, unless
        ``config.stop_gradient`` is false).
    predictions: predictions p of both views, ``(B, 2, projection_dim)``.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    projections: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None


class SimSiamForPreTraining(HfsslPreTrainedModel):
    """SimSiam (Algorithm 1 of the paper): both views pass through the same encoder ``f`` (backbone
    and projector) and predictor ``h``; each prediction regresses the other view's projection, which
    is detached. Unlike BYOL there is no target network: the "target" is the same network's output
    in the same step, so there is nothing to update after the optimiser step.

    The predictor keeps a constant learning rate while the rest follows the cosine (sec. 4.5: "fix lr
    for predictor", better than decaying it; the official code's ``--fix-pred-lr``): the parameter
    group ``predictor`` with ``constant_lr``, which ``optim.parameter_groups.predictor.constant_lr:
    false`` turns off.

    ``config.stop_gradient=False`` (recipe key ``model.stop_gradient``) removes the stop-gradient, the
    control experiment of sec. 4.1: the loss then also back-propagates through the projections it regresses
    to, and the paper reports a collapse to a constant output.
    """

    config_class = SimSiamConfig

    def __init__(self, config: SimSiamConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        # Projector (sec. 3): BN after every layer, the output BN without affine parameters and the
        # output Linear without bias (it would be cancelled by that BN), as in the authors' code.
        self.projector = MLPHead(
            backbone_hidden_size(config.backbone_config),
            config.projection_hidden_dim,
            config.projection_dim,
            num_layers=config.projection_num_layers,
            last_batch_norm=True,
        )
        # Predictor (sec. 3): a bottleneck, BN on its hidden layer only, no BN on the output.
        self.predictor = MLPHead(config.projection_dim, config.prediction_hidden_dim, config.projection_dim,
                                 num_layers=2)
        self.criterion = SimSiamLoss(stop_gradient=config.stop_gradient)
        self.post_init()

    def parameter_groups(self) -> list[ParameterGroup]:
        """The predictor at a constant learning rate (sec. 4.5)."""
        names = tuple(f"predictor.{name}" for name, _ in self.predictor.named_parameters())
        return [ParameterGroup("predictor", names, constant_lr=True)]

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> SimSiamOutput:
        """Args:
        pixel_values: two views of each image, ``(B, 2, C, H, W)``.
        """
        batch_size = pixel_values.shape[0]
        flat = self.flatten_views(pixel_values)  # (2B, C, H, W), view-major
        features = self.get_embeddings(flat)  # (2B, hidden)
        projections = self.projector(features)  # (2B, projection_dim): z
        predictions = self.predictor(projections)  # (2B, projection_dim): p
        z1, z2 = projections[:batch_size], projections[batch_size:]
        p1, p2 = predictions[:batch_size], predictions[batch_size:]
        loss = self.criterion(p1, p2, z1, z2)  # detaches z1 and z2 (the stop-gradient) unless config.stop_gradient is false
        return SimSiamOutput(
            loss=loss,
            embeddings=features[:batch_size],
            projections=torch.stack([z1, z2], dim=1),
            predictions=torch.stack([p1, p2], dim=1),
        )
