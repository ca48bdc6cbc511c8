"""Relative patch position (Doersch et al. 2015): where is the second patch relative to the first?

A shared-weight encoder (the backbone, the part that is exported) turns the centre patch and one of
its eight neighbours into pooled features; a shared per-patch layer (fc6, Linear + ReLU) follows; the
pair is concatenated (centre first) and a classifier (fc7, fc8) predicts the neighbour's place, 8-way
(the paper's late-fusion architecture, sec. 3, Fig. 3).

The encoder is trained on patches, not whole images; :meth:`get_embeddings` (and the exported
encoder) applies it to whole images, as the paper's transfer experiments do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, encode_crops, freeze_unused_backbone_parts
from hfssl.heads import MLPHead
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.relative_patch.configuration_relative_patch import RelativePatchConfig
from hfssl.models.relative_patch.task import NEIGHBOUR_CELLS, make_patch_pairs


@dataclass
class RelativePatchOutput(ModelOutput):
    """Args:
    loss: cross-entropy of the neighbour's place.
    logits: ``(B, 8)``.
    pretext_accuracy: fraction of the batch whose neighbour's place was predicted (logged, no gradient).
    embeddings: pooled backbone features of both patches, ``(B * 2, hidden)``.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pretext_accuracy: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


class RelativePatchForPreTraining(HfsslPreTrainedModel):
    config_class = RelativePatchConfig

    def __init__(self, config: RelativePatchConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        self.patch_head = nn.Sequential(  # fc6, shared by the two patches
            nn.Linear(backbone_hidden_size(config.backbone_config), config.patch_embedding_dim), nn.ReLU(inplace=True))
        self.classifier = MLPHead(2 * config.patch_embedding_dim, config.classifier_hidden_dim,
                                  len(NEIGHBOUR_CELLS), num_layers=2)  # fc7, fc8
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> RelativePatchOutput:
        """Args:
        pixel_values: ``(B, 2, C, s, s)``, the centre patch then the neighbour
            (:func:`~hfssl.models.relative_patch.task.make_patch_pairs`).
        labels: ``(B,)`` neighbour places in ``[0, 8)``; without them there is no loss.
        """
        if pixel_values.ndim != 5 or pixel_values.shape[1] != 2:
            raise ValueError(f"RelativePatch expects patch pairs of shape (batch, 2, channels, height, width), got "
                             f"{tuple(pixel_values.shape)}; its input builder makes them from whole images")
        batch = pixel_values.shape[0]
        features = encode_crops(self.backbone, pixel_values.flatten(0, 1), self.config.pooling)  # (B * 2, hidden)
        pair = self.patch_head(features).reshape(batch, -1)  # (B, 2 * patch_embedding_dim), centre first
        logits = self.classifier(pair)  # (B, 8)
        loss = accuracy = None
        if labels is not None:
            loss = F.cross_entropy(logits, labels)
            accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return RelativePatchOutput(loss=loss, logits=logits, pretext_accuracy=accuracy, embeddings=features)

    def get_pretext_predictions(self, pixel_values: torch.Tensor,
                                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch pairs of clean normalised images ``(B, C, S, S)`` made with ``generator`` (the training
        builder's function, tricks included), and the model's ``(logits (B, 8), labels (B,))`` on them."""
        self.config.layout.check(pixel_values.shape[-1])
        patches, labels = make_patch_pairs(pixel_values, self.config, generator)
        return self(pixel_values=patches).logits, labels
