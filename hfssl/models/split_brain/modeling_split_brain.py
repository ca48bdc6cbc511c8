"""Split-brain autoencoder: two halves of one network, each predicting one channel group from the other
(Zhang et al. 2017).

The paper splits a network into two disjoint sub-networks, ``F1: L -> ab`` and ``F2: ab -> L``, and uses the
concatenation of their features as the representation (sec. 3). Here both are the two halves of a single
transformers ``ResNetModel`` (3 input channels ``L, a, b``, ``backbone_config``'s widths) whose convolution
weights are block-diagonal: output channels ``[0, w/2)`` of every convolution read only input channels
``[0, c/2)`` (the stem: only ``L``), and ``[w/2, w)`` only ``[c/2, c)`` (the stem: only ``a, b``). Per-channel
BatchNorm, ReLU, residual sums and the average pool keep the halves apart, so the ResNet computes exactly
``concat(F1(L), F2(ab))`` at every stage: the exported encoder is that plain ``ResNetModel`` itself, the
paper's concatenated representation, with no conversion.

The block structure is kept exactly: the off-block weights start at zero, the forward pass multiplies every
convolution weight by its block mask (``torch.func.functional_call``), so the off-block entries get zero
gradients and any optimiser leaves them at zero, and :meth:`SplitBrainForPreTraining.on_train_step_end` sets
them to zero again after each step as a guard. The ``L`` half's last feature map goes to a decoder that
predicts ``ab``, the ``ab`` half's to one that predicts ``L`` (:func:`hfssl.decoders.build_image_decoder`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, layer_features, pool_features
from hfssl.decoders import build_image_decoder
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.split_brain.configuration_split_brain import SplitBrainConfig
from hfssl.reconstruction import Reconstruction
from hfssl.views.lab import denormalise_lab, lab_to_rgb, rgb_to_normalised_lab

#: The stem convolution, the only one whose input is the image: its halves read ``L`` (1) and ``ab`` (2).
STEM_WEIGHT = "embedder.embedder.convolution.weight"


def block_mask(shape: torch.Size, input_split: int, device: torch.device | None = None) -> torch.Tensor:
    """``(out, in, kh, kw)`` -> a 0/1 mask with ones in ``[:out/2, :input_split]`` and ``[out/2:, input_split:]``."""
    out_channels, in_channels = shape[0], shape[1]
    rows = torch.arange(out_channels, device=device) < out_channels // 2
    columns = torch.arange(in_channels, device=device) < input_split
    return (rows[:, None] == columns[None, :]).float().view(out_channels, in_channels, 1, 1).expand(shape)


@dataclass
class SplitBrainOutput(ModelOutput):
    """Args:
    loss: ``color_loss + lightness_loss``.
    color_loss: mean squared error of the ``L`` half's ``ab`` prediction (normalised ``ab``).
    lightness_loss: mean squared error of the ``ab`` half's ``L`` prediction (normalised ``L``).
    predicted_color: ``(B, 2, H, W)``; predicted_lightness: ``(B, 1, H, W)``.
    embeddings: pooled features ``(B, hidden)``, the two halves concatenated.
    """

    loss: torch.FloatTensor | None = None
    color_loss: torch.FloatTensor | None = None
    lightness_loss: torch.FloatTensor | None = None
    predicted_color: torch.FloatTensor | None = None
    predicted_lightness: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


def split_lab_display(lightness: torch.Tensor):  # noqa: ANN201 - a Reconstruction display function
    """Show normalised Lab ``(B, 3, H, W)`` in colour, the ``corrupted`` lightness in grey."""
    def display(tensor: torch.Tensor, role: str) -> torch.Tensor:
        if role == "corrupted":
            return (tensor[:, :1].float() + 1) / 2
        return lab_to_rgb(denormalise_lab(tensor[:, :1].float(), tensor[:, 1:].float()))
    return display


class SplitBrainForPreTraining(HfsslPreTrainedModel):
    """One block-diagonal ResNet over ``L, a, b`` (two sub-networks) and two cross-channel decoders."""

    config_class = SplitBrainConfig

    def __init__(self, config: SplitBrainConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        half = backbone_hidden_size(config.backbone_config) // 2
        options = dict(in_features=half, hidden_size=config.decoder_hidden_size,
                       num_upsamples=config.decoder_num_upsamples)
        self.color_decoder = build_image_decoder(config.backbone_config, 2, config.image_size, **options)
        self.lightness_decoder = build_image_decoder(config.backbone_config, 1, config.image_size, **options)
        self.post_init()
        self.zero_off_block_weights()

    # ---- the block structure ------------------------------------------------------------------------

    def block_masks(self) -> dict[str, torch.Tensor]:
        """The block mask of every convolution weight of the backbone, by parameter name."""
        masks = {}
        for name, parameter in self.backbone.named_parameters():
            if parameter.ndim == 4:
                split = 1 if name == STEM_WEIGHT else parameter.shape[1] // 2
                masks[name] = block_mask(parameter.shape, split, parameter.device)
            elif parameter.ndim != 1:
                raise ValueError(f"split_brain cannot split backbone parameter {name} of shape {tuple(parameter.shape)}")
        return masks

    @torch.no_grad()
    def zero_off_block_weights(self) -> None:
        """Set every weight that would connect the two halves to zero."""
        parameters = dict(self.backbone.named_parameters())
        for name, mask in self.block_masks().items():
            parameters[name].mul_(mask)

    def on_train_step_end(self, step: int, scheduled: dict[str, float]) -> None:
        self.zero_off_block_weights()  # a guard: masked gradients already keep them at zero

    def encode(self, lab: torch.Tensor) -> torch.Tensor:
        """The backbone's last feature map ``(B, hidden, h, w)`` of normalised Lab ``(B, 3, H, W)``, with every
        convolution weight multiplied by its block mask (zero gradient off the blocks)."""
        parameters = dict(self.backbone.named_parameters())
        masked = {name: parameters[name] * mask for name, mask in self.block_masks().items()}
        return functional_call(self.backbone, masked, args=(), kwargs={"pixel_values": lab}, strict=False)

    # ---- inputs and features ------------------------------------------------------------------------

    def lab(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised RGB ``(B, 3, H, W)`` -> normalised Lab ``(B, 3, H, W)`` (:mod:`hfssl.views.lab`)."""
        lightness, color = rgb_to_normalised_lab(pixel_values, self.config.input_mean, self.config.input_std)
        return torch.cat([lightness, color], dim=1).to(pixel_values.dtype)

    def get_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, hidden)`` of normalised RGB images: the ``L`` half's, then the ``ab`` half's."""
        return pool_features(self.backbone(pixel_values=self.lab(pixel_values)), self.config.pooling)

    def get_layer_embeddings(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        return layer_features(self.backbone, self.lab(pixel_values), self.config.pooling)

    def predict(self, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled features, predicted ``ab`` ``(B, 2, H, W)`` (from the ``L`` half) and predicted ``L``
        ``(B, 1, H, W)`` (from the ``ab`` half) of normalised Lab ``(B, 3, H, W)``."""
        outputs = self.encode(lab)
        hidden = outputs.last_hidden_state
        half = hidden.shape[1] // 2
        color = self.color_decoder(hidden[:, :half])
        lightness = self.lightness_decoder(hidden[:, half:])
        return pool_features(outputs, self.config.pooling), color, lightness

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> SplitBrainOutput:
        """Args:
        pixel_values: normalised RGB views ``(B, 3, H, W)`` (``config.input_mean`` / ``input_std``).
        """
        lab = self.lab(pixel_values)
        features, color, lightness = self.predict(lab)
        color_loss = F.mse_loss(color.float(), lab[:, 1:].float())
        lightness_loss = F.mse_loss(lightness.float(), lab[:, :1].float())
        return SplitBrainOutput(loss=color_loss + lightness_loss, color_loss=color_loss, lightness_loss=lightness_loss,
                                predicted_color=color, predicted_lightness=lightness, embeddings=features)

    def get_reconstructions(self, pixel_values: torch.Tensor, generator: torch.Generator) -> Reconstruction:
        """``reconstruction``: the normalised Lab image (original), its lightness (corrupted: what the ``L`` half
        saw) and the cross-channel prediction ``(L from ab, ab from L)`` (reconstructed), shown in colour. The task
        draws nothing, so ``generator`` is not used."""
        lab = self.lab(pixel_values)
        _, color, lightness = self.predict(lab)
        predicted = torch.cat([lightness, color], dim=1).float()
        return Reconstruction(original=lab.float(), corrupted=lab[:, :1].float(), reconstructed=predicted,
                              display=split_lab_display(lab[:, :1]))
