"""CIE Lab colour space for the colour-prediction methods (colorization, split-brain), as batched tensor ops.

The conversion is kornia's (``kornia.color.rgb_to_lab`` / ``lab_to_rgb``: sRGB, D65 white point, the CIE
1976 formulas; the same as ``skimage.color.rgb2lab``). ``rgb_to_lab`` followed by ``lab_to_rgb`` returns
the sRGB input within :data:`ROUND_TRIP_TOLERANCE` (``tests/views/test_lab.py``).

Encoders and decoders see *normalised* Lab, three linear maps chosen so that a plain transformers image
processor can produce them exactly from an 8-bit Lab image:

================  =====================  ======================  =================================
channel           range                  8-bit Lab image         normalised (what the networks see)
================  =====================  ======================  =================================
lightness ``L``   [0, 100]               ``L * 255 / 100``       ``(L - 50) / 50``, in [-1, 1]
``a``, ``b``      about [-110, 110]      ``a + 128``, ``b + 128``  ``a / 110``, ``b / 110``
================  =====================  ======================  =================================

The 8-bit Lab encoding is the usual one (PIL's ``LAB`` mode, OpenCV's ``COLOR_RGB2LAB`` for 8-bit
images). An image processor that rescales by 1/255 and normalises with :data:`LAB_PROCESSOR_MEAN` /
:data:`LAB_PROCESSOR_STD` maps it to the normalised Lab above: ``(L * 255 / 100 / 255 - 0.5) / 0.5 =
(L - 50) / 50`` and ``((a + 128) / 255 - 128 / 255) / (110 / 255) = a / 110``. The scale 110 is the
extent of the ``ab`` gamut of sRGB that Zhang et al. (2016, sec. 2.1) quantise.
"""

from __future__ import annotations

import torch

#: ``max |lab_to_rgb(rgb_to_lab(x)) - x|`` over sRGB in [0, 1] stays below this (float32; measured ~2e-6).
ROUND_TRIP_TOLERANCE = 1e-4
#: Lightness ``L`` is normalised as ``(L - LIGHTNESS_CENTER) / LIGHTNESS_SCALE``.
LIGHTNESS_CENTER = 50.0
LIGHTNESS_SCALE = 50.0
#: ``a`` and ``b`` are normalised as ``a / AB_SCALE``.
AB_SCALE = 110.0
#: The image processor's mean / std that turn an 8-bit Lab image, rescaled by 1/255, into normalised Lab.
LAB_PROCESSOR_MEAN = (0.5, 128 / 255, 128 / 255)
LAB_PROCESSOR_STD = (0.5, AB_SCALE / 255, AB_SCALE / 255)


def _check_rgb(rgb: torch.Tensor, name: str) -> None:
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"{name} needs RGB images (batch, 3, height, width), got shape {tuple(rgb.shape)}; "
                         "the colour-prediction methods train on colour data: set data.channels=3")


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``(B, 3, H, W)`` in [0, 1] -> CIE Lab ``(B, 3, H, W)``: ``L`` in [0, 100], ``a``, ``b`` about [-110, 110].

    Values outside [0, 1] are clamped first (a normalised view un-normalised may leave them by rounding).
    Computed in float32 whatever the input's dtype.
    """
    from kornia.color import rgb_to_lab as kornia_rgb_to_lab  # imported on use: kornia adds 0.5 s to `import hfssl`

    _check_rgb(rgb, "rgb_to_lab")
    return kornia_rgb_to_lab(rgb.float().clamp(0.0, 1.0))


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab ``(B, 3, H, W)`` -> sRGB in [0, 1] (colours outside the sRGB gamut clipped)."""
    if lab.ndim != 4 or lab.shape[1] != 3:
        raise ValueError(f"lab_to_rgb needs Lab images (batch, 3, height, width), got shape {tuple(lab.shape)}")
    from kornia.color import lab_to_rgb as kornia_lab_to_rgb

    return kornia_lab_to_rgb(lab.float(), clip=True)


def normalise_lab(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab ``(B, 3, H, W)`` -> normalised lightness ``(B, 1, H, W)`` and colour ``(B, 2, H, W)`` (table above)."""
    lightness = (lab[:, :1] - LIGHTNESS_CENTER) / LIGHTNESS_SCALE
    return lightness, lab[:, 1:] / AB_SCALE


def denormalise_lab(lightness: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`normalise_lab`: ``(B, 1, H, W)`` and ``(B, 2, H, W)`` -> Lab ``(B, 3, H, W)``."""
    return torch.cat([lightness * LIGHTNESS_SCALE + LIGHTNESS_CENTER, color * AB_SCALE], dim=1)


def unnormalise_rgb(pixel_values: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """RGB normalised with ``mean`` / ``std`` (the recipe's ``views``) -> RGB in [0, 1], clamped."""
    _check_rgb(pixel_values, "the colour-prediction methods")
    shape = (1, 3, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=pixel_values.device).view(shape)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=pixel_values.device).view(shape)
    return (pixel_values.float() * std_t + mean_t).clamp(0.0, 1.0)


def rgb_to_normalised_lab(pixel_values: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised RGB views ``(B, 3, H, W)`` -> normalised lightness ``(B, 1, H, W)`` and colour ``(B, 2, H, W)``."""
    return normalise_lab(rgb_to_lab(unnormalise_rgb(pixel_values, mean, std)))


def lab_to_8bit(lab: torch.Tensor) -> torch.Tensor:
    """Lab ``(B, 3, H, W)`` -> the 8-bit Lab encoding ``(L * 255 / 100, a + 128, b + 128)`` as float in [0, 255],
    unrounded (the exported encoders' documented input; rounding to uint8 costs at most 0.2 L / 0.5 ab units)."""
    scale = torch.tensor([255 / 100, 1.0, 1.0], device=lab.device).view(1, 3, 1, 1)
    offset = torch.tensor([0.0, 128.0, 128.0], device=lab.device).view(1, 3, 1, 1)
    return (lab * scale + offset).clamp(0.0, 255.0)


#: ``encoder_input`` of a model config whose exported encoder takes CIE Lab instead of RGB (the model card
#: then shows how to prepare its input): the lightness alone, as three equal channels (colorization) ...
LAB_LIGHTNESS_INPUT = "lab-lightness"
#: ... or the three Lab channels (split-brain).
LAB_INPUT = "lab"
