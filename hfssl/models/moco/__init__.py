"""MoCo v2 (He et al. 2020; Chen et al. 2020): the method's spec, registered when hfssl discovers its methods."""

import inspect
from typing import Any

from hfssl.export import export_image_encoder
from hfssl.models.moco.configuration_moco import MoCoConfig
from hfssl.models.moco.modeling_moco import MoCoForPreTraining, MoCoOutput
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, MethodSpec, Paper, register_method
from hfssl.settings import RecipeError
from hfssl.views import view_inputs


def check_batch_norm(recipe: Any) -> None:
    """Shuffling BN and ``train.sync_batchnorm`` exclude each other: SyncBatchNorm would give the key
    encoder global statistics again, undoing the shuffle (see :class:`MoCoForPreTraining`)."""
    if recipe.train.sync_batchnorm and recipe.model.get("shuffle_batch_norm", True):
        raise RecipeError("MoCo v2 guards against BatchNorm leakage by shuffling BN across processes, which "
                          "train.sync_batchnorm would undo: set train.sync_batchnorm: false, or "
                          "model.shuffle_batch_norm: false to use SyncBatchNorm instead")

def build_inputs(recipe: Any, data: Any) -> Any:
    """The multi-view input builder, after checking the queue against the data: a queue of more keys
    than there are training images holds keys of the very images it is asked to tell apart (each
    image's earlier key among its own negatives), so MoCo keeps K well below the data size (He et al.
    2020, sec. 3.1: 65,536 keys for ImageNet's 1.28M images). Refused before training."""
    queue_size = int(recipe.model.get("queue_size", inspect.signature(MoCoConfig.__init__).parameters["queue_size"].default))
    try:
        examples = len(data.train_dataset)
    except TypeError:  # streamed data: its size is unknown
        examples = None
    if examples is not None and queue_size > examples:
        raise RecipeError(
            f"model.queue_size={queue_size} is larger than the {examples} training examples of {recipe.data.source!r}: "
            "the queue would hold earlier keys of the very images in the batch as their negatives. Set "
            f"model.queue_size below {examples} (a few batches of train.batch_size, for example "
            f"{max(1, min(examples // 2, 4 * recipe.train.batch_size))})")
    return view_inputs("multi_view")(recipe, data)


PAPER = Paper(
    title="Improved Baselines with Momentum Contrastive Learning",
    url="https://arxiv.org/abs/2003.04297",
    bibtex=r"""@article{chen2020mocov2,
  title   = {Improved Baselines with Momentum Contrastive Learning},
  author  = {Chen, Xinlei and Fan, Haoqi and Girshick, Ross and He, Kaiming},
  journal = {arXiv preprint arXiv:2003.04297},
  year    = {2020}
}
@inproceedings{he2020moco,
  title     = {Momentum Contrast for Unsupervised Visual Representation Learning},
  author    = {He, Kaiming and Fan, Haoqi and Wu, Yuxin and Xie, Saining and Girshick, Ross},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2020}
}""",
)

SPEC = register_method(MethodSpec(
    name="moco",
    config_class=MoCoConfig,
    model_class=MoCoForPreTraining,
    modality=IMAGE,
    family="vision-ssl",
    paper=PAPER,
    display_name="MoCo v2",
    build_inputs=build_inputs,
    export=export_image_encoder,
    provides=(IMAGE_FEATURES, LAYER_FEATURES),
    check_recipe=check_batch_norm,
))

__all__ = ["MoCoConfig", "MoCoForPreTraining", "MoCoOutput", "SPEC"]
