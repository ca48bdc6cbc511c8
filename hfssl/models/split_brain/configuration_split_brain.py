"""Split-brain autoencoder configuration (Zhang et al. 2017, "Split-Brain Autoencoders: Unsupervised Learning by
Cross-Channel Prediction")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

from hfssl.color_prediction import check_color_settings
from hfssl.configuration_utils import HfsslVisionConfig
from hfssl.views.lab import LAB_INPUT

#: ResNet's bottleneck layers narrow to ``width // 4`` channels, which must split in two halves too.
BOTTLENECK_REDUCTION = 4


def check_splittable_resnet(config: PretrainedConfig) -> None:
    """The backbone must be a ResNet whose every width splits into two equal halves (module doc of
    :mod:`hfssl.models.split_brain.modeling_split_brain`)."""
    if config.model_type != "resnet":
        raise ValueError(
            f"split_brain needs a 'resnet' backbone_config, got {config.model_type!r}: its two sub-networks are the two "
            "halves of one ResNet with block-diagonal weights, which is exact only for networks whose layers mix "
            "channels by convolutions alone (ResNet: convolutions, per-channel BatchNorm, ReLU); LayerNorm over "
            "channels (ConvNeXt, ViT) would mix the halves")
    widths = {"embedding_size": [config.embedding_size], "hidden_sizes": list(config.hidden_sizes)}
    divisor = 2 * BOTTLENECK_REDUCTION if config.layer_type == "bottleneck" else 2
    for name, values in widths.items():
        odd = [value for value in values if value % (2 if name == "embedding_size" else divisor)]
        if odd:
            raise ValueError(f"split_brain splits every ResNet width into two halves: backbone_config.{name} {values} "
                             f"must be multiples of {2 if name == 'embedding_size' else divisor}"
                             f"{' (bottleneck layers narrow to width / 4)' if divisor > 2 else ''}")


class SplitBrainConfig(HfsslVisionConfig):
    """Configuration of :class:`SplitBrainForPreTraining`.

    ``backbone_config`` describes the whole (exported) network, a ResNet with 3 input channels (``L, a, b``);
    each sub-network is one half of every layer's width (Zhang et al. 2017, sec. 3: the split network has the
    width of the full one, its halves half of it). The ``L`` half predicts ``ab`` and the ``ab`` half predicts
    ``L`` (sec. 3.1: "Lab" split), each through its own convolutional decoder, with the squared error on the
    normalised channels (the regression loss of sec. 3.2; the paper's best results use classification). The
    loss is the sum of the two.

    Args:
        backbone_config / pooling: the whole ResNet (:class:`HfsslVisionConfig`); ``num_channels`` is set to 3.
        input_mean / input_std / image_size / decoder_hidden_size / decoder_num_upsamples: as
            :class:`hfssl.models.colorization.ColorizationConfig`.
    """

    model_type = "hfssl_split_brain"
    default_backbone = "resnet50"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        input_mean: Sequence[float] = (0.5, 0.5, 0.5),
        input_std: Sequence[float] = (0.5, 0.5, 0.5),
        image_size: int = 32,
        decoder_hidden_size: int = 128,
        decoder_num_upsamples: int = 3,
        **kwargs: Any,
    ) -> None:
        if backbone_name_or_path is not None:
            raise ValueError(f"split_brain trains its two halves from scratch: backbone_name_or_path "
                             f"{backbone_name_or_path!r} would load weights that mix the halves; remove it")
        self.input_mean, self.input_std = check_color_settings(input_mean, input_std, image_size, decoder_hidden_size,
                                                               decoder_num_upsamples)
        self.image_size = image_size
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_upsamples = decoder_num_upsamples
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
        check_splittable_resnet(self.backbone_config)
        self.backbone_config.num_channels = 3  # L, a, b
        #: What the exported encoder takes (the model card shows how to prepare it): CIE Lab, not RGB.
        self.encoder_input = LAB_INPUT
