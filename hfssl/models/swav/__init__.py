"""SwAV (Caron et al. 2020): the method's spec, registered when hfssl discovers its methods."""

from hfssl.export import export_image_encoder
from hfssl.models.swav.configuration_swav import SwAVConfig
from hfssl.models.swav.modeling_swav import SwAVForPreTraining, SwAVOutput
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
    url="https://arxiv.org/abs/2006.09882",
    bibtex=r"""@inproceedings{caron2020swav,
  title     = {Unsupervised Learning of Visual Features by Contrasting Cluster Assignments},
  author    = {Caron, Mathilde and Misra, Ishan and Mairal, Julien and Goyal, Priya and Bojanowski, Piotr and
               Joulin, Armand},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2020}
}""",
)

SPEC = register_method(MethodSpec(
    name="swav",
    config_class=SwAVConfig,
    model_class=SwAVForPreTraining,
    modality=IMAGE,
    family="vision-ssl",
    paper=PAPER,
    display_name="SwAV",
    build_inputs=view_inputs("multi_view"),
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES),
))

__all__ = ["SwAVConfig", "SwAVForPreTraining", "SwAVOutput", "SPEC"]
