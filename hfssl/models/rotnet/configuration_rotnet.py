"""RotNet configuration (Gidaris et al. 2018, "Unsupervised Representation Learning by Predicting Image Rotations")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range

#: The four rotations of the paper (sec. 2.2): 0, 90, 180 and 270 degrees, label ``k`` for ``k * 90``.
NUM_ROTATIONS = 4


class RotNetConfig(HfsslVisionConfig):
    """Configuration of :class:`RotNetForPreTraining`.

    The rotation classifier sits on the pooled features of any transformers vision backbone (ResNet,
    ConvNeXt, ViT, ...). The paper's classifier is the top of its network-in-network (sec. 3); on a pooled
    backbone it is a linear layer by default, or a two-layer MLP (Linear -> BatchNorm -> ReLU -> Linear)
    when ``classifier_hidden_dim`` is set. The classifier is a training-time head: export keeps the backbone.

    Args:
        classifier_hidden_dim: width of the MLP classifier's hidden layer; ``None`` gives a linear classifier.
    """

    model_type = "hfssl_rotnet"
    default_backbone = "resnet50"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        classifier_hidden_dim: int | None = None,
        **kwargs: Any,
    ) -> None:
        if classifier_hidden_dim is not None:
            check_range("classifier_hidden_dim", classifier_hidden_dim, 1, 1 << 16)
        self.classifier_hidden_dim = classifier_hidden_dim
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
