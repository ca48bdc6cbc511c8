"""Losses: one file per family, plain ``nn.Module``s over tensors."""

from hfssl.losses.contrastive import NTXentLoss
from hfssl.losses.self_distillation import BYOLLoss

__all__ = ["NTXentLoss", "BYOLLoss"]
