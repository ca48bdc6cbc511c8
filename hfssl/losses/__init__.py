"""Losses: one file per family, plain ``nn.Module``s over tensors."""

from hfssl.losses.contrastive import InfoNCELoss, MoCoV3Loss, NTXentLoss
from hfssl.losses.self_distillation import BYOLLoss

__all__ = ["NTXentLoss", "InfoNCELoss", "MoCoV3Loss", "BYOLLoss"]
