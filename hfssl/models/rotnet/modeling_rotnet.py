"""RotNet: predict which of four rotations an image was given (Gidaris et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts
from hfssl.heads import MLPHead
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.rotnet.configuration_rotnet import NUM_ROTATIONS, RotNetConfig
from hfssl.models.rotnet.rotations import rotate_all


@dataclass
class RotNetOutput(ModelOutput):
    """Args:
    loss: cross-entropy of the rotation classifier over the ``N`` rotated images.
    logits: ``(N, 4)`` rotation scores.
    embeddings: pooled backbone features ``(N, hidden)``.
    pretext_accuracy: share of rotations predicted right (no gradient), logged as ``train/pretext_accuracy``.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    pretext_accuracy: torch.FloatTensor | None = None


class RotNetForPreTraining(HfsslPreTrainedModel):
    """A transformers vision backbone and a 4-way rotation classifier on its pooled features (sec. 2.2)."""

    config_class = RotNetConfig

    def __init__(self, config: RotNetConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        hidden = backbone_hidden_size(config.backbone_config)
        if config.classifier_hidden_dim is None:
            self.classifier = nn.Linear(hidden, NUM_ROTATIONS)
        else:
            self.classifier = MLPHead(hidden, config.classifier_hidden_dim, NUM_ROTATIONS, num_layers=2)
        self.post_init()

    def classify(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(N, hidden)`` and rotation logits ``(N, 4)`` of images ``(N, C, S, S)``."""
        features = self.get_embeddings(pixel_values)
        return features, self.classifier(features)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor, return_dict: bool | None = None,
                **kwargs) -> RotNetOutput:
        """Args:
        pixel_values: rotated images ``(N, C, S, S)`` (the input builder's ``(4B, ...)``).
        labels: ``(N,)`` rotation of each image, ``k`` for ``k * 90`` degrees counter-clockwise.
        """
        if labels.shape != pixel_values.shape[:1]:
            raise ValueError(f"RotNet needs one rotation label per image: pixel_values {tuple(pixel_values.shape)}, "
                             f"labels {tuple(labels.shape)}")
        features, logits = self.classify(pixel_values)
        loss = F.cross_entropy(logits.float(), labels)
        with torch.no_grad():
            accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        return RotNetOutput(loss=loss, logits=logits, embeddings=features, pretext_accuracy=accuracy)

    def get_pretext_predictions(self, pixel_values: torch.Tensor,
                                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``pretext-task``: the four rotations of every clean image ``(B, C, S, S)`` (:func:`rotate_all`, the
        training builder's task) and the classifier's ``(logits (4B, 4), labels (4B,))``. The task draws no
        random numbers, so ``generator`` is not used."""
        rotated, labels = rotate_all(pixel_values)
        _, logits = self.classify(rotated)
        return logits, labels
