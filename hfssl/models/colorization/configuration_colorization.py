"""Colorization configuration (Zhang et al. 2016, "Colorful Image Colorization"; Larsson et al. 2016,
"Learning Representations for Automatic Colorization")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

from hfssl.color_prediction import check_color_settings
from hfssl.configuration_utils import HfsslVisionConfig
from hfssl.views.lab import LAB_LIGHTNESS_INPUT




class ColorizationConfig(HfsslVisionConfig):
    """Configuration of :class:`ColorizationForPreTraining`.

    The encoder sees the CIE Lab lightness ``L`` only (``backbone_config.num_channels`` is set to 1) and a
    convolutional decoder (:func:`hfssl.decoders.build_image_decoder`) predicts the two colour channels
    ``ab``; the loss is the squared error on the normalised ``ab`` (:mod:`hfssl.views.lab`), the regression
    ("l2") objective that Zhang et al. 2016 (sec. 2.1, eq. 1) compare against and Larsson et al. 2016 train
    as one of their variants. The classification over quantised ``ab`` bins with class rebalancing is not
    implemented.

    Args:
        backbone_config / backbone_name_or_path / pooling: the encoder (:class:`HfsslVisionConfig`).
        input_mean / input_std: the RGB normalisation of the images the model is given (the recipe's
            ``views.mean`` / ``views.std``, set from the recipe when training starts): the model undoes it
            before converting to Lab.
        image_size: side of the training images (the decoder's output size), set from ``data.image_size``.
        decoder_hidden_size / decoder_num_upsamples: the decoder's width and its 2x upsampling stages.
    """

    model_type = "hfssl_colorization"
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
        self.input_mean, self.input_std = check_color_settings(input_mean, input_std, image_size, decoder_hidden_size,
                                                               decoder_num_upsamples)
        self.image_size = image_size
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_upsamples = decoder_num_upsamples
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
        self.backbone_config.num_channels = 1  # the lightness channel (sec. 2 of both papers)
        #: What the exported encoder takes (the model card shows how to prepare it): Lab lightness, not RGB.
        self.encoder_input = LAB_LIGHTNESS_INPUT
