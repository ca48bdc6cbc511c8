"""Jigsaw puzzles (Noroozi & Favaro 2016): the method's spec, registered when hfssl discovers its methods."""

from typing import Any

from hfssl.configuration_utils import recipe_config_values, recipe_min_input_size
from hfssl.export import export_image_encoder
from hfssl.models.jigsaw.configuration_jigsaw import JigsawConfig
from hfssl.models.jigsaw.modeling_jigsaw import JigsawForPreTraining, JigsawOutput
from hfssl.models.jigsaw.task import JigsawInputs, make_jigsaw_puzzles
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
    title="Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles",
    url="https://arxiv.org/abs/1603.09246",
    bibtex=r"""@inproceedings{noroozi2016jigsaw,
  title     = {Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles},
  author    = {Noroozi, Mehdi and Favaro, Paolo},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2016}
}""",
)


def check_recipe(recipe: Any) -> None:
    """The tiles fit the recipe's images and its backbone (a ``RecipeError`` that says which sizes work)."""
    values = recipe_config_values(JigsawConfig, recipe.model)
    try:
        layout = GridLayout(*(values[key] for key in ("grid_size", "tile_size", "gap", "jitter")))
    except ValueError as error:
        raise RecipeError(f"model: {error}") from error
    check_grid_recipe(recipe, layout, recipe_min_input_size(JigsawConfig, recipe.model), "tile_size", "tiles")


def build_inputs(recipe: Any, data: Any) -> JigsawInputs:
    """The input builder: puzzles of every batch on the device (:class:`JigsawInputs`)."""
    return JigsawInputs(recipe)


SPEC = register_method(MethodSpec(
    name="jigsaw",
    config_class=JigsawConfig,
    model_class=JigsawForPreTraining,
    modality=IMAGE,
    family=PATCH_PRETEXT,
    paper=PAPER,
    display_name="Jigsaw",
    build_inputs=build_inputs,
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES, PRETEXT_TASK),
    check_recipe=check_recipe,
))

__all__ = ["JigsawConfig", "JigsawForPreTraining", "JigsawInputs", "JigsawOutput", "make_jigsaw_puzzles", "SPEC"]
