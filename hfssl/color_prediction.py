"""What the colour-prediction methods share (colorization, ``hfssl/models/colorization``; split-brain,
``hfssl/models/split_brain``): their config checks, data, recipe checks and export.

Data. Both train on colour images (``data.channels: 3``; the images' own colours are the targets) and take one
crop/flip view of each image (the ``single_view`` generator, :func:`hfssl.views.view_inputs`). The model
converts the normalised RGB view to Lab itself (:mod:`hfssl.views.lab`), a fixed function like MAE's
patchify, so that evaluation's features (``get_embeddings`` on the evaluation transform's RGB) and
training see the same input. To undo the RGB normalisation it needs the recipe's ``views.mean`` /
``views.std``: :func:`color_training_data` hands them (and the image size, the decoder's output size) to the
model config through ``TrainingData.config_updates``.

Export. transformers' image processors cannot compute CIE Lab (a non-linear function of RGB), so the exported
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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hfssl.configuration_utils import check_range
from hfssl.data import images
from hfssl.data.training import TrainingData
from hfssl.export import export_encoder
from hfssl.settings import RecipeError
from hfssl.views.lab import LAB_PROCESSOR_MEAN, LAB_PROCESSOR_STD


def check_color_settings(input_mean: Sequence[float], input_std: Sequence[float], image_size: int,
                         decoder_hidden_size: int, decoder_num_upsamples: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Validate the settings the colour-prediction configs share; returns ``input_mean`` / ``input_std`` as tuples."""
    mean, std = tuple(float(v) for v in input_mean), tuple(float(v) for v in input_std)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"input_mean / input_std are the RGB normalisation of the views (3 values each, std > 0), got "
                         f"{list(mean)} / {list(std)}; they are set from the recipe's views.mean / views.std")
    check_range("image_size", image_size, 1, 1 << 14)
    check_range("decoder_hidden_size", decoder_hidden_size, 1, 1 << 14)
    check_range("decoder_num_upsamples", decoder_num_upsamples, 0, 8)
    return mean, std


def color_config_updates(recipe: Any) -> dict[str, Any]:
    """The model config values taken from the recipe: ``input_mean``, ``input_std``, ``image_size``."""
    return {"input_mean": list(recipe.views.mean), "input_std": list(recipe.views.std),
            "image_size": int(recipe.views.crop_size or recipe.data.image_size)}


def color_training_data(recipe: Any, accelerator: Any) -> TrainingData:
    """``MethodSpec.build_data`` of the colour-prediction methods: the image loader, plus
    :func:`color_config_updates`."""
    data = images.build_training_data(recipe.data, accelerator)
    data.config_updates = {**data.config_updates, **color_config_updates(recipe)}
    return data


def check_color_recipe(recipe: Any) -> None:
    """Refuse grey data and grey views: there would be no colour to predict."""
    method = recipe.method
    if recipe.data.channels != 3:
        raise RecipeError(
            f"method {method} predicts colour from lightness, so it needs colour images: data.channels is "
            f"{recipe.data.channels}; set data.channels=3 and use a colour source (builtin:emoji, or your own RGB "
            "images). On grey data (digits, Fashion-MNIST) the colour channels are zero and the task is empty")
    if recipe.views.grayscale_prob > 0:
        raise RecipeError(
            f"method {method} predicts the colours of each view, so the views must keep them: views.grayscale_prob is "
            f"{recipe.views.grayscale_prob}; set views.grayscale_prob=0")


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


def export_lab_encoder(model: Any, output_dir: Path, context: Any) -> Path:
    """``MethodSpec.export`` of split-brain: the block-diagonal ResNet itself and a processor for prepared 8-bit
    Lab images."""
    image_size = export_image_size(model, context)
    processor = lab_image_processor(image_size, LAB_PROCESSOR_MEAN, LAB_PROCESSOR_STD)
    return export_encoder(model, output_dir, image_size, LAB_PROCESSOR_MEAN, LAB_PROCESSOR_STD, channels=3,
                          processor=processor)
