"""DINO: self-distillation with no labels (Caron et al. 2021, "Emerging Properties in Self-Supervised
Vision Transformers")."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, encode_crops, freeze_unused_backbone_parts
from hfssl.distributed import all_reduce_sum
from hfssl.heads import DINOHead
from hfssl.losses import DINOLoss, dino_center_update
from hfssl.modeling_utils import Freeze, HfsslPreTrainedModel
from hfssl.models.dino.configuration_dino import DINOConfig
from hfssl.schedules import Schedule, cosine, warmup_then_constant


@dataclass
class DINOOutput(ModelOutput):
    """Args:
    loss: DINO's cross-entropy over (teacher global crop, other student crop) pairs.
    embeddings: student backbone features of the first global crop, ``(B, hidden)``.
    teacher_logits: the teacher's head outputs ``(G, B, K)`` (before centring and sharpening).
    student_logits: the student's head outputs ``(V, B, K)``, global crops first.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    teacher_logits: torch.FloatTensor | None = None
    student_logits: torch.FloatTensor | None = None


class DINOForPreTraining(HfsslPreTrainedModel):
    """DINO (Algorithm 1 of Caron et al. 2021) with multi-crop.

    The student (backbone + :class:`hfssl.heads.DINOHead`) sees the ``G`` global crops
    (``pixel_values``, ``(B, G, C, S, S)``) and the ``L`` local crops (``local_pixel_values``,
    ``(B, L, C, s, s)``); the teacher, an EMA of the student, sees the global crops only. Crops of one
    size share a backbone pass (BatchNorm statistics per resolution, as the official
    ``MultiCropWrapper``); ViT position embeddings are interpolated for the local size.

    Training-only state: ``center`` ``(K,)``, the EMA of the teacher's outputs (eq. 4). Each forward
    pass keeps the global-batch sum of its teacher outputs (all-reduced in ``forward``, which every
    process runs) and :meth:`on_train_step_end` applies the EMA once per optimiser step with the mean
    over every process and micro-batch; so the loss of a step uses the centre as it was before the
    step, as in the official code, and a resumed run continues with the checkpointed centre.

    Scheduled per step (functions of the step only, so resume is exact): ``teacher_temperature``
    (linear warm-up, then constant), ``teacher_momentum`` (cosine to 1) and ``weight_decay`` (cosine
    0.04 -> 0.4, applied by the engine). The last layer is frozen for ``freeze_last_layer_epochs``.
    Gradient clipping is the recipe's: the official code clips each parameter's gradient norm to 3.0
    on its own (``--clip_grad``), which the recipes ask for with ``optim.max_grad_norm: 3.0`` and
    ``optim.grad_clip_mode: per_parameter``.
    """

    config_class = DINOConfig
    teacher_pairs = (("teacher_backbone", "backbone"), ("teacher_head", "head"))
    training_state = ("center",)

    def __init__(self, config: DINOConfig) -> None:
        super().__init__(config)
        hidden = backbone_hidden_size(config.backbone_config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        self.head = self._build_head(hidden)
        self.teacher_backbone = build_backbone(config.backbone_config)
        self.teacher_head = self._build_head(hidden)
        self.criterion = DINOLoss()
        self.register_buffer("center", torch.zeros(config.head_output_dim), persistent=False)
        # Global-batch sums (sum of teacher outputs, number of rows) of this step's micro-batches,
        # applied by on_train_step_end; empty at every checkpoint (written after the hook).
        self._pending_centers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._teacher_temperature: float | None = None
        self.post_init()
        # The teacher starts as a copy of the student (Algorithm 1: "teacher.params = student.params").
        self.copy_student_to_teacher()
        self.freeze_teachers()

    def _build_head(self, hidden: int) -> DINOHead:
        config = self.config
        return DINOHead(hidden, config.head_hidden_dim, config.head_bottleneck_dim, config.head_output_dim,
                        num_layers=config.head_num_layers, batch_norm=config.head_batch_norm,
                        normalize_last_layer=config.normalize_last_layer)

    # ---- per-step hooks ------------------------------------------------------------------------

    @classmethod
    def schedule_names(cls, config: DINOConfig) -> tuple[str, ...]:
        return ("teacher_momentum", "teacher_temperature", "weight_decay")

    def schedules(self) -> dict[str, Schedule]:
        config = self.config
        return {
            "teacher_momentum": cosine(float(config.teacher_momentum), 1.0),
            "teacher_temperature": warmup_then_constant(
                float(config.warmup_teacher_temperature), float(config.teacher_temperature),
                warmup_fraction=float(config.teacher_temperature_warmup_fraction)),
            "weight_decay": cosine(0.04, 0.4),
        }

    def parameter_freezes(self) -> list[Freeze]:
        if self.config.freeze_last_layer_epochs <= 0:
            return []
        return [Freeze("head.last_layer.*", epochs=float(self.config.freeze_last_layer_epochs),
                       key="model.freeze_last_layer_epochs")]

    def on_train_step_start(self, step: int, scheduled: dict[str, float]) -> None:
        if "teacher_temperature" in scheduled:
            self._teacher_temperature = float(scheduled["teacher_temperature"])

    def on_train_step_end(self, step: int, scheduled: dict[str, float]) -> None:
        """EMA teacher update (cosine momentum), then the centre's EMA with this step's teacher outputs."""
        super().on_train_step_end(step, scheduled)
        pending, self._pending_centers = self._pending_centers, []
        if pending:
            total = torch.stack([sums for sums, _ in pending]).sum(dim=0)
            count = torch.stack([counts for _, counts in pending]).sum()
            self.update_center(total / count)

    @torch.no_grad()
    def update_center(self, batch_center: torch.Tensor) -> None:
        """``center <- m center + (1 - m) batch_center`` (eq. 4)."""
        dino_center_update(self.center, batch_center, float(self.config.center_momentum))

    # ---- forward -------------------------------------------------------------------------------

    @property
    def teacher_temperature(self) -> float:
        """This step's tau_t (set by the engine each step); outside training, the post-warm-up value."""
        if self._teacher_temperature is None:
            return float(self.config.teacher_temperature)
        return self._teacher_temperature

    @staticmethod
    def _view_major(pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, V, C, H, W)`` -> ``(V * B, C, H, W)``: view ``v`` of image ``i`` at row ``v * B + i``."""
        return pixel_values.transpose(0, 1).reshape(-1, *pixel_values.shape[2:])

    def forward(self, pixel_values: torch.Tensor, local_pixel_values: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> DINOOutput:
        """Args:
        pixel_values: global crops ``(B, G, C, S, S)``, G >= 2 for the teacher-student pairs (views.num_views).
        local_pixel_values: local crops ``(B, L, C, s, s)`` (views.num_local_views), or None.
        """
        if pixel_values.ndim != 5 or pixel_values.shape[1] < 1:
            raise ValueError(f"DINOForPreTraining expects global crops of shape (batch, views, channels, height, width), "
                             f"got {tuple(pixel_values.shape)}; set views.num_views (2 in the paper)")
        batch_size, num_global = pixel_values.shape[:2]
        num_local = 0 if local_pixel_values is None else local_pixel_values.shape[1]
        if num_global + num_local < 2 or num_global < 1:
            raise ValueError(f"DINO needs at least two crops per image, got {num_global} global and {num_local} local; "
                             "set views.num_views=2 and views.num_local_views")
        if local_pixel_values is not None and (local_pixel_values.ndim != 5 or local_pixel_values.shape[0] != batch_size):
            raise ValueError(f"local_pixel_values must be (batch={batch_size}, local views, channels, height, width), "
                             f"got {tuple(local_pixel_values.shape)}")
        global_flat = self._view_major(pixel_values)  # (G * B, C, S, S)
        features = [encode_crops(self.backbone, global_flat, self.config.pooling)]
        if num_local:
            features.append(encode_crops(self.backbone, self._view_major(local_pixel_values), self.config.pooling))
        student_logits = self.head(torch.cat(features)).view(num_global + num_local, batch_size, -1)  # (V, B, K)
        with torch.no_grad():
            teacher_features = encode_crops(self.teacher_backbone, global_flat, self.config.pooling)
            teacher_logits = self.teacher_head(teacher_features).view(num_global, batch_size, -1)  # (G, B, K)
        loss = self.criterion(student_logits, teacher_logits, self.center, float(self.config.student_temperature),
                              self.teacher_temperature)
        if self.training:
            self._remember_center(teacher_logits)
        return DINOOutput(loss=loss, embeddings=features[0][:batch_size], teacher_logits=teacher_logits,
                          student_logits=student_logits)

    @torch.no_grad()
    def _remember_center(self, teacher_logits: torch.Tensor) -> None:
        """Keep the global-batch sum of this micro-batch's teacher outputs for :meth:`on_train_step_end`
        (the official ``update_center``: sum, all_reduce, divide by the global count), in the centre's dtype."""
        flat = teacher_logits.reshape(-1, teacher_logits.shape[-1]).to(self.center.dtype)
        sums = all_reduce_sum(flat.sum(dim=0))  # (K,)
        count = all_reduce_sum(flat.new_tensor(float(flat.shape[0])))
        self._pending_centers.append((sums, count))
