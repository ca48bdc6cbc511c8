"""MoCo v3 (Chen, Xie, He 2021): the method's spec, registered when hfssl discovers its methods."""

from hfssl.export import export_image_encoder
from hfssl.models.moco_v3.configuration_moco_v3 import MoCoV3Config
from hfssl.models.moco_v3.modeling_moco_v3 import MoCoV3ForPreTraining, MoCoV3Output
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="An Empirical Study of Training Self-Supervised Vision Transformers",
    url="https://arxiv.org/abs/2104.02057",
    bibtex=r"""@inproceedings{chen2021mocov3,
  title     = {An Empirical Study of Training Self-Supervised Vision Transformers},
  author    = {Chen, Xinlei and Xie, Saining and He, Kaiming},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021}
}""",
)

SPEC = register_method(MethodSpec(
    name="moco_v3",
    config_class=MoCoV3Config,
    model_class=MoCoV3ForPreTraining,
    modality=IMAGE,
    family="vision-ssl",
    paper=PAPER,
    display_name="MoCo v3",
    build_inputs=view_inputs("multi_view"),
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES),
))

__all__ = ["MoCoV3Config", "MoCoV3ForPreTraining", "MoCoV3Output", "SPEC"]
