"""The recipe's ``views`` section: augmentations made on the training device (see :mod:`hfssl.views`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hfssl.settings import RecipeError
from hfssl.views.noise import NoiseSettings


@dataclass
class ViewsConfig:
    """Augmentations applied on the training device to a batch of uint8 images.

    Defaults follow SimCLR/BYOL (Chen et al. 2020, Grill et al. 2020, appendix B) scaled for
    small images; recipes override per method. ``mean``/``std`` are the normalisation that is
    also written into the exported image processor.
    """

    num_views: int = 2
    crop_size: int | None = None  # defaults to data.image_size
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    num_local_views: int = 0
    local_crop_size: int = 16
    local_crop_scale: tuple[float, float] = (0.05, 0.2)
    flip_prob: float = 0.5
    color_jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    # Rotation as an augmentation (issue 21): with probability rotation_prob a view is turned counter-clockwise
    # by one of rotation_degrees, chosen uniformly: multiples of 90 are exact, other angles (small ones such as
    # [-10, -5, 5, 10]) are resampled bilinearly with black corners. Off by default; the eval transform never rotates.
    rotation_prob: float = 0.0
    rotation_degrees: tuple[float, ...] = (90.0, 180.0, 270.0)
    # Noise (issue 22; hfssl/views/noise.py): each kind off at 0, applied to every training view after the
    # photometric steps and before normalisation, seeded by the generator; the eval transform never adds noise.
    noise_gaussian_std: float = 0.0
    noise_salt_pepper: float = 0.0
    noise_masking: float = 0.0
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    # Asymmetric per-view probabilities (BYOL: blur 1.0/0.1, solarize 0.0/0.2). When set, they
    # replace blur_prob / solarize_prob for view i.
    blur_prob_per_view: tuple[float, ...] | None = None
    solarize_prob_per_view: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("flip_prob", "color_jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob", "rotation_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise RecipeError(f"views.{name} must be a probability in [0, 1], got {value!r}")
        if not self.rotation_degrees or not all(math.isfinite(value) for value in self.rotation_degrees):
            raise RecipeError(f"views.rotation_degrees must list at least one finite angle in degrees (for example "
                              f"[90, 180, 270] or [-10, 10]), got {self.rotation_degrees!r}")
        try:
            self.noise.check("views.noise_")
        except ValueError as error:
            raise RecipeError(str(error)) from None
        if self.num_views < 1:
            raise RecipeError(f"views.num_views must be >= 1, got {self.num_views!r}")
        for name in ("crop_scale", "local_crop_scale"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high <= 1.0:
                raise RecipeError(f"views.{name} must satisfy 0 < low <= high <= 1, got {(low, high)!r}")

    @property
    def noise(self) -> NoiseSettings:
        """The ``noise_*`` keys as :class:`~hfssl.views.noise.NoiseSettings` (all 0: no noise)."""
        return NoiseSettings(float(self.noise_gaussian_std), float(self.noise_salt_pepper), float(self.noise_masking))
