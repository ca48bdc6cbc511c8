"""VICReg (Bardes, Ponce, LeCun 2022): the method's spec, registered when hfssl discovers its methods."""

from hfssl.export import export_image_encoder
from hfssl.models.vicreg.configuration_vicreg import VICRegConfig
from hfssl.models.vicreg.modeling_vicreg import VICRegForPreTraining, VICRegOutput
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
    url="https://arxiv.org/abs/2105.04906",
    bibtex=r"""@inproceedings{bardes2022vicreg,
  title     = {{VICReg}: Variance-Invariance-Covariance Regularization for Self-Supervised Learning},
  author    = {Bardes, Adrien and Ponce, Jean and LeCun, Yann},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2022}
}""",
)

SPEC = register_method(MethodSpec(
    name="vicreg",
    config_class=VICRegConfig,
    model_class=VICRegForPreTraining,
    modality=IMAGE,
    family="vision-ssl",
    paper=PAPER,
    display_name="VICReg",
    build_inputs=view_inputs("multi_view"),
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES),
))

__all__ = ["VICRegConfig", "VICRegForPreTraining", "VICRegOutput", "SPEC"]
