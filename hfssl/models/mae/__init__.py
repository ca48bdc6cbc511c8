"""MAE (He et al. 2022): the method's spec, registered when hfssl discovers its methods."""

from hfssl.export import export_image_encoder
from hfssl.models.mae.configuration_mae import MAEConfig
from hfssl.models.mae.modeling_mae import MAEForPreTraining, MAEOutput
from hfssl.models.mae.pictures import draw_reconstructions
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, RECONSTRUCTION, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="Masked Autoencoders Are Scalable Vision Learners",
    url="https://arxiv.org/abs/2111.06377",
    bibtex=r"""@inproceedings{he2022mae,
  title     = {Masked Autoencoders Are Scalable Vision Learners},
  author    = {He, Kaiming and Chen, Xinlei and Xie, Saining and Li, Yanghao and Doll{\'a}r, Piotr and Girshick, Ross},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}""",
)

SPEC = register_method(MethodSpec(
    name="mae",
    config_class=MAEConfig,
    model_class=MAEForPreTraining,
    modality=IMAGE,
    family="masked-image-modeling",
    paper=PAPER,
    display_name="MAE",
    build_inputs=view_inputs("single_view"),
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES, RECONSTRUCTION),
    pictures=draw_reconstructions,
))

__all__ = ["MAEConfig", "MAEForPreTraining", "MAEOutput", "SPEC"]
