"""Inpainting losses of the context encoder (Pathak et al. 2016, "Context Encoders: Feature Learning by Inpainting").

* :func:`masked_l2_loss`: the reconstruction loss of sec. 3.2 (eq. 1), ``||M * (x - F((1 - M) * x))||^2``, as the
  mean squared error over the *predicted region* only: the removed pixels, and optionally a band of ``overlap``
  visible pixels around them whose error is weighted ``overlap_weight`` times (the paper predicts a slightly
  larger region than it removes and weights the overlap 10x; the official ``train.lua``: ``overlapPred`` pixels,
  ``overlapL2Weight = 10``). The visible context outside that region never enters the loss.
* :func:`discriminator_loss` and :func:`generator_adversarial_loss`: the adversarial term of sec. 3.2 (eq. 2) with
  the usual non-saturating generator loss (DCGAN, which the paper's code follows: the discriminator's binary cross
  entropy with real = 1 and fake = 0, and the generator's cross entropy with its fakes labelled real).

All take logits or pixels of any precision and compute in float32 (:func:`float32_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hfssl.losses.precision import float32_loss

__all__ = ["predicted_region", "region_weights", "masked_l2_loss", "discriminator_loss", "generator_adversarial_loss"]


def predicted_region(mask: torch.Tensor, overlap: int = 0) -> torch.Tensor:
    """The region the loss reads: the removed pixels ``mask`` ``(B, 1, H, W)`` (1 = removed) grown by ``overlap``
    pixels in every direction (a square dilation: every pixel within ``overlap`` rows and columns of a removed one)."""
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0 pixels, got {overlap}")
    mask = mask.float()
    if overlap == 0:
        return mask
    return F.max_pool2d(mask, kernel_size=2 * overlap + 1, stride=1, padding=overlap)


def region_weights(mask: torch.Tensor, overlap: int = 0, overlap_weight: float = 10.0) -> torch.Tensor:
    """Per-pixel weights ``(B, 1, H, W)`` of :func:`masked_l2_loss`: 1 on the removed pixels, ``overlap_weight`` on
    the band of :func:`predicted_region` around them, 0 on the rest of the context."""
    region = predicted_region(mask, overlap)
    removed = mask.float()
    return removed + overlap_weight * (region - removed)


@float32_loss
def masked_l2_loss(reconstruction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, overlap: int = 0,
                   overlap_weight: float = 10.0) -> torch.Tensor:
    """Weighted mean squared error over the predicted region.

    Args:
        reconstruction: the decoder's output ``(B, C, H, W)``.
        target: the clean images ``(B, C, H, W)``.
        mask: ``(B, 1, H, W)``, 1 where pixels were removed.
        overlap: width in pixels of the visible band around the hole that is predicted too (0: none).
        overlap_weight: the band's weight (the paper's 10).

    Returns:
        ``sum(w * (reconstruction - target)^2) / (C * |region|)``: with ``overlap = 0`` the mean squared error over
        the removed pixels and channels; a batch with nothing removed gives 0.
    """
    if reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} differ")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != target.shape[0] or mask.shape[2:] != target.shape[2:]:
        raise ValueError(f"mask must be (batch, 1, height, width) = {(target.shape[0], 1, *target.shape[2:])}, got "
                         f"{tuple(mask.shape)}")
    weights = region_weights(mask, overlap, overlap_weight)
    region_size = predicted_region(mask, overlap).sum() * target.shape[1]
    squared = (reconstruction - target).pow(2)
    return (weights * squared).sum() / region_size.clamp_min(1.0)


@float32_loss
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-mean(log D(real)) - mean(log(1 - D(fake)))`` with ``D = sigmoid(logits)`` (the official code's
    ``errD_real + errD_fake``); ``fake_logits`` are the discriminator's scores of *detached* reconstructions."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


@float32_loss
def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``-mean(log D(fake))``: the non-saturating generator loss (the fakes labelled real)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
