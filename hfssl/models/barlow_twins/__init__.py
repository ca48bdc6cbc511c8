"""Barlow Twins (Zbontar et al. 2021): the method's spec, registered when hfssl discovers its methods."""

from hfssl.export import export_image_encoder
from hfssl.models.barlow_twins.configuration_barlow_twins import BarlowTwinsConfig
from hfssl.models.barlow_twins.modeling_barlow_twins import BarlowTwinsForPreTraining, BarlowTwinsOutput
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
    url="https://arxiv.org/abs/2103.03230",
    bibtex=r"""@inproceedings{zbontar2021barlow,
  title     = {Barlow Twins: Self-Supervised Learning via Redundancy Reduction},
  author    = {Zbontar, Jure and Jing, Li and Misra, Ishan and LeCun, Yann and Deny, St{\'e}phane},
  booktitle = {International Conference on Machine Learning (ICML)},
  pages     = {12310--12320},
  year      = {2021}
}""",
)

SPEC = register_method(MethodSpec(
    name="barlow_twins",
    config_class=BarlowTwinsConfig,
    model_class=BarlowTwinsForPreTraining,
    modality=IMAGE,
    family="vision-ssl",
    paper=PAPER,
    display_name="Barlow Twins",
    build_inputs=view_inputs("multi_view"),
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES),
))

__all__ = ["BarlowTwinsConfig", "BarlowTwinsForPreTraining", "BarlowTwinsOutput", "SPEC"]
