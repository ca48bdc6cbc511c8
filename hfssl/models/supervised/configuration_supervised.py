"""Configuration of the supervised baseline: a vision backbone and a linear classifier trained on the data's labels."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range


class SupervisedConfig(HfsslVisionConfig):
    """Configuration of :class:`SupervisedForPreTraining`.

    The baseline every comparison table of the self-supervised methods needs: the same backbone (any transformers
    vision encoder: ResNet, ViT, ConvNeXt, ...) and the same views, trained with the cross-entropy of a linear
    classifier on the pooled features against the data's class labels (Kornblith et al. 2019 evaluate such
    supervised encoders with the linear-probe and fine-tuning protocols the SSL papers use).

    Args:
        num_classes: number of classes of the classifier. Training sets it from the data's labels (a
            ``ClassLabel``'s count, else the largest label + 1); a recipe's ``model.num_classes`` must agree with
            the data. ``None`` only in a config that is not built into a model.
        label_smoothing: cross-entropy label smoothing in ``[0, 1)`` (Szegedy et al. 2016, sec. 7); 0 is the
            plain cross-entropy.
    """

    model_type = "hfssl_supervised"
    default_backbone = "resnet50"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
                raise ValueError(f"num_classes must be a whole number >= 2 (a classifier needs two classes at least), "
                                 f"got {num_classes!r}")
        check_range("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
        self.num_classes = num_classes
        self.label_smoothing = float(label_smoothing)
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
