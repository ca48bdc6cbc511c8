"""MoCo v2: a query encoder, a momentum key encoder and InfoNCE against a queue of negatives
(He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning"; Chen et al.
2020, "Improved Baselines with Momentum Contrastive Learning")."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts, pool_features
from hfssl.distributed import gather_no_grad, gather_sizes, is_distributed, rank, world_size
from hfssl.heads import MLPHead
from hfssl.losses import InfoNCELoss
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.moco.configuration_moco import MoCoConfig
from hfssl.schedules import Schedule, constant


@dataclass
class MoCoOutput(ModelOutput):
    """Args:
    loss: InfoNCE of the queries (first view) against their keys (second view) and the queue.
    embeddings: query-encoder backbone features of the first view, ``(B, hidden)``.
    positive_keys: this rank's normalised keys ``(B, projection_dim)``, enqueued after the optimiser step.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    positive_keys: torch.FloatTensor | None = None


class MoCoForPreTraining(HfsslPreTrainedModel):
    """MoCo v2 (Algorithm 1 of He et al. with the MLP head and temperature of Chen et al.).

    The first view of each image is the query ``q = f_q(x_q)``, the second the key
    ``k = f_k(x_k)`` from the momentum encoder (backbone + its own head, an EMA of the query
    encoder, sec. 3.2). InfoNCE (eq. 1) scores ``q`` against its key and the K keys of the queue.

    The queue (``queue``: ``(K, projection_dim)`` unit rows, ``queue_pointer``: ``(1,)`` int64) is
    training-only state: non-persistent buffers named in ``training_state``, so checkpoints hold
    them and resume is exact, while ``save_pretrained``, the exported encoder and the parameter
    counts leave them out. It is updated in :meth:`on_train_step_end`, after the optimiser step,
    with the keys of that step gathered from every process in rank order (the official code's
    ``concat_all_gather``), so the loss of a step always sees the queue as it was before the
    step and every rank holds the same queue. Keys of several micro-batches (gradient
    accumulation) are enqueued in order. The gather is done in ``forward`` (every rank runs it),
    so the hook itself needs no collective.

    Batch-norm leakage (He et al. sec. 3.3). With BatchNorm the query and its positive key,
    normalised with the statistics of the same sub-batch, can "communicate" through them and the
    model finds the positive by that signature instead of by content. The remedy chosen here is
    the paper's *shuffling BN* (``config.shuffle_batch_norm``, on by default): in multi-process
    runs the key encoder gets a random permutation of the global batch (images gathered without
    gradients; one permutation, taken from rank 0, for every rank), each rank encodes its slice,
    and the keys are gathered and put back in order. The query and its key are then normalised
    over different subsets. SyncBatchNorm (``train.sync_batchnorm``) was not chosen: global
    statistics still give the query and all of this step's keys the same batch, and with a queue
    the current keys are exactly the positives, so the signature still singles them out; keep
    ``train.sync_batchnorm`` off for MoCo v2 (the recipe check refuses it while shuffling). In a single process
    there is one BatchNorm batch and nothing to shuffle across: as in the official code, which
    requires several GPUs for this reason, single-process runs are not protected. The MLP head of
    MoCo v2 has no BatchNorm, so the backbone is the only place where the leak can happen.
    """

    config_class = MoCoConfig
    teacher_pairs = (("teacher_backbone", "backbone"), ("teacher_projector", "projector"))
    training_state = ("queue", "queue_pointer")

    def __init__(self, config: MoCoConfig) -> None:
        super().__init__(config)
        hidden = backbone_hidden_size(config.backbone_config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        # MoCo v2's head: Linear -> ReLU -> Linear without BatchNorm (Chen et al. sec. 3).
        head = dict(num_layers=config.projection_num_layers, batch_norm=False)
        self.projector = MLPHead(hidden, config.projection_hidden_dim, config.projection_dim, **head)
        self.teacher_backbone = build_backbone(config.backbone_config)
        self.teacher_projector = MLPHead(hidden, config.projection_hidden_dim, config.projection_dim, **head)
        self.criterion = InfoNCELoss(config.temperature)
        # Filled by reset_training_state (through post_init, and after from_pretrained, which
        # leaves non-persistent buffers uninitialised).
        self.register_buffer("queue", torch.empty(config.queue_size, config.projection_dim), persistent=False)
        self.register_buffer("queue_pointer", torch.zeros(1, dtype=torch.long), persistent=False)
        # Gathered keys of this step's micro-batches, waiting for on_train_step_end. Empty at every
        # checkpoint (checkpoints are written after the hook), so it needs no saving.
        self._pending_keys: list[torch.Tensor] = []
        self.post_init()
        # The key encoder starts as a copy of the query encoder (Algorithm 1: f_k.params = f_q.params).
        self.copy_student_to_teacher()
        self.freeze_teachers()

    @torch.no_grad()
    def reset_training_state(self) -> None:
        """The queue starts as random unit vectors, as in the official code (negatives that the first
        K / N steps replace), with the pointer at slot 0."""
        self.queue.copy_(F.normalize(torch.randn(self.queue.shape, device=self.queue.device), dim=1))
        self.queue_pointer.zero_()


    # ---- per-step hooks ------------------------------------------------------------------------

    def schedules(self) -> dict[str, Schedule]:
        """MoCo keeps m constant (He et al. sec. 3.2 and 4: m = 0.999); a recipe may still schedule it."""
        return {"teacher_momentum": constant(float(self.config.teacher_momentum))}

    def on_train_step_end(self, step: int, scheduled: dict[str, float]) -> None:
        """EMA update of the key encoder, then enqueue this step's gathered keys (Algorithm 1)."""
        super().on_train_step_end(step, scheduled)
        pending, self._pending_keys = self._pending_keys, []
        for keys in pending:
            self.enqueue(keys)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` ``(n, projection_dim)`` into the queue FIFO: row ``i`` goes to slot
        ``(pointer + i) % K``, overwriting the oldest keys, and the pointer moves on by ``n``
        (modulo K). Unlike the official code, n need not divide K: writes wrap around the end."""
        size = self.queue.shape[0]
        count = keys.shape[0]
        pointer = int(self.queue_pointer.item())
        if count > size:  # only the last K rows survive; they land where the full write would put them
            pointer = (pointer + count - size) % size
            keys, count = keys[-size:], size
        slots = (pointer + torch.arange(count, device=self.queue.device)) % size
        self.queue[slots] = keys.to(device=self.queue.device, dtype=self.queue.dtype)
        self.queue_pointer.fill_((pointer + count) % size)

    # ---- keys ----------------------------------------------------------------------------------

    def _encode_keys(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = pool_features(self.teacher_backbone(pixel_values=pixel_values), self.config.pooling)
        return F.normalize(self.teacher_projector(features), dim=1)  # (B, projection_dim)

    @torch.no_grad()
    def compute_keys(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys of the key views ``(B, C, H, W)``: ``(this rank's (B, D), every rank's (N, D))``,
        normalised, the global ones in rank order. In multi-process training with
        ``shuffle_batch_norm`` the key encoder sees a shuffled global batch (class docstring);
        the permutation is drawn with ``generator`` (default: the global RNG) on rank 0."""
        shuffle = self.training and self.config.shuffle_batch_norm and is_distributed()
        if not shuffle:
            keys = self._encode_keys(pixel_values)
            return keys, gather_no_grad(keys)
        sizes = gather_sizes(pixel_values.shape[0], pixel_values.device)
        offset, total = sum(sizes[: rank()]), sum(sizes)
        everything = gather_no_grad(pixel_values, sizes)  # (N, C, H, W), rank order
        permutation = torch.randperm(total, generator=generator,
                                     device=generator.device if generator is not None else "cpu")
        # Every rank must use one permutation: take rank 0's (a gather serves as the broadcast).
        permutation = gather_no_grad(permutation.to(pixel_values.device).unsqueeze(0), [1] * world_size())[0]
        mine = everything[permutation[offset : offset + pixel_values.shape[0]]]
        shuffled = gather_no_grad(self._encode_keys(mine), sizes)  # row j: the key of image permutation[j]
        keys = torch.empty_like(shuffled)
        keys[permutation] = shuffled  # undo the shuffle: (N, D) in rank order
        return keys[offset : offset + pixel_values.shape[0]], keys

    # ---- forward -------------------------------------------------------------------------------

    def forward(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None,
                return_dict: bool | None = None, **kwargs) -> MoCoOutput:
        """Args:
        pixel_values: two views of each image, ``(B, 2, C, H, W)``: view 0 is the query, view 1 the key.
        generator: draws the shuffling-BN permutation (multi-process training only).
        """
        if pixel_values.ndim != 5 or pixel_values.shape[1] != 2:
            raise ValueError(f"MoCoForPreTraining expects pixel_values of shape (batch, 2 views, channels, height, "
                             f"width), got {tuple(pixel_values.shape)}; set views.num_views=2")
        features = self.get_embeddings(pixel_values[:, 0])  # (B, hidden)
        queries = self.projector(features)  # (B, projection_dim)
        keys, all_keys = self.compute_keys(pixel_values[:, 1], generator)
        loss = self.criterion(queries, keys, self.queue)
        if self.training:
            self._remember_keys(all_keys)
        return MoCoOutput(loss=loss, embeddings=features, positive_keys=keys)

    def _remember_keys(self, keys: torch.Tensor) -> None:
        """Queue ``keys`` for :meth:`on_train_step_end`. Forward passes without the engine (no hook)
        must not pile up keys: the oldest batches are dropped once the newer ones fill the queue
        alone, which is exact, since those keys would be overwritten anyway."""
        self._pending_keys.append(keys.detach())
        size = self.queue.shape[0]
        while len(self._pending_keys) > 1 and sum(k.shape[0] for k in self._pending_keys[1:]) >= size:
            self._pending_keys.pop(0)
