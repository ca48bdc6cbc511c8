"""Losses: one file per family, plain ``nn.Module``s over tensors."""

from hfssl.losses.clustering import SwAVLoss, sinkhorn_knopp
from hfssl.losses.contrastive import InfoNCELoss, MoCoV3Loss, NTXentLoss, SimCSELoss
from hfssl.losses.redundancy_reduction import BarlowTwinsLoss, BarlowTwinsLossOutput, VICRegLoss, VICRegLossOutput
from hfssl.losses.self_distillation import BYOLLoss, SimSiamLoss
from hfssl.losses.self_distillation import DINOLoss, dino_center_update

__all__ = ["NTXentLoss", "InfoNCELoss", "MoCoV3Loss", "SimCSELoss", "BYOLLoss", "SimSiamLoss", "VICRegLoss", "VICRegLossOutput",
           "BarlowTwinsLoss", "BarlowTwinsLossOutput",
           "DINOLoss", "dino_center_update", "SwAVLoss", "sinkhorn_knopp"]

# Contrastive image-text (CLIP, LiT, SigLIP).
from hfssl.losses.image_text import CLIPLoss, SigLIPLoss  # noqa: E402

__all__ += ["CLIPLoss", "SigLIPLoss"]

# Distillation from a frozen teacher (feature distillation, SimCLRv2's phase 3).
from hfssl.losses.distillation import FeatureDistillationLoss, SoftTargetCrossEntropy  # noqa: E402

__all__ += ["FeatureDistillationLoss", "SoftTargetCrossEntropy"]
