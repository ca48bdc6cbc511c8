"""RotNet (Gidaris et al. 2018): the method's spec, registered when hfssl discovers its methods."""

from hfssl.export import export_image_encoder
from hfssl.models.rotnet.configuration_rotnet import NUM_ROTATIONS, RotNetConfig
from hfssl.models.rotnet.modeling_rotnet import RotNetForPreTraining, RotNetOutput
from hfssl.models.rotnet.rotations import RotationInputs, check_recipe, rotate_all, rotation_inputs
from hfssl.registry import (IMAGE, IMAGE_FEATURES, LAYER_FEATURES, PRETEXT_TASK, MethodSpec, Paper,
                            register_method)

PAPER = Paper(
    title="Unsupervised Representation Learning by Predicting Image Rotations",
    url="https://arxiv.org/abs/1803.07728",
    bibtex=r"""@inproceedings{gidaris2018rotnet,
  title     = {Unsupervised Representation Learning by Predicting Image Rotations},
  author    = {Gidaris, Spyros and Singh, Praveer and Komodakis, Nikos},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2018}
}""",
)

SPEC = register_method(MethodSpec(
    name="rotnet",
    config_class=RotNetConfig,
    model_class=RotNetForPreTraining,
    modality=IMAGE,
    family="vision-ssl",
    paper=PAPER,
    display_name="RotNet",
    build_inputs=rotation_inputs,
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES, PRETEXT_TASK),
    check_recipe=check_recipe,
))

__all__ = ["NUM_ROTATIONS", "RotNetConfig", "RotNetForPreTraining", "RotNetOutput", "RotationInputs", "rotate_all",
           "rotation_inputs", "SPEC"]
