"""Jigsaw puzzles (Noroozi & Favaro 2016): which of P permutations shuffled the nine tiles?

A shared-weight tile encoder (the backbone, the part that is exported) turns each tile into pooled
features; a shared per-tile layer (the paper's fc6, Linear + ReLU) follows; the tiles' outputs are
concatenated in the order they are shown and a classifier (fc7, fc8) predicts the permutation's index.
The paper's "context-free network" (sec. 3.1) is this: no tile sees another before fc7.

The encoder is trained on tiles, not whole images; :meth:`get_embeddings` (and the exported encoder)
applies it to whole images, as the paper's transfer experiments do.
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
from hfssl.models.jigsaw.configuration_jigsaw import JigsawConfig
from hfssl.models.jigsaw.task import make_jigsaw_puzzles


@dataclass
class JigsawOutput(ModelOutput):
    """Args:
    loss: cross-entropy of the permutation index.
    logits: ``(B, P)``.
    pretext_accuracy: fraction of the batch whose permutation was predicted (logged, no gradient).
    embeddings: pooled backbone features of every tile, ``(B * T, hidden)``.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pretext_accuracy: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


class JigsawForPreTraining(HfsslPreTrainedModel):
    config_class = JigsawConfig

    def __init__(self, config: JigsawConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        num_tiles = config.grid_size ** 2
        self.tile_head = nn.Sequential(  # fc6, shared by the tiles
            nn.Linear(backbone_hidden_size(config.backbone_config), config.tile_embedding_dim), nn.ReLU(inplace=True))
        self.classifier = MLPHead(num_tiles * config.tile_embedding_dim, config.classifier_hidden_dim,
                                  config.num_permutations, num_layers=2)  # fc7, fc8
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> JigsawOutput:
        """Args:
        pixel_values: the shown tiles ``(B, T, C, s, s)``, place ``i`` of image ``b`` holding cell
            ``permutations[labels[b], i]`` (:func:`~hfssl.models.jigsaw.task.make_jigsaw_puzzles`).
        labels: ``(B,)`` permutation indices; without them there is no loss.
        """
        num_tiles = self.config.grid_size ** 2
        if pixel_values.ndim != 5 or pixel_values.shape[1] != num_tiles:
            raise ValueError(f"Jigsaw expects tiles of shape (batch, {num_tiles} tiles, channels, height, width), got "
                             f"{tuple(pixel_values.shape)}; its input builder makes them from whole images")
        batch = pixel_values.shape[0]
        features = encode_crops(self.backbone, pixel_values.flatten(0, 1), self.config.pooling)  # (B * T, hidden)
        per_tile = self.tile_head(features).reshape(batch, -1)  # (B, T * tile_embedding_dim), in shown order
        logits = self.classifier(per_tile)  # (B, P)
        loss = accuracy = None
        if labels is not None:
            loss = F.cross_entropy(logits, labels)
            accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return JigsawOutput(loss=loss, logits=logits, pretext_accuracy=accuracy, embeddings=features)

    def get_pretext_predictions(self, pixel_values: torch.Tensor,
                                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Puzzles of clean normalised images ``(B, C, S, S)`` made with ``generator`` (the training
        builder's function), and the model's ``(logits (B, P), labels (B,))`` on them."""
        self.config.layout.check(pixel_values.shape[-1])
        permutations = torch.tensor(self.config.permutations, dtype=torch.int64, device=pixel_values.device)
        tiles, labels = make_jigsaw_puzzles(pixel_values, self.config.layout, permutations, generator,
                                            self.config.normalize_tiles)
        return self(pixel_values=tiles).logits, labels
