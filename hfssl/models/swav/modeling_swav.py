"""SwAV: swapped prediction of online cluster codes (Caron et al. 2020, "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments")."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, encode_crops, freeze_unused_backbone_parts
from hfssl.heads import MLPHead
from hfssl.losses import SwAVLoss, sinkhorn_knopp
from hfssl.modeling_utils import Freeze, HfsslPreTrainedModel
from hfssl.models.swav.configuration_swav import SwAVConfig


@dataclass
class SwAVOutput(ModelOutput):
    """Args:
    loss: the swapped-prediction loss.
    embeddings: backbone features of the first global crop, ``(B, hidden)``.
    scores: prototype scores of every crop ``(V, B, K)``, global crops first.
    codes: the Sinkhorn codes of the assigned crops ``(A, B, K)``.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    scores: torch.FloatTensor | None = None
    codes: torch.FloatTensor | None = None


class SwAVForPreTraining(HfsslPreTrainedModel):
    """SwAV with multi-crop (Caron et al. 2020, sec. 3 and Algorithm 1).

    Every crop (``G`` global crops ``(B, G, C, S, S)``, ``L`` local crops ``(B, L, C, s, s)``) goes
    through the backbone (one pass per crop size) and the projection MLP, is L2-normalised and scored
    against the prototypes ``C`` (``prototypes.weight``, ``(K, D)``), kept L2-normalised: they are
    normalised when the model is built and after every optimiser step (the official code normalises
    them at the start of each iteration; the two coincide). Codes ``q`` of the first
    ``num_assigned_views`` global crops come from :func:`hfssl.losses.sinkhorn_knopp` on the detached
    scores, with the sums taken over every process; every other crop predicts them (:class:`SwAVLoss`).

    The optional queue (``config.queue_size > 0``): ``queue`` ``(A, Q, D)`` holds the normalised
    features of past batches per assigned crop, newest first, and ``queue_count`` how many rows are
    filled. Both are training-only state (checkpointed, exact resume, never released). From optimiser
    step ``queue_start_step`` on, each step's features are pushed in after the step; once the queue
    is full its rows, scored against the current prototypes, join the batch in the Sinkhorn-Knopp
    problem (only the batch's codes are kept), which equipartitions over more samples than a small
    batch has (paper sec. 4.1, "small batches").

    The prototypes are frozen for ``freeze_prototypes_epochs`` (the official ``freeze_prototypes_niters``).
    """

    config_class = SwAVConfig
    training_state = ("queue", "queue_count")

    def __init__(self, config: SwAVConfig) -> None:
        super().__init__(config)
        hidden = backbone_hidden_size(config.backbone_config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        self.projector = MLPHead(hidden, config.projection_hidden_dim, config.projection_dim)
        self.prototypes = nn.Linear(config.projection_dim, config.num_prototypes, bias=False)
        self.criterion = SwAVLoss(config.temperature)
        self.register_buffer("queue", torch.zeros(config.num_assigned_views, config.queue_size, config.projection_dim),
                             persistent=False)
        self.register_buffer("queue_count", torch.zeros(1, dtype=torch.long), persistent=False)
        # Features of the assigned crops of this step's micro-batches, (A, B, D) each, waiting for
        # on_train_step_end; empty at every checkpoint (written after the hook).
        self._pending_features: list[torch.Tensor] = []
        self.post_init()
        self.normalize_prototypes()

    # ---- per-step hooks ------------------------------------------------------------------------

    def schedules(self) -> dict:
        return {}

    def parameter_freezes(self) -> list[Freeze]:
        if self.config.freeze_prototypes_epochs <= 0:
            return []
        return [Freeze("prototypes.*", epochs=float(self.config.freeze_prototypes_epochs),
                       key="model.freeze_prototypes_epochs")]

    def on_train_step_end(self, step: int, scheduled: dict[str, float]) -> None:
        """Normalise the prototypes, then push this step's features into the queue (from ``queue_start_step``)."""
        self.normalize_prototypes()
        pending, self._pending_features = self._pending_features, []
        if self.config.queue_size > 0 and step >= self.config.queue_start_step:
            for features in pending:
                self.enqueue(features)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """``C <- C / ||C||`` row by row (the official code, at every iteration)."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    @torch.no_grad()
    def enqueue(self, features: torch.Tensor) -> None:
        """Push ``features`` ``(A, n, D)`` to the front of the queue, dropping the oldest rows."""
        size = self.queue.shape[1]
        count = min(features.shape[1], size)
        features = features[:, -count:].to(device=self.queue.device, dtype=self.queue.dtype)
        # Newest first, as the official code: queue[:, n:] = queue[:, :-n]; queue[:, :n] = features.
        self.queue.copy_(torch.cat([features, self.queue[:, : size - count]], dim=1))
        self.queue_count.fill_(min(int(self.queue_count.item()) + count, size))

    @property
    def queue_is_full(self) -> bool:
        return self.config.queue_size > 0 and int(self.queue_count.item()) >= self.config.queue_size

    # ---- forward -------------------------------------------------------------------------------

    def forward(self, pixel_values: torch.Tensor, local_pixel_values: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> SwAVOutput:
        """Args:
        pixel_values: global crops ``(B, G, C, S, S)`` with ``G >= num_assigned_views`` (views.num_views).
        local_pixel_values: local crops ``(B, L, C, s, s)`` (views.num_local_views), or None.
        """
        assigned = self.config.num_assigned_views
        if pixel_values.ndim != 5 or pixel_values.shape[1] < assigned:
            raise ValueError(f"SwAVForPreTraining expects global crops of shape (batch, views >= {assigned}, channels, "
                             f"height, width), got {tuple(pixel_values.shape)}; set views.num_views >= {assigned} "
                             "(num_assigned_views)")
        batch_size, num_global = pixel_values.shape[:2]
        num_local = 0 if local_pixel_values is None else local_pixel_values.shape[1]
        if num_global + num_local < 2:
            raise ValueError("SwAV needs at least two crops per image: set views.num_views=2 (and views.num_local_views)")
        if local_pixel_values is not None and (local_pixel_values.ndim != 5 or local_pixel_values.shape[0] != batch_size):
            raise ValueError(f"local_pixel_values must be (batch={batch_size}, local views, channels, height, width), "
                             f"got {tuple(local_pixel_values.shape)}")
        crops = [pixel_values.transpose(0, 1).reshape(-1, *pixel_values.shape[2:])]  # (G * B, C, S, S), view-major
        if num_local:
            crops.append(local_pixel_values.transpose(0, 1).reshape(-1, *local_pixel_values.shape[2:]))
        features = [encode_crops(self.backbone, flat, self.config.pooling) for flat in crops]
        embeddings = F.normalize(self.projector(torch.cat(features)), dim=1)  # (V * B, D)
        scores = self.prototypes(embeddings).view(num_global + num_local, batch_size, -1)  # (V, B, K)
        assigned_embeddings = embeddings[: assigned * batch_size].detach().view(assigned, batch_size, -1)
        codes = self.compute_codes(scores[:assigned], assigned_embeddings)
        loss = self.criterion(scores, codes)
        if self.training and self.config.queue_size > 0:
            self._remember_features(assigned_embeddings)
        return SwAVOutput(loss=loss, embeddings=features[0][:batch_size], scores=scores, codes=codes)

    @torch.no_grad()
    def compute_codes(self, scores: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Codes ``(A, B, K)`` of the assigned crops' scores ``(A, B, K)``; with a full queue, its rows
        (features ``(A, Q, D)`` scored against the current prototypes) join each Sinkhorn problem."""
        codes = []
        use_queue = self.training and self.queue_is_full
        for index in range(scores.shape[0]):
            problem = scores[index].detach()
            if use_queue:
                queued = self.prototypes(self.queue[index].to(problem.dtype))  # (Q, K)
                problem = torch.cat([queued, problem])
            codes.append(sinkhorn_knopp(problem, self.config.sinkhorn_epsilon,
                                        self.config.sinkhorn_iterations)[-scores.shape[1]:])
        return torch.stack(codes)

    def _remember_features(self, features: torch.Tensor) -> None:
        """Keep ``(A, B, D)`` for the queue; forward passes without the engine keep only what the queue holds."""
        self._pending_features.append(features)
        size = self.config.queue_size
        while len(self._pending_features) > 1 and sum(f.shape[1] for f in self._pending_features[1:]) >= size:
            self._pending_features.pop(0)
