"""BYOL (Grill et al. 2020): the method's spec, registered when hfssl discovers its methods."""

from hfssl.export import export_image_encoder
from hfssl.models.byol.configuration_byol import BYOLConfig
from hfssl.models.byol.modeling_byol import BYOLForPreTraining, BYOLOutput
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
    url="https://arxiv.org/abs/2006.07733",
    bibtex=r"""@inproceedings{grill2020byol,
  title     = {Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning},
  author    = {Grill, Jean-Bastien and Strub, Florian and Altch{\'e}, Florent and Tallec, Corentin and Richemond, Pierre H. and Buchatskaya, Elena and Doersch, Carl and Pires, Bernardo Avila and Guo, Zhaohan Daniel and Azar, Mohammad Gheshlaghi and Piot, Bilal and Kavukcuoglu, Koray and Munos, R{\'e}mi and Valko, Michal},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2020}
}""",
)

SPEC = register_method(MethodSpec(
    name="byol",
    config_class=BYOLConfig,
    model_class=BYOLForPreTraining,
    modality=IMAGE,
    family="vision-ssl",
    paper=PAPER,
    display_name="BYOL",
    build_inputs=view_inputs("multi_view"),
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES),
))

__all__ = ["BYOLConfig", "BYOLForPreTraining", "BYOLOutput", "SPEC"]
