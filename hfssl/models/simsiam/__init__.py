"""SimSiam (Chen & He 2021): the method's spec, registered when hfssl discovers its methods."""

from hfssl.export import export_image_encoder
from hfssl.models.simsiam.configuration_simsiam import SimSiamConfig
from hfssl.models.simsiam.modeling_simsiam import SimSiamForPreTraining, SimSiamOutput
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="Exploring Simple Siamese Representation Learning",
    url="https://arxiv.org/abs/2011.10566",
    bibtex=r"""@inproceedings{chen2021simsiam,
  title     = {Exploring Simple Siamese Representation Learning},
  author    = {Chen, Xinlei and He, Kaiming},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {15750--15758},
  year      = {2021}
}""",
)

SPEC = register_method(MethodSpec(
    name="simsiam",
    config_class=SimSiamConfig,
    model_class=SimSiamForPreTraining,
    modality=IMAGE,
    family="vision-ssl",
    paper=PAPER,
    display_name="SimSiam",
    build_inputs=view_inputs("multi_view"),
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES),
))

__all__ = ["SimSiamConfig", "SimSiamForPreTraining", "SimSiamOutput", "SPEC"]
