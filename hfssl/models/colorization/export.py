"""Export of the colour-prediction encoders: the plain transformers backbone and an image processor that takes a
prepared CIE Lab image.

transformers' image processors cannot compute CIE Lab (a non-linear function of RGB), so the exported
encoder's input is prepared outside the processor, in the steps the model card shows: resize the RGB image to
the training size, convert it to Lab (kornia's ``rgb_to_lab`` or ``skimage.color.rgb2lab``: sRGB, D65) and
encode it as an 8-bit Lab image ``(L * 255 / 100, a + 128, b + 128)`` as float, unrounded, ``(H, W, 3)``.
The processor then only rescales by 1/255 and normalises, which maps that encoding exactly to the normalised
Lab the networks saw in training (:mod:`hfssl.views.lab`); it does not resize (its resize would round the
floats to 8 bits) and does not convert to RGB.

* colorization: the lightness alone, repeated on three channels; the one-channel encoder is exported with
  three input channels that compute it on their ITU-R 601 luma (:func:`hfssl.export.grey_to_rgb_backbone`),
  which for three equal channels is the lightness itself;
* split-brain: the three Lab channels, for its single ResNet with block-diagonal weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfssl.export import export_encoder


def lab_image_processor(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """A ``ViTImageProcessor`` for prepared ``(H, W, 3)`` 8-bit Lab images of ``image_size`` px: rescale by 1/255 and
    normalise with ``mean`` / ``std``; no resize, no RGB conversion."""
    from transformers import ViTImageProcessor  # imported on use, as hfssl.export does (a warning without torchvision)

    return ViTImageProcessor(do_resize=False, size={"height": image_size, "width": image_size}, resample=2,
                             do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=list(mean),
                             image_std=list(std), do_convert_rgb=False)


def export_image_size(model: Any, context: Any) -> int:
    """The training image size: the recipe's (``views.crop_size`` or ``data.image_size``), else the config's."""
    recipe = context.recipe
    if recipe is not None:
        return int(recipe.views.crop_size or recipe.data.image_size)
    return int(model.config.image_size)


def export_lightness_encoder(model: Any, output_dir: Path, context: Any) -> Path:
    """``MethodSpec.export`` of colorization: the lightness encoder with three equal input channels and its
    processor (``(L * 255 / 100 - 127.5) / 127.5 = (L - 50) / 50``, the training normalisation)."""
    image_size = export_image_size(model, context)
    processor = lab_image_processor(image_size, (0.5,) * 3, (0.5,) * 3)
    return export_encoder(model, output_dir, image_size, (0.5,), (0.5,), channels=1, processor=processor)
