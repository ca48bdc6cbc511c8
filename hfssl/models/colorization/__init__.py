"""Colorization (Zhang et al. 2016; Larsson et al. 2016): the method's spec, registered when hfssl discovers its methods.

The encoder sees the CIE Lab lightness of colour images and a decoder predicts the colour (``ab``); the
exported encoder takes lightness only, prepared as the model card shows (:mod:`hfssl.color_prediction`).
"""

from typing import Any

from hfssl.color_prediction import check_color_recipe, color_training_data, export_lightness_encoder
from hfssl.models.colorization.configuration_colorization import ColorizationConfig
from hfssl.models.colorization.modeling_colorization import ColorizationForPreTraining, ColorizationOutput
from hfssl.reconstruction import draw_reconstruction_triplets
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, RECONSTRUCTION, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="Colorful Image Colorization",
    url="https://arxiv.org/abs/1603.08511",
    bibtex=r"""@inproceedings{zhang2016colorful,
  title     = {Colorful Image Colorization},
  author    = {Zhang, Richard and Isola, Phillip and Efros, Alexei A.},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2016}
}
@inproceedings{larsson2016learning,
  title     = {Learning Representations for Automatic Colorization},
  author    = {Larsson, Gustav and Maire, Michael and Shakhnarovich, Gregory},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2016}
}""",
)


def draw_colorizations(model: Any, context: Any) -> list:
    """``MethodSpec.pictures``: test images, their lightness and the predicted colours."""
    return draw_reconstruction_triplets(model, context, corruption="lightness_only")


SPEC = register_method(MethodSpec(
    name="colorization",
    config_class=ColorizationConfig,
    model_class=ColorizationForPreTraining,
    modality=IMAGE,
    family="reconstruction",
    paper=PAPER,
    display_name="Colorization",
    build_inputs=view_inputs("single_view"),
    build_data=color_training_data,
    export=export_lightness_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES, RECONSTRUCTION),
    pictures=draw_colorizations,
    check_recipe=check_color_recipe,
))

__all__ = ["ColorizationConfig", "ColorizationForPreTraining", "ColorizationOutput", "SPEC"]
