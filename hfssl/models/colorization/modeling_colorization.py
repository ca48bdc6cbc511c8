"""Colorization: predict the colour channels of an image from its lightness (Zhang et al. 2016; Larsson et al. 2016).

The model is given normalised RGB images (the views, or the evaluation transform's output) and converts
them to normalised CIE Lab itself (:func:`hfssl.views.lab.rgb_to_normalised_lab`): the lightness
``(B, 1, H, W)`` goes through the encoder (any transformers vision backbone with one input channel), the
decoder (:func:`hfssl.decoders.build_image_decoder`) maps its last hidden state to ``ab`` ``(B, 2, H, W)``,
and the loss is the squared error against the true ``ab``, averaged over pixels and channels (the l2
regression objective, Zhang et al. sec. 2.1 eq. 1, up to the constant of the mean). Export keeps the encoder:
it takes lightness only (see :mod:`hfssl.models.colorization` for how the exported model is fed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

from hfssl.backbones import build_backbone, freeze_unused_backbone_parts, layer_features, pool_features
from hfssl.decoders import build_image_decoder
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.colorization.configuration_colorization import ColorizationConfig
from hfssl.reconstruction import Reconstruction
from hfssl.views.lab import denormalise_lab, lab_to_rgb, rgb_to_normalised_lab


@dataclass
class ColorizationOutput(ModelOutput):
    """Args:
    loss: mean squared error of the predicted ``ab`` against the image's (normalised, :mod:`hfssl.views.lab`).
    predicted_color: ``(B, 2, H, W)`` the decoder's normalised ``ab``.
    embeddings: pooled encoder features ``(B, hidden)`` of the lightness.
    """

    loss: torch.FloatTensor | None = None
    predicted_color: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


def lab_display(lightness: torch.Tensor) -> "callable":
    """A :class:`~hfssl.reconstruction.Reconstruction` ``display``: the ``ab`` of ``original`` / ``reconstructed``
    shown in colour with the image's own lightness, the ``corrupted`` lightness shown as a grey image."""
    def display(tensor: torch.Tensor, role: str) -> torch.Tensor:
        if role == "corrupted":
            return (tensor[:, :1].float() + 1) / 2  # normalised L in [-1, 1] -> [0, 1]
        return lab_to_rgb(denormalise_lab(lightness.float(), tensor.float()))
    return display


class ColorizationForPreTraining(HfsslPreTrainedModel):
    """A one-channel transformers vision encoder on Lab lightness and a convolutional ``ab`` decoder."""

    config_class = ColorizationConfig

    def __init__(self, config: ColorizationConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        self.decoder = build_image_decoder(config.backbone_config, 2, config.image_size,
                                           hidden_size=config.decoder_hidden_size,
                                           num_upsamples=config.decoder_num_upsamples)
        self.post_init()

    def lab(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised RGB ``(B, 3, H, W)`` -> normalised lightness ``(B, 1, H, W)`` and ``ab`` ``(B, 2, H, W)``."""
        return rgb_to_normalised_lab(pixel_values, self.config.input_mean, self.config.input_std)

    def get_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features ``(B, hidden)`` of the lightness of normalised RGB images ``(B, 3, H, W)``."""
        lightness, _ = self.lab(pixel_values)
        return pool_features(self.backbone(pixel_values=lightness.to(pixel_values.dtype)), self.config.pooling)

    def get_layer_embeddings(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        lightness, _ = self.lab(pixel_values)
        return layer_features(self.backbone, lightness.to(pixel_values.dtype), self.config.pooling)

    def colorize(self, lightness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features ``(B, hidden)`` and predicted normalised ``ab`` ``(B, 2, H, W)`` of lightness ``(B, 1, H, W)``."""
        outputs = self.backbone(pixel_values=lightness)
        return pool_features(outputs, self.config.pooling), self.decoder(outputs.last_hidden_state)

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> ColorizationOutput:
        """Args:
        pixel_values: normalised RGB views ``(B, 3, H, W)`` (``config.input_mean`` / ``input_std``).
        """
        lightness, color = self.lab(pixel_values)
        features, predicted = self.colorize(lightness.to(pixel_values.dtype))
        loss = F.mse_loss(predicted.float(), color)
        return ColorizationOutput(loss=loss, predicted_color=predicted, embeddings=features)

    def get_reconstructions(self, pixel_values: torch.Tensor, generator: torch.Generator) -> Reconstruction:
        """``reconstruction``: the true ``ab`` (original), the lightness the encoder saw (corrupted) and the
        predicted ``ab`` (reconstructed), all normalised; displayed in colour with the image's lightness. The
        task draws nothing, so ``generator`` is not used."""
        lightness, color = self.lab(pixel_values)
        _, predicted = self.colorize(lightness.to(pixel_values.dtype))
        return Reconstruction(original=color, corrupted=lightness, reconstructed=predicted.float(),
                              display=lab_display(lightness))
