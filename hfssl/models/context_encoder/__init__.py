"""Context encoder (Pathak et al. 2016): the method's spec, registered when hfssl discovers its methods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfssl.export import export_image_encoder
from hfssl.models.context_encoder.configuration_context_encoder import MASK_TYPES, ContextEncoderConfig
from hfssl.models.context_encoder.masks import (ContextEncoderInputs, RegionMask, center_mask, check_recipe,
                                                context_encoder_inputs, random_block_mask, random_region_mask)
from hfssl.models.context_encoder.modeling_context_encoder import (ContextEncoderForPreTraining, ContextEncoderOutput,
                                                                   RegionDiscriminator)
from hfssl.plots import PictureContext
from hfssl.reconstruction import draw_reconstruction_triplets
from hfssl.registry import (IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MODALITY_LOADERS, RECONSTRUCTION, MethodSpec, Paper,
                            register_method)

PAPER = Paper(
    title="Context Encoders: Feature Learning by Inpainting",
    url="https://arxiv.org/abs/1604.07379",
    bibtex=r"""@inproceedings{pathak2016context,
  title     = {Context Encoders: Feature Learning by Inpainting},
  author    = {Pathak, Deepak and Kr{\"a}henb{\"u}hl, Philipp and Donahue, Jeff and Darrell, Trevor and Efros, Alexei A.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2016}
}""",
)


def load_data(recipe: Any, accelerator: Any) -> Any:
    """``MethodSpec.build_data``: the image loader's data, and ``image_size`` for the decoder from ``data.image_size``."""
    data = MODALITY_LOADERS[IMAGE](recipe.data, accelerator)
    data.config_updates = {**data.config_updates, "image_size": int(recipe.data.image_size)}
    return data


def draw_pictures(model: ContextEncoderForPreTraining, context: PictureContext) -> list[Path]:
    """``MethodSpec.pictures``: the shared input / masked input / inpainting triplets."""
    return draw_reconstruction_triplets(model, context, corruption=f"{model.config.mask_type}_removed")


SPEC = register_method(MethodSpec(
    name="context_encoder",
    config_class=ContextEncoderConfig,
    model_class=ContextEncoderForPreTraining,
    modality=IMAGE,
    family="reconstruction",
    paper=PAPER,
    display_name="Context encoder",
    build_inputs=context_encoder_inputs,
    build_data=load_data,
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES, RECONSTRUCTION),
    pictures=draw_pictures,
    check_recipe=check_recipe,
))

__all__ = ["MASK_TYPES", "ContextEncoderConfig", "ContextEncoderForPreTraining", "ContextEncoderOutput",
           "ContextEncoderInputs", "RegionDiscriminator", "RegionMask", "center_mask", "random_block_mask",
           "random_region_mask", "context_encoder_inputs", "load_data", "SPEC"]
