"""Split-brain autoencoder (Zhang et al. 2017): the method's spec, registered when hfssl discovers its methods.

Cross-channel prediction on CIE Lab: one half of a ResNet predicts ``ab`` from ``L``, the other ``L`` from
``ab``; the exported encoder is the whole ResNet (block-diagonal weights), whose features are the two halves'
concatenated, as in the paper. It takes Lab, prepared as the model card shows (see
:mod:`hfssl.color_prediction`). Data, recipe checks and export are shared with colorization there.
"""

from typing import Any

from hfssl.color_prediction import check_color_recipe, color_training_data, export_lab_encoder
from hfssl.models.split_brain.configuration_split_brain import SplitBrainConfig
from hfssl.models.split_brain.modeling_split_brain import SplitBrainForPreTraining, SplitBrainOutput, block_mask
from hfssl.reconstruction import draw_reconstruction_triplets
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, RECONSTRUCTION, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="Split-Brain Autoencoders: Unsupervised Learning by Cross-Channel Prediction",
    url="https://arxiv.org/abs/1611.09842",
    bibtex=r"""@inproceedings{zhang2017splitbrain,
  title     = {Split-Brain Autoencoders: Unsupervised Learning by Cross-Channel Prediction},
  author    = {Zhang, Richard and Isola, Phillip and Efros, Alexei A.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2017}
}""",
)


def draw_cross_channel(model: Any, context: Any) -> list:
    """``MethodSpec.pictures``: test images, their lightness and the cross-channel prediction."""
    return draw_reconstruction_triplets(model, context, corruption="cross_channel")


SPEC = register_method(MethodSpec(
    name="split_brain",
    config_class=SplitBrainConfig,
    model_class=SplitBrainForPreTraining,
    modality=IMAGE,
    family="reconstruction",
    paper=PAPER,
    display_name="Split-brain autoencoder",
    build_inputs=view_inputs("single_view"),
    build_data=color_training_data,
    export=export_lab_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES, RECONSTRUCTION),
    pictures=draw_cross_channel,
    check_recipe=check_color_recipe,
))

__all__ = ["SplitBrainConfig", "SplitBrainForPreTraining", "SplitBrainOutput", "block_mask", "SPEC"]
