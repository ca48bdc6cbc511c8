"""Feature distillation from a frozen pretrained teacher (issue 24): the method's spec.

A student encoder (any transformers vision backbone, from scratch or from ``backbone_name_or_path``) learns
to predict, through a projection MLP, the pooled features that a frozen teacher encoder gives the same
augmented view: LightlyTrain's most-used pre-training method ("distillation") in its simplest form, and the
feature-level counterpart of SimCLRv2's distillation into a smaller network (the ``distill`` protocol).
"""

from hfssl.export import export_image_encoder
from hfssl.models.feature_distill.configuration_feature_distill import FeatureDistillConfig
from hfssl.models.feature_distill.modeling_feature_distill import FeatureDistillForPreTraining, FeatureDistillOutput
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method
from hfssl.views import view_inputs

PAPER = Paper(
    title="Knowledge Distillation: A Good Teacher Is Patient and Consistent",
    url="https://arxiv.org/abs/2106.05237",
    bibtex=r"""@inproceedings{beyer2022distillation,
  title     = {Knowledge Distillation: A Good Teacher Is Patient and Consistent},
  author    = {Beyer, Lucas and Zhai, Xiaohua and Royer, Am{\'e}lie and Markeeva, Larisa and Anil, Rohan and Kolesnikov, Alexander},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}""",
)

SPEC = register_method(MethodSpec(
    name="feature_distill",
    config_class=FeatureDistillConfig,
    model_class=FeatureDistillForPreTraining,
    modality=IMAGE,
    family="vision-ssl",
    paper=PAPER,
    display_name="feature distillation",
    build_inputs=view_inputs("single_view"),
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES),
))

__all__ = ["FeatureDistillConfig", "FeatureDistillForPreTraining", "FeatureDistillOutput", "SPEC"]
