"""Relative patch position (Doersch et al. 2015): the method's spec, registered when hfssl discovers its methods."""

from typing import Any

from hfssl.configuration_utils import recipe_config_values, recipe_min_input_size
from hfssl.export import export_image_encoder
from hfssl.models.relative_patch.configuration_relative_patch import RelativePatchConfig
from hfssl.models.relative_patch.modeling_relative_patch import RelativePatchForPreTraining, RelativePatchOutput
from hfssl.models.relative_patch.task import RelativePatchInputs, make_patch_pairs
from hfssl.registry import (
    IMAGE,
    IMAGE_FEATURES,
    LAYER_FEATURES,
    PATCH_PRETEXT,
    PRETEXT_TASK,
    MethodSpec,
    Paper,
    register_method,
)
from hfssl.settings import RecipeError
from hfssl.views.grid import GridLayout, check_grid_recipe

PAPER = Paper(
    title="Unsupervised Visual Representation Learning by Context Prediction",
    url="https://arxiv.org/abs/1505.05192",
    bibtex=r"""@inproceedings{doersch2015context,
  title     = {Unsupervised Visual Representation Learning by Context Prediction},
  author    = {Doersch, Carl and Gupta, Abhinav and Efros, Alexei A.},
  booktitle = {IEEE International Conference on Computer Vision (ICCV)},
  year      = {2015}
}""",
)


def check_recipe(recipe: Any) -> None:
    """The patches fit the recipe's images and its backbone; colour dropping needs colour data."""
    values = recipe_config_values(RelativePatchConfig, recipe.model)
    try:
        layout = GridLayout(3, values["patch_size"], values["gap"], values["jitter"])
    except ValueError as error:
        raise RecipeError(f"model: {error}") from error
    check_grid_recipe(recipe, layout, recipe_min_input_size(RelativePatchConfig, recipe.model), "patch_size", "patches")
    if values["color_drop_channels"] and recipe.data.channels != 3:
        raise RecipeError(f"model.color_drop_channels={values['color_drop_channels']} drops colour channels, but "
                          f"data.channels is {recipe.data.channels}: grey images have no colour to drop; set "
                          "model.color_drop_channels=0")


def build_inputs(recipe: Any, data: Any) -> RelativePatchInputs:
    """The input builder: patch pairs of every batch on the device (:class:`RelativePatchInputs`)."""
    return RelativePatchInputs(recipe)


SPEC = register_method(MethodSpec(
    name="relative_patch",
    config_class=RelativePatchConfig,
    model_class=RelativePatchForPreTraining,
    modality=IMAGE,
    family=PATCH_PRETEXT,
    paper=PAPER,
    display_name="Relative patch position",
    build_inputs=build_inputs,
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES, PRETEXT_TASK),
    check_recipe=check_recipe,
))

__all__ = ["RelativePatchConfig", "RelativePatchForPreTraining", "RelativePatchInputs", "RelativePatchOutput",
           "make_patch_pairs", "SPEC"]
