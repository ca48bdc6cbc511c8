"""Noise as a view operation (the seeds list "adding noise" among the augmentations; Vincent et al. 2008 / 2010
for the three kinds of corruption of a denoising autoencoder).

Every kind is a switch by its strength (0 = off, which draws nothing from the generator), applied in this
order to images in [0, 1] (``(B, C, H, W)``, float):

* ``gaussian_std``: additive Gaussian noise of that standard deviation (in [0, 1] pixel units) on every
  pixel and channel, the result clipped to [0, 1];
* ``salt_pepper``: the fraction of pixel positions set to black or white (each with probability 1/2; all
  channels of a position together);
* ``masking``: the fraction of pixel positions set to 0 (Vincent et al.'s masking noise, all channels).

Every random number comes from the caller's ``torch.Generator`` (same seed -> same noise). Recipes switch it on
for any vision method with ``views.noise_gaussian_std`` / ``views.noise_salt_pepper`` / ``views.noise_masking``
(applied to every training view after the photometric steps, before normalisation; never in the evaluation
transform); the denoising autoencoder corrupts its input with the same function (its own ``model.noise_*``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NoiseSettings:
    """Strengths of the three kinds of noise (0 = off); see the module docstring."""

    gaussian_std: float = 0.0
    salt_pepper: float = 0.0
    masking: float = 0.0

    def check(self, prefix: str) -> None:
        """``ValueError`` naming ``<prefix>gaussian_std`` etc. for a strength out of range."""
        if not 0.0 <= self.gaussian_std <= 10.0:
            raise ValueError(f"{prefix}gaussian_std must be in [0, 10] (pixel units, images in [0, 1]), "
                             f"got {self.gaussian_std!r}")
        for name in ("salt_pepper", "masking"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{prefix}{name} must be a fraction of pixels in [0, 1], got {value!r}")

    @property
    def active(self) -> bool:
        return self.gaussian_std > 0 or self.salt_pepper > 0 or self.masking > 0

    def describe(self) -> str:
        """``gaussian_noise(0.3)+masking(0.25)``: the kinds switched on, for captions and logs."""
        parts = [f"{name}({value:g})" for name, value in (("gaussian_noise", self.gaussian_std),
                                                           ("salt_and_pepper", self.salt_pepper),
                                                           ("masking", self.masking)) if value > 0]
        return "+".join(parts) or "none"


def add_noise(images: torch.Tensor, settings: NoiseSettings, generator: torch.Generator) -> torch.Tensor:
    """``images`` in [0, 1] ``(B, C, H, W)`` with the noise of ``settings`` (a new tensor; the input is kept)."""
    if not settings.active:
        return images
    batch, _, height, width = images.shape
    result = images
    if settings.gaussian_std > 0:
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        result = (result + settings.gaussian_std * noise).clamp(0.0, 1.0)
    if settings.salt_pepper > 0:
        hit = torch.rand((batch, 1, height, width), generator=generator, device=images.device) < settings.salt_pepper
        salt = torch.rand((batch, 1, height, width), generator=generator, device=images.device) < 0.5
        result = torch.where(hit, salt.to(images.dtype), result)
    if settings.masking > 0:
        hit = torch.rand((batch, 1, height, width), generator=generator, device=images.device) < settings.masking
        result = result.masked_fill(hit, 0.0)
    return result


def add_noise_normalized(pixel_values: torch.Tensor, settings: NoiseSettings, mean: Sequence[float],
                         std: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """:func:`add_noise` on normalised images: the normalisation (``mean`` / ``std`` per channel) undone, the
    noise added in [0, 1], and normalised again."""
    if not settings.active:
        return pixel_values
    shape = (1, -1, 1, 1)
    mean_t = torch.tensor(tuple(mean), dtype=pixel_values.dtype, device=pixel_values.device).view(shape)
    std_t = torch.tensor(tuple(std), dtype=pixel_values.dtype, device=pixel_values.device).view(shape)
    noisy = add_noise(pixel_values * std_t + mean_t, settings, generator)
    return (noisy - mean_t) / std_t
