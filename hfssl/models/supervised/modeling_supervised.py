"""The supervised baseline: cross-entropy of a linear classifier on the pooled features of a vision backbone."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.supervised.configuration_supervised import SupervisedConfig


@dataclass
class SupervisedOutput(ModelOutput):
    """Args:
    loss: cross-entropy (with ``config.label_smoothing``) of the classifier over every view of every image.
    logits: ``(V * B, num_classes)`` class scores, view-major (view ``v`` of image ``i`` at row ``v * B + i``).
    embeddings: pooled backbone features of the first view, ``(B, hidden)`` (the collapse monitor's input).
    classification_accuracy: share of views classified right (no gradient), logged as
        ``train/classification_accuracy``.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    classification_accuracy: torch.FloatTensor | None = None


class SupervisedForPreTraining(HfsslPreTrainedModel):
    """A transformers vision backbone and a linear classifier on its pooled features, trained on the labels.

    It takes the views of the self-supervised methods (``views.num_views`` augmented views of each image, from the
    ``multi_view`` generator, or one view ``(B, C, S, S)``); every view is classified with its image's label, so a
    recipe with the SimCLR views gives the same backbone passes per step as SimCLR. The classifier is a training-time
    head: the export, and every evaluation protocol, use the backbone only, exactly as for the SSL encoders.
    """

    config_class = SupervisedConfig

    def __init__(self, config: SupervisedConfig) -> None:
        super().__init__(config)
        if config.num_classes is None:
            raise ValueError("SupervisedConfig.num_classes is not set: `hfssl train` sets it from the data's labels; "
                             "when building the model yourself, pass num_classes (the number of classes)")
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        self.classifier = nn.Linear(backbone_hidden_size(config.backbone_config), config.num_classes)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor, return_dict: bool | None = None,
                **kwargs) -> SupervisedOutput:
        """Args:
        pixel_values: views ``(B, V, C, S, S)`` (``multi_view``) or one view of each image ``(B, C, S, S)``.
        labels: ``(B,)`` int64 class ids in ``[0, num_classes)``.
        """
        batch_size = pixel_values.shape[0]
        if pixel_values.ndim == 5:
            num_views = pixel_values.shape[1]
            pixel_values = self.flatten_views(pixel_values, num_views)  # (V * B, C, S, S), view-major
        elif pixel_values.ndim == 4:
            num_views = 1
        else:
            raise ValueError(f"SupervisedForPreTraining expects pixel_values (batch, views, channels, height, width) or "
                             f"(batch, channels, height, width), got {tuple(pixel_values.shape)}")
        self._check_labels(labels, batch_size)
        features = self.get_embeddings(pixel_values)  # (V * B, hidden)
        logits = self.classifier(features)  # (V * B, num_classes)
        targets = labels.repeat(num_views)  # (V * B,): view-major, as the rows
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.config.label_smoothing)
        with torch.no_grad():
            accuracy = (logits.argmax(dim=-1) == targets).float().mean()
        return SupervisedOutput(loss=loss, logits=logits, embeddings=features[:batch_size],
                                classification_accuracy=accuracy)

    def _check_labels(self, labels: torch.Tensor, batch_size: int) -> None:
        """One class id per image, each in ``[0, num_classes)``: an unlabelled row (-1) or a class beyond the
        classifier is refused here rather than as cross-entropy's index error."""
        if labels.shape != (batch_size,) or labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"SupervisedForPreTraining needs one integer class id per image: labels "
                             f"{tuple(labels.shape)} {labels.dtype} for {batch_size} images")
        low, high = torch.stack(torch.aminmax(labels)).tolist()  # one device sync
        if low < 0 or high >= self.config.num_classes:
            raise ValueError(
                f"labels must be class ids in [0, {self.config.num_classes}) (config.num_classes), got values from "
                f"{low} to {high}" + ("; -1 marks an unlabelled image, which the supervised baseline cannot train on"
                                      if low < 0 else ""))
