"""DINO (Caron et al. 2021): the method's spec, registered when hfssl discovers its methods."""

from hfssl.export import export_image_encoder
from hfssl.models.dino.configuration_dino import DINOConfig
from hfssl.models.dino.modeling_dino import DINOForPreTraining, DINOOutput
from hfssl.models.dino.pictures import draw_attention_maps
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="Emerging Properties in Self-Supervised Vision Transformers",
    url="https://arxiv.org/abs/2104.14294",
    bibtex=r"""@inproceedings{caron2021dino,
  title     = {Emerging Properties in Self-Supervised Vision Transformers},
  author    = {Caron, Mathilde and Touvron, Hugo and Misra, Ishan and J{\'e}gou, Herv{\'e} and Mairal, Julien and
               Bojanowski, Piotr and Joulin, Armand},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021}
}""",
)

SPEC = register_method(MethodSpec(
    name="dino",
    config_class=DINOConfig,
    model_class=DINOForPreTraining,
    modality=IMAGE,
    family="vision-ssl",
    paper=PAPER,
    display_name="DINO",
    build_inputs=view_inputs("multi_view"),
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES),
    pictures=draw_attention_maps,
))

__all__ = ["DINOConfig", "DINOForPreTraining", "DINOOutput", "SPEC"]
