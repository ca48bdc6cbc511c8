"""SimCLR (Chen et al. 2020): the method's spec, registered when hfssl discovers its methods."""

from hfssl.export import export_image_encoder
from hfssl.models.simclr.configuration_simclr import SimCLRConfig
from hfssl.models.simclr.modeling_simclr import SimCLRForPreTraining, SimCLROutput
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="A Simple Framework for Contrastive Learning of Visual Representations",
    url="https://arxiv.org/abs/2002.05709",
    bibtex=r"""@inproceedings{chen2020simclr,
  title     = {A Simple Framework for Contrastive Learning of Visual Representations},
  author    = {Chen, Ting and Kornblith, Simon and Norouzi, Mohammad and Hinton, Geoffrey},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2020}
}""",
)

SPEC = register_method(MethodSpec(
    name="simclr",
    config_class=SimCLRConfig,
    model_class=SimCLRForPreTraining,
    modality=IMAGE,
    family="vision-ssl",
    paper=PAPER,
    display_name="SimCLR",
    build_inputs=view_inputs("multi_view"),
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES),
))

__all__ = ["SimCLRConfig", "SimCLRForPreTraining", "SimCLROutput", "SPEC"]
