"""Feature distillation from a frozen pretrained teacher (issue 24): the method's spec.

A student encoder (any transformers vision backbone, from scratch or from ``backbone_name_or_path``) learns
to predict, through a projection MLP, the pooled features that a frozen teacher encoder gives the same
augmented view: LightlyTrain's most-used pre-training method ("distillation") in its simplest form, and the
feature-level counterpart of SimCLRv2's distillation into a smaller network (the ``distill`` protocol).
"""

import json
from pathlib import Path
from typing import Any

from hfssl.export import export_image_encoder
from hfssl.models.feature_distill.configuration_feature_distill import FeatureDistillConfig, teacher_encoder_path
from hfssl.models.feature_distill.modeling_feature_distill import FeatureDistillForPreTraining, FeatureDistillOutput
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method
from hfssl.settings import RecipeError
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

def check_recipe(recipe: Any) -> None:
    """The teacher sees the student's view: refuse views normalised otherwise than a local teacher's image
    processor normalises (naming both and the fix). Hub ids are checked by nothing here."""
    path = recipe.model.get("teacher_name_or_path")
    if not path:
        return
    processor = Path(teacher_encoder_path(str(path))) / "preprocessor_config.json"
    if not processor.is_file():
        return
    saved = json.loads(processor.read_text())
    for key, name in (("image_mean", "mean"), ("image_std", "std")):
        teacher, views = saved.get(key), tuple(getattr(recipe.views, name))
        if teacher is None or not views:
            continue
        if any(abs(float(value) - float(views[index % len(views)])) > 1e-6 for index, value in enumerate(teacher)):
            raise RecipeError(f"views.{name} is {list(views)} but the teacher {path!r} was trained on images normalised "
                              f"with {name} {teacher}: set views.{name}={teacher} (teacher and student see the same view)")


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
    check_recipe=check_recipe,
))

__all__ = ["FeatureDistillConfig", "FeatureDistillForPreTraining", "FeatureDistillOutput", "SPEC"]
