"""The supervised baseline: the method's spec, registered when hfssl discovers its methods.

Not a self-supervised method: the row every comparison table of the SSL methods needs. The same backbones and
views, a linear classifier trained on the data's labels; the encoder is exported and evaluated exactly like the
SSL encoders (``image-features``, ``layer-features``), and its model card (family ``supervised``) says it was
trained with labels.
"""

from hfssl.export import export_image_encoder
from hfssl.models.supervised.configuration_supervised import SupervisedConfig
from hfssl.models.supervised.data import SupervisedInputs, check_labelled, check_recipe, load_data, supervised_inputs
from hfssl.models.supervised.modeling_supervised import SupervisedForPreTraining, SupervisedOutput
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method

PAPER = Paper(
    title="Do Better ImageNet Models Transfer Better?",
    url="https://arxiv.org/abs/1805.08974",
    bibtex=r"""@inproceedings{kornblith2019transfer,
  title     = {Do Better ImageNet Models Transfer Better?},
  author    = {Kornblith, Simon and Shlens, Jonathon and Le, Quoc V.},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {2661--2671},
  year      = {2019}
}""",
)

SPEC = register_method(MethodSpec(
    name="supervised",
    config_class=SupervisedConfig,
    model_class=SupervisedForPreTraining,
    modality=IMAGE,
    family="supervised",
    paper=PAPER,
    display_name="Supervised baseline",
    build_inputs=supervised_inputs,
    build_data=load_data,
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES),
    check_recipe=check_recipe,
))

__all__ = ["SupervisedConfig", "SupervisedForPreTraining", "SupervisedOutput", "SupervisedInputs", "check_labelled",
           "load_data", "supervised_inputs", "SPEC"]
