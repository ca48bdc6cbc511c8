"""A method that lives only in tests/: what a newcomer writes to add a method, touching nothing in hfssl/.

``toy_queue`` is a small MoCo-like method that exercises every engine hook:

* a negative **queue** (training-only state: non-persistent buffers named in ``training_state``),
  filled with the keys of each step in ``on_train_step_end``;
* a **scheduled temperature** (linear 0.5 -> 0.1), used inside ``forward`` through
  ``on_train_step_start``, and a scheduled **weight decay**;
* a **freeze**: the prediction head is not updated during the first ``FROZEN_STEPS`` steps.

:func:`register` adds it to the registry (and the Auto classes) as any ``hfssl/models/<method>/``
package does when hfssl discovers it, and its tiny test config to tests/tiny.py's table as any
``tests/models/<method>/tiny_<method>.py`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts, pool_features
from hfssl.configuration_utils import HfsslVisionConfig
from hfssl.export import export_image_encoder
from hfssl.modeling_utils import Freeze, HfsslPreTrainedModel
from hfssl.recipe import recipe_from_dict
from hfssl.registry import IMAGE, IMAGE_FEATURES, METHODS, MethodSpec, Paper, register_method, unregister_method
from hfssl.schedules import Schedule
from hfssl.views import view_inputs
from tiny import register_tiny, two_views, unregister_tiny

NAME = "toy_queue"
FROZEN_STEPS = 3
TINY_BACKBONE = {"model_type": "resnet", "layer_type": "basic", "depths": [1, 1], "hidden_sizes": [8, 16],
                 "embedding_size": 8, "num_channels": 1}


class ToyQueueConfig(HfsslVisionConfig):
    model_type = f"hfssl_{NAME}"
    default_backbone = "resnet18"

    def __init__(self, backbone_config: Any = None, backbone_name_or_path: str | None = None, pooling: str = "auto",
                 projection_dim: int = 8, queue_size: int = 24, **kwargs: Any) -> None:
        self.projection_dim = projection_dim
        self.queue_size = queue_size
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)


@dataclass
class ToyQueueOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


class ToyQueueModel(HfsslPreTrainedModel):
    config_class = ToyQueueConfig
    training_state = ("queue", "queue_pointer")

    def __init__(self, config: ToyQueueConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        self.projector = nn.Linear(backbone_hidden_size(config.backbone_config), config.projection_dim)
        self.predictor = nn.Linear(config.projection_dim, config.projection_dim)
        # Training-only state: not saved by save_pretrained, checkpointed by the engine.
        self.register_buffer("queue", torch.zeros(config.queue_size, config.projection_dim), persistent=False)
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long), persistent=False)
        self.temperature = 0.5
        self._keys: torch.Tensor | None = None
        self.post_init()

    def get_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pool_features(self.backbone(pixel_values=pixel_values), self.config.pooling)

    @classmethod
    def schedule_names(cls, config: ToyQueueConfig) -> tuple[str, ...]:
        return ("temperature", "weight_decay")

    def schedules(self) -> dict[str, Schedule]:
        return {"temperature": Schedule(start=0.5, end=0.1, kind="linear"),
                "weight_decay": Schedule(start=0.0, end=0.2, kind="cosine")}

    def parameter_freezes(self) -> list[Freeze]:
        return [Freeze("predictor.*", steps=FROZEN_STEPS)]

    def on_train_step_start(self, step: int, scheduled: dict[str, float]) -> None:
        self.temperature = scheduled["temperature"]

    @torch.no_grad()
    def on_train_step_end(self, step: int, scheduled: dict[str, float]) -> None:
        keys = self._keys
        size = self.queue.shape[0]
        start = int(self.queue_pointer)
        rows = (torch.arange(keys.shape[0], device=keys.device) + start) % size
        self.queue[rows] = keys
        self.queue_pointer.fill_((start + keys.shape[0]) % size)

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> ToyQueueOutput:
        batch = pixel_values.shape[0]
        flat = self.flatten_views(pixel_values)
        features = self.get_embeddings(flat)
        projections = F.normalize(self.projector(features), dim=1)
        queries = F.normalize(self.predictor(projections[:batch]), dim=1)
        keys = projections[batch:].detach()
        self._keys = keys
        positives = (queries * keys).sum(dim=1, keepdim=True)
        negatives = queries @ self.queue.T
        logits = torch.cat([positives, negatives], dim=1) / self.temperature
        loss = F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long, device=logits.device))
        return ToyQueueOutput(loss=loss, embeddings=features[:batch])


SPEC = MethodSpec(
    name=NAME,
    display_name="Toy queue",
    config_class=ToyQueueConfig,
    model_class=ToyQueueModel,
    modality=IMAGE,
    family="vision-ssl",
    paper=Paper("A method that exists only in the tests", "https://example.org/toy", "@misc{toy, title={Toy}}"),
    build_inputs=view_inputs("multi_view"),
    export=export_image_encoder,
    provides=(IMAGE_FEATURES,),
)


def register() -> MethodSpec:
    """Register the method and, as tests/models/<method>/tiny_<method>.py does for a built-in one, its tiny
    config for tests/tiny.py's ``tiny_model`` / ``tiny_inputs``."""
    register_tiny(NAME, {"backbone_config": TINY_BACKBONE, "queue_size": 24}, partial(two_views, channels=1))
    return register_method(SPEC)


def unregister() -> None:
    if METHODS.get(NAME) is SPEC:
        unregister_method(NAME)
    unregister_tiny(NAME)


def toy_recipe(max_train_samples: int = 192, max_eval_samples: int = 90, eval: dict[str, Any] | None = None,
               **train: Any) -> Any:
    """A tiny digits recipe of the toy method (``train`` keys override the 8-step defaults)."""
    return recipe_from_dict({
        "method": NAME,
        "model": {"backbone_config": TINY_BACKBONE, "queue_size": 24},
        "data": {"source": "builtin:digits", "image_size": 16, "channels": 1, "max_train_samples": max_train_samples,
                 "max_eval_samples": max_eval_samples},
        "views": {"mean": [0.5], "std": [0.5], "crop_scale": [0.5, 1.0]},
        "optim": {"lr": 0.01, "warmup_steps": 0},
        "train": {"batch_size": 16, "max_steps": 8, "checkpoint_every": 4, "trackers": [], "progress_bar": False,
                  "knn_every": None, "log_every": 1, "monitor_every": 4, **train},
        "eval": eval or {"protocols": ["knn"], "knn": {"k": [5]}, "baselines": False},
    })
