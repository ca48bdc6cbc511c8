"""Feature distillation: a student encoder's projected features regress a frozen teacher encoder's.

The teacher (any transformers vision encoder: a folder, a Hub id, an hfssl run's ``encoder/``) and the
student see the same augmented view ("consistent teaching", Beyer et al. 2022 sec. 3.2; LightlyTrain's
distillation); the teacher's pooled features are computed on the device under ``no_grad``, in eval mode. A
projection MLP maps the student's pooled features to the teacher's width, and the loss is 1 - cosine
similarity or smooth-l1 (:class:`hfssl.losses.FeatureDistillationLoss`). The teacher is a frozen teacher of
:class:`hfssl.modeling_utils.HfsslPreTrainedModel` (``add_frozen_teacher``): never in the optimiser, never in
``model.safetensors``, a checkpoint or the export; its weights are loaded from ``config.teacher_name_or_path``
when a run starts or resumes, and a fingerprint of them is checkpointed, so a resume refuses a teacher whose
weights changed. The student encoder is the exported plain transformers backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts, pool_features
from hfssl.backbones import load_pretrained_backbone as load_pretrained_encoder
from hfssl.heads import MLPHead
from hfssl.losses.distillation import FeatureDistillationLoss
from hfssl.modeling_utils import FINGERPRINT_WORDS, HfsslPreTrainedModel, refuse_changed_teacher, weights_fingerprint
from hfssl.models.feature_distill.configuration_feature_distill import (
    FeatureDistillConfig,
    teacher_config_from,
    teacher_encoder_path,
)

@dataclass
class FeatureDistillOutput(ModelOutput):
    """Args:
    loss: the feature regression loss.
    embeddings: the student's pooled features ``(B, hidden)``.
    predictions: the projected student features ``(B, teacher_hidden)``.
    teacher_features: the teacher's pooled features ``(B, teacher_hidden)``.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None
    teacher_features: torch.FloatTensor | None = None


def match_input_channels(pixel_values: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey images repeated to RGB, or RGB averaged to grey, for a teacher made for the other kind."""
    if pixel_values.shape[1] == channels:
        return pixel_values
    if pixel_values.shape[1] == 1:
        return pixel_values.expand(-1, channels, -1, -1)
    if channels == 1:
        return pixel_values.mean(dim=1, keepdim=True)
    raise ValueError(f"the teacher takes {channels} channels and the views have {pixel_values.shape[1]}")


class FeatureDistillForPreTraining(HfsslPreTrainedModel):
    config_class = FeatureDistillConfig
    frozen_teachers = ("teacher",)
    training_state = ("teacher_fingerprint",)

    def __init__(self, config: FeatureDistillConfig) -> None:
        if config.teacher_config is None:
            raise ValueError("feature distillation needs a teacher: set model.teacher_name_or_path to a transformers "
                             "vision encoder (a folder, a Hub id, or an hfssl run's encoder/)")
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        teacher_config = teacher_config_from(config.teacher_config)
        self.add_frozen_teacher("teacher", lambda: build_backbone(teacher_config))
        self.teacher_channels = int(getattr(teacher_config, "num_channels", 3))
        self.projector = MLPHead(backbone_hidden_size(config.backbone_config), config.projection_hidden_dim,
                                 backbone_hidden_size(teacher_config), num_layers=config.projection_num_layers)
        self.criterion = FeatureDistillationLoss(config.loss, config.smooth_l1_beta)
        self.register_buffer("teacher_fingerprint", torch.zeros(FINGERPRINT_WORDS, dtype=torch.int64),
                             persistent=False)
        self.post_init()

    @torch.no_grad()
    def teacher_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's pooled features ``(B, teacher_hidden)`` of normalised images ``(B, C, H, W)``."""
        pixel_values = match_input_channels(pixel_values, self.teacher_channels)
        return pool_features(self.teacher(pixel_values=pixel_values), self.config.teacher_pooling).float()

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> FeatureDistillOutput:
        """Args:
        pixel_values: one augmented view of each image, ``(B, C, H, W)``, seen by student and teacher alike.
        """
        if pixel_values.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects one view, pixel_values (batch, channels, height, "
                             f"width), got {tuple(pixel_values.shape)}; set views.num_views=1")
        embeddings = self.get_embeddings(pixel_values)
        predictions = self.projector(embeddings)
        targets = self.teacher_features(pixel_values)
        loss = self.criterion(predictions, targets)
        return FeatureDistillOutput(loss=loss, embeddings=embeddings, predictions=predictions,
                                    teacher_features=targets)

    def load_pretrained_weights(self) -> list[str]:
        """The student's ``backbone_name_or_path`` (if any), then the teacher's weights from
        ``teacher_name_or_path`` (strict: the architecture must be ``teacher_config``'s), fingerprinted."""
        loaded = super().load_pretrained_weights()
        path = self.config.teacher_name_or_path
        if not path:
            raise ValueError("feature distillation trains against a teacher's weights: set model.teacher_name_or_path "
                             "(a transformers vision encoder folder, a Hub id, or an hfssl run's encoder/)")
        _, teacher = load_pretrained_encoder(teacher_encoder_path(path))
        result = self.teacher.load_state_dict(teacher.state_dict(), strict=False)
        unexpected = [name for name in result.unexpected_keys if not name.startswith("pooler.")]
        if result.missing_keys or unexpected:
            raise ValueError(f"the teacher {path!r} does not fit model.teacher_config: missing {result.missing_keys[:5]}, "
                             f"unexpected {unexpected[:5]}; leave teacher_config out to read it from the teacher")
        self.teacher.requires_grad_(False)
        self.teacher_fingerprint.copy_(weights_fingerprint(self.teacher))
        return [*loaded, f"{path} (teacher)"]

    def load_training_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the checkpoint's training state, refusing a teacher whose weights changed since it was written."""
        refuse_changed_teacher(state, self.teacher_fingerprint, self.config.teacher_name_or_path,
                               ", so the run cannot continue exactly; restore that teacher or start a new run")
        super().load_training_state_dict(state)
