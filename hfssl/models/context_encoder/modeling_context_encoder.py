"""Context encoder: inpaint a removed region from its context (Pathak et al. 2016).

The encoder is any transformers vision backbone (the exported part). It sees the image with the region removed
(filled with 0, the data's mean after normalisation, as the paper fills the hole with the mean pixel); the shared
image decoder (:func:`hfssl.decoders.build_image_decoder`) maps its last hidden state to a whole image, and the loss
reads only the region (:func:`hfssl.losses.inpainting.masked_l2_loss`).

The adversarial term in one backward pass
-----------------------------------------
The paper trains the discriminator ``D`` and the context encoder ``F`` (encoder + decoder) with two optimisers in
turn. hfssl's engine runs one optimiser and one backward pass per micro-step, so ``forward`` returns one loss whose
gradient gives each part exactly its own objective:

``loss = lambda_rec * L_rec(F) + lambda_adv * L_adv(F; D frozen) + L_D(D; F's output detached)``

* ``L_D`` scores real regions and the *detached* reconstructed regions with ``D``: its gradient reaches ``D``
  only (the reconstruction is a constant there).
* ``L_adv`` (the non-saturating generator loss) scores the reconstructed region with ``D``'s parameters
  *detached*, through :func:`torch.func.functional_call`: its gradient flows through ``D``'s function into the
  reconstruction and on to ``F``, and never into ``D``'s parameters.
* ``L_rec`` does not touch ``D``.

So ``D``'s gradient is that of ``L_D`` alone, and ``F``'s that of ``lambda_rec L_rec + lambda_adv L_adv`` alone, as
with two optimisers updating simultaneously (tests/models/context_encoder checks each term's gradient reaches
exactly these parameters). ``D`` keeps its own learning rate through the parameter group ``discriminator``
(``config.discriminator_lr_scale``: the official code trains ``F`` at 10x ``D``'s rate).

As in the paper, ``D`` is not conditioned on the context (sec. 3.2): it sees the predicted region alone, real or
reconstructed: for the central square the square itself (grown by ``overlap``), cut out as the official code's
``netD`` takes the 64x64 centre of 128x128 images; for random blocks and regions the whole image with everything
outside the region zeroed. It has no BatchNorm, so its two passes per step change no running statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from transformers.utils import ModelOutput

from hfssl.backbones import build_backbone, freeze_unused_backbone_parts
from hfssl.decoders import build_image_decoder
from hfssl.losses.inpainting import discriminator_loss, generator_adversarial_loss, masked_l2_loss, predicted_region
from hfssl.modeling_utils import HfsslPreTrainedModel, ParameterGroup
from hfssl.models.context_encoder.configuration_context_encoder import ContextEncoderConfig
from hfssl.models.context_encoder.masks import RegionMask, center_box
from hfssl.reconstruction import Reconstruction


@dataclass
class ContextEncoderOutput(ModelOutput):
    """Args:
    loss: ``reconstruction_weight * reconstruction_loss + adversarial_weight * adversarial_loss + discriminator_loss``
        (each term reaches only its own parameters, see the module docstring).
    reconstruction_loss: mean squared error over the removed region (plus the weighted overlap band).
    adversarial_loss: the encoder/decoder's non-saturating adversarial loss (``None`` without the discriminator).
    discriminator_loss: the discriminator's binary cross-entropy on real and reconstructed regions (``None``
        without it).
    discriminator_accuracy: share of real and reconstructed regions the discriminator tells apart (no gradient).
    reconstruction: the decoder's output ``(B, C, H, W)``.
    mask: ``(B, 1, H, W)``, 1 on the removed pixels.
    """

    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    adversarial_loss: torch.FloatTensor | None = None
    discriminator_loss: torch.FloatTensor | None = None
    discriminator_accuracy: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None


class RegionDiscriminator(nn.Module):
    """A small DCGAN-style discriminator (the paper's, without BatchNorm): ``num_layers`` 4x4 stride-2
    convolutions with LeakyReLU(0.2), widths ``channels * 2**i``, a global average and a linear layer to one logit.

    ``(B, C, S, S)`` -> ``(B,)`` logits (real: positive).
    """

    def __init__(self, in_channels: int, channels: int, num_layers: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width_in = in_channels
        for index in range(num_layers):
            width = channels * 2 ** index
            layers += [nn.Conv2d(width_in, width, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            width_in = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width_in, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).mean(dim=(-2, -1))).squeeze(-1)


class ContextEncoderForPreTraining(HfsslPreTrainedModel):
    """A transformers vision encoder, the shared image decoder and, optionally, a region discriminator."""

    config_class = ContextEncoderConfig

    def __init__(self, config: ContextEncoderConfig) -> None:
        super().__init__(config)
        if config.image_size is None:
            raise ValueError("ContextEncoderConfig.image_size is not set: the decoder needs the side of the images; "
                             "training sets it from data.image_size")
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        channels = int(config.backbone_config.num_channels)
        self.decoder = build_image_decoder(config.backbone_config, channels, config.image_size, **config.decoder_options)
        self.discriminator = (RegionDiscriminator(channels, config.discriminator_channels, config.discriminator_layers)
                              if config.adversarial else None)
        self.post_init()

    def region_mask(self) -> RegionMask:
        """The config's mask settings (the input builder draws the same kind of mask from the recipe)."""
        return RegionMask.from_values(self.config)

    def inpaint(self, pixel_values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The images with the region removed (filled with 0: the mean after normalisation) and the decoder's
        whole-image output ``(B, C, H, W)``."""
        corrupted = pixel_values * (1.0 - mask.to(pixel_values.dtype))
        hidden = self.backbone(pixel_values=corrupted).last_hidden_state
        return corrupted, self.decoder(hidden)

    def forward(self, pixel_values: torch.Tensor, mask: torch.Tensor, return_dict: bool | None = None,
                **kwargs) -> ContextEncoderOutput:
        """Args:
        pixel_values: clean, normalised images ``(B, C, S, S)`` (the target).
        mask: ``(B, 1, S, S)``, 1 on the pixels to remove (the input builder's).
        """
        if pixel_values.ndim != 4 or mask.shape != (pixel_values.shape[0], 1, *pixel_values.shape[2:]):
            raise ValueError(f"the context encoder takes pixel_values (batch, channels, height, width) and a mask "
                             f"(batch, 1, height, width); got {tuple(pixel_values.shape)} and {tuple(mask.shape)}")
        config = self.config
        _, reconstruction = self.inpaint(pixel_values, mask)
        reconstruction_loss = masked_l2_loss(reconstruction, pixel_values, mask, config.overlap, config.overlap_weight)
        loss = config.reconstruction_weight * reconstruction_loss
        adversarial = discriminated = accuracy = None
        if self.discriminator is not None:
            real, fake = self.discriminator_inputs(pixel_values, reconstruction, mask)  # D sees the region alone
            scores = self.discriminator(torch.cat([real, fake.detach()]))  # (2B,): D's own loss, F held constant
            real_scores, fake_scores = scores.chunk(2)
            discriminated = discriminator_loss(real_scores, fake_scores)
            frozen = {name: parameter.detach() for name, parameter in self.discriminator.named_parameters()}
            adversarial = generator_adversarial_loss(functional_call(self.discriminator, frozen, (fake,)))
            loss = loss + config.adversarial_weight * adversarial + discriminated
            with torch.no_grad():
                accuracy = torch.cat([real_scores > 0, fake_scores <= 0]).float().mean()
        return ContextEncoderOutput(loss=loss, reconstruction_loss=reconstruction_loss, adversarial_loss=adversarial,
                                    discriminator_loss=discriminated, discriminator_accuracy=accuracy,
                                    reconstruction=reconstruction, mask=mask)

    def discriminator_inputs(self, pixel_values: torch.Tensor, reconstruction: torch.Tensor,
                             mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The real and reconstructed regions the discriminator scores: the central square (grown by ``overlap``)
        cut out, ``(B, C, s, s)``; for other masks the images with everything outside the region zeroed."""
        config = self.config
        if config.mask_type == "center":
            start, end = center_box(pixel_values.shape[-1], config.mask_size, config.overlap)
            return pixel_values[..., start:end, start:end], reconstruction[..., start:end, start:end]
        region = predicted_region(mask, config.overlap).to(reconstruction.dtype)
        return pixel_values * region, reconstruction * region

    def parameter_groups(self) -> list[ParameterGroup]:
        """``discriminator``: its parameters at ``config.discriminator_lr_scale`` of the rate (none without it)."""
        if self.discriminator is None:
            return []
        names = tuple(f"discriminator.{name}" for name, _ in self.discriminator.named_parameters())
        return [ParameterGroup("discriminator", names, lr_scale=self.config.discriminator_lr_scale)]

    def get_reconstructions(self, pixel_values: torch.Tensor, generator: torch.Generator) -> Reconstruction:
        """``reconstruction``: the config's mask drawn from ``generator`` (as the input builder draws it), the images
        with the region removed, and the inpainted images: the decoder's output inside the region pasted into the
        untouched context (the paper's figures); ``mask`` is the removed region, where the error is measured."""
        mask = self.region_mask().sample(pixel_values.shape[0], pixel_values.shape[-1], generator,
                                         pixel_values.device)
        corrupted, output = self.inpaint(pixel_values, mask)
        inpainted = corrupted + output * mask.to(output.dtype)
        return Reconstruction(original=pixel_values, corrupted=corrupted, reconstructed=inpainted, mask=mask)
