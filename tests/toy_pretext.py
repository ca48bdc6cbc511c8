"""A pretext-task method that lives only in tests: the ``pretext`` and ``layer-linear`` protocols' test model.

``toy_pretext`` shows every image at ``pretext_classes`` rotations (multiples of 90 degrees, in an order
drawn per image from the generator, so the labels are exactly balanced) and classifies which one it
sees from the pooled backbone features, as RotNet does. ``oracle`` replaces the classifier by a
hand-checkable one: ``"labels"`` returns the task's labels as one-hot logits (100 % accuracy),
``"constant"`` returns the same decreasing logits for every example (top-1 = 1 / classes, top-5 = 5 /
classes exactly, the labels being balanced).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts, pool_features
from hfssl.configuration_utils import HfsslVisionConfig
from hfssl.export import export_image_encoder
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.registry import (
    IMAGE,
    IMAGE_FEATURES,
    LAYER_FEATURES,
    METHODS,
    PRETEXT_TASK,
    MethodSpec,
    Paper,
    register_method,
    unregister_method,
)
from hfssl.views import build_eval_transform

NAME = "toy_pretext"
TINY_BACKBONE = {"model_type": "resnet", "layer_type": "basic", "depths": [1, 1], "hidden_sizes": [8, 16],
                 "embedding_size": 8, "num_channels": 1}


class ToyPretextConfig(HfsslVisionConfig):
    model_type = f"hfssl_{NAME}"
    default_backbone = "resnet18"

    def __init__(self, backbone_config: Any = None, backbone_name_or_path: str | None = None, pooling: str = "auto",
                 pretext_classes: int = 4, oracle: str | None = None, **kwargs: Any) -> None:
        self.pretext_classes = pretext_classes
        self.oracle = oracle
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)


@dataclass
class ToyPretextOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


def rotation_task(pixel_values: torch.Tensor, classes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B * classes, C, H, W)`` rotated images and their ``(B * classes,)`` labels: image ``i`` at every
    label in an order drawn from ``generator``; label ``j`` is a rotation by ``j % 4`` quarter turns."""
    batch = pixel_values.shape[0]
    labels = torch.stack([torch.randperm(classes, generator=generator, device=generator.device)
                          for _ in range(batch)]).to(pixel_values.device)  # (B, classes)
    turned = torch.stack([torch.rot90(pixel_values, k, dims=(2, 3)) for k in range(4)], dim=1)  # (B, 4, C, H, W)
    rows = torch.arange(batch, device=pixel_values.device).repeat_interleave(classes)
    return turned[rows, labels.flatten() % 4], labels.flatten()


class ToyPretextModel(HfsslPreTrainedModel):
    config_class = ToyPretextConfig

    def __init__(self, config: ToyPretextConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        self.classifier = nn.Linear(backbone_hidden_size(config.backbone_config), config.pretext_classes)
        self.post_init()

    def get_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pool_features(self.backbone(pixel_values=pixel_values), self.config.pooling)

    def get_pretext_predictions(self, pixel_values: torch.Tensor,
                                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, labels = rotation_task(pixel_values, self.config.pretext_classes, generator)
        classes = self.config.pretext_classes
        if self.config.oracle == "labels":
            return F.one_hot(labels, classes).float(), labels
        if self.config.oracle == "constant":
            return -torch.arange(classes, dtype=torch.float32).expand(len(labels), classes), labels
        return self.classifier(self.get_embeddings(inputs)), labels

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor, **kwargs: Any) -> ToyPretextOutput:
        logits = self.classifier(self.get_embeddings(pixel_values))
        return ToyPretextOutput(loss=F.cross_entropy(logits, labels), logits=logits)


def build_inputs(recipe: Any, data: Any) -> Any:
    """The training builder: clean normalised images, then the rotation task drawn from the engine's generator."""
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    classes = int(recipe.model.get("pretext_classes", 4))

    def make_inputs(batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        pixel_values = transform(batch["pixels"].to(generator.device))
        inputs, labels = rotation_task(pixel_values, classes, generator)
        return {"pixel_values": inputs, "labels": labels}

    return make_inputs


SPEC = MethodSpec(
    name=NAME,
    display_name="Toy pretext",
    config_class=ToyPretextConfig,
    model_class=ToyPretextModel,
    modality=IMAGE,
    family="vision-ssl",
    paper=Paper("A pretext method that exists only in the tests", "https://example.org/toy-pretext",
                "@misc{toypretext, title={Toy pretext}}"),
    build_inputs=build_inputs,
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES, PRETEXT_TASK),
)


def register() -> MethodSpec:
    return register_method(SPEC)


def unregister() -> None:
    if METHODS.get(NAME) is SPEC:
        unregister_method(NAME)
