"""Data and recipe checks of the colour-prediction methods (colorization and split-brain).

Both train on colour images (``data.channels: 3``; the images' own colours are the targets) and take one
crop/flip view of each image (the ``single_view`` generator, :func:`hfssl.views.view_inputs`). The model
converts the normalised RGB view to Lab itself (:mod:`hfssl.views.lab`), a fixed function like MAE's
patchify, so that evaluation's features (``get_embeddings`` on the evaluation transform's RGB) and
training see the same lightness. To undo the RGB normalisation it needs the recipe's ``views.mean`` /
``views.std``: :func:`color_training_data` hands them (and the image size, the decoder's output size) to the
model config through ``TrainingData.config_updates``.
"""

from __future__ import annotations

from typing import Any

from hfssl.data import images
from hfssl.data.training import TrainingData
from hfssl.settings import RecipeError


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
