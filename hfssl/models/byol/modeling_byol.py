"""BYOL: an online network predicts an EMA target network's projection of another view (Grill et al. 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts, pool_features
from hfssl.heads import MLPHead
from hfssl.losses import BYOLLoss
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.byol.configuration_byol import BYOLConfig


@dataclass
class BYOLOutput(ModelOutput):
    """Args:
    loss: symmetric BYOL loss, ``(L(v1 -> v2') + L(v2 -> v1')) / 2``.
    embeddings: online backbone features of the first view, ``(B, hidden)``.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


class BYOLForPreTraining(HfsslPreTrainedModel):
    config_class = BYOLConfig
    teacher_pairs = (("teacher_backbone", "backbone"), ("teacher_projector", "projector"))

    def __init__(self, config: BYOLConfig) -> None:
        super().__init__(config)
        hidden = backbone_hidden_size(config.backbone_config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        self.projector = MLPHead(hidden, config.projection_hidden_dim, config.projection_dim)
        self.predictor = MLPHead(config.projection_dim, config.prediction_hidden_dim, config.projection_dim)
        self.teacher_backbone = build_backbone(config.backbone_config)
        self.teacher_projector = MLPHead(hidden, config.projection_hidden_dim, config.projection_dim)
        self.criterion = BYOLLoss()
        self.post_init()
        # The target starts as a copy of the online network (sec. 3.1) and is only moved by EMA.
        self.copy_student_to_teacher()
        self.freeze_teachers()


    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> BYOLOutput:
        """Args:
        pixel_values: two views of each image, ``(B, 2, C, H, W)``.
        """
        batch_size = pixel_values.shape[0]
        flat = self.flatten_views(pixel_values)  # (2B, C, H, W), view-major
        features = self.get_embeddings(flat)
        predictions = self.predictor(self.projector(features))  # (2B, projection_dim)
        with torch.no_grad():
            teacher_features = pool_features(self.teacher_backbone(pixel_values=flat), self.config.pooling)
            targets = self.teacher_projector(teacher_features)  # (2B, projection_dim)
        # Symmetrised loss (sec. 3.1): the prediction of view 1 regresses the target of view 2 and back.
        swapped_targets = torch.cat([targets[batch_size:], targets[:batch_size]], dim=0)
        loss = self.criterion(predictions, swapped_targets)
        return BYOLOutput(loss=loss, embeddings=features[:batch_size])
