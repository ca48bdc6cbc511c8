"""MoCo v3: query encoder with projection and prediction heads, a momentum encoder, and a symmetrised
contrastive loss over the global batch (Chen, Xie, He 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts, pool_features
from hfssl.heads import MLPHead
from hfssl.losses import MoCoV3Loss
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.moco_v3.configuration_moco_v3 import MoCoV3Config


@dataclass
class MoCoV3Output(ModelOutput):
    """Args:
    loss: ``ctr(q1, k2) + ctr(q2, k1)`` (Algorithm 1).
    embeddings: query-encoder backbone features of the first view, ``(B, hidden)``.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


def patch_projection(backbone: torch.nn.Module) -> torch.nn.Module | None:
    """The patch-embedding projection of a ViT-like backbone (``embeddings.patch_embeddings.projection``),
    or None for backbones without one."""
    patch_embeddings = getattr(getattr(backbone, "embeddings", None), "patch_embeddings", None)
    return getattr(patch_embeddings, "projection", None)


class MoCoV3ForPreTraining(HfsslPreTrainedModel):
    """MoCo v3 (Algorithm 1 of Chen, Xie, He 2021).

    Both views go through the query encoder ``f_q`` (backbone, projection MLP, prediction MLP) and the
    momentum encoder ``f_k`` (backbone and projection MLP, an EMA of the query encoder's with a
    momentum raised from ``teacher_momentum`` to 1 by a half cosine, the default
    :meth:`~hfssl.modeling_utils.HfsslPreTrainedModel.schedules`). There is no queue: the negatives
    are the keys of the other images of the global batch, gathered from every process
    (:class:`hfssl.losses.MoCoV3Loss`).

    BatchNorm. The heads use BatchNorm in every layer (sec. 3 / appendix), which the paper runs as
    SyncBatchNorm: set ``train.sync_batchnorm: true`` for multi-process runs (the recipes do), so
    the statistics, like the negatives, are those of the global batch (as in SimCLR sec. 5.1). No
    BN shuffling is needed: unlike MoCo v2 with a queue, every key the query is scored against
    comes from the same batch, normalised with the same statistics, so they carry no signature
    that singles out the positive.

    ViT stability (sec. 4.2): with ``freeze_patch_projection`` the patch projection keeps its random
    initialisation (``requires_grad=False`` set here, before the optimiser is built, so it is never
    updated and never decayed); the momentum encoder's copy therefore stays equal to it. The paper's
    fixed 2-D sin-cos position embeddings are not used: the exported model must stay a plain
    ``ViTModel``, whose position embeddings are learned.
    """

    config_class = MoCoV3Config
    teacher_pairs = (("teacher_backbone", "backbone"), ("teacher_projector", "projector"))

    def __init__(self, config: MoCoV3Config) -> None:
        super().__init__(config)
        hidden = backbone_hidden_size(config.backbone_config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        # BN after every Linear, the last one without affine (appendix: "BN ... in all layers of the
        # MLP heads, the output layer of the projector included").
        projector = dict(num_layers=config.projection_num_layers, batch_norm=True, last_batch_norm=True)
        self.projector = MLPHead(hidden, config.projection_hidden_dim, config.projection_dim, **projector)
        # The predictor as in the official builder: bias-free Linears, BN on the hidden layer, and for a
        # ViT (MoCo_ViT) a last BN without affine like the projector's; a ResNet's (MoCo_ResNet) has none.
        self.predictor = MLPHead(config.projection_dim, config.prediction_hidden_dim, config.projection_dim,
                                 num_layers=config.prediction_num_layers, batch_norm=True,
                                 last_batch_norm=config.predictor_ends_with_batch_norm, last_bias=False)
        self.teacher_backbone = build_backbone(config.backbone_config)
        self.teacher_projector = MLPHead(hidden, config.projection_hidden_dim, config.projection_dim, **projector)
        self.criterion = MoCoV3Loss(config.temperature, config.gather_distributed)
        self.post_init()
        self.copy_student_to_teacher()  # Algorithm 1: f_k.params = f_q.params
        self.freeze_teachers()
        if config.freeze_patch_projection:
            projection = patch_projection(self.backbone)
            if projection is not None:
                projection.requires_grad_(False)


    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> MoCoV3Output:
        """Args:
        pixel_values: two views of each image, ``(B, 2, C, H, W)``.
        """
        batch_size = pixel_values.shape[0]
        flat = self.flatten_views(pixel_values)  # (2B, C, H, W), view-major: both views share BN statistics
        features = self.get_embeddings(flat)  # (2B, hidden)
        queries = self.predictor(self.projector(features))  # (2B, projection_dim)
        with torch.no_grad():
            teacher_features = pool_features(self.teacher_backbone(pixel_values=flat), self.config.pooling)
            keys = self.teacher_projector(teacher_features)  # (2B, projection_dim)
        q1, q2 = queries[:batch_size], queries[batch_size:]
        k1, k2 = keys[:batch_size], keys[batch_size:]
        loss = self.criterion(q1, q2, k1, k2)
        return MoCoV3Output(loss=loss, embeddings=features[:batch_size])
