"""The autoencoder family (issue 22): encoder = any transformers vision backbone (exported), a code, and a
convolutional decoder from the code back to the image (part of the full model only).

* :class:`AutoencoderForPreTraining`: squared error between the reconstruction and the normalised image
  (Hinton & Salakhutdinov 2006, with a convolutional encoder and decoder);
* :class:`DenoisingAutoencoderForPreTraining`: the input corrupted (Gaussian, salt-and-pepper, masking noise;
  :func:`hfssl.views.noise.add_noise`), the loss against the clean image (Vincent et al. 2008);
* :class:`SparseAutoencoderForPreTraining`: + an L1 or KL target-activation penalty on the code (Ng 2011),
  logged as ``sparsity_loss``;
* :class:`VAEForPreTraining`: Gaussian posterior ``N(mu, exp(logvar))`` with ``mu`` the pooled features,
  reparameterised ``z = mu + exp(logvar / 2) * eps``, ELBO with a scheduled KL weight (beta, warm-up),
  logged as ``kl_loss`` (Kingma & Welling 2014; Higgins et al. 2017);
* :class:`ContractiveAutoencoderForPreTraining`: + the squared Frobenius norm of the code's Jacobian with
  respect to the input, exact or estimated, logged as ``contractive_loss`` (Rifai et al. 2011).

Randomness (noise, ``eps``, projections) comes in as inputs drawn by the input builders from the engine's
generator (:mod:`hfssl.models.autoencoder.inputs`); a forward without them draws from torch's global generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from hfssl.backbones import backbone_hidden_size, build_backbone, freeze_unused_backbone_parts
from hfssl.decoders import build_image_decoder
from hfssl.losses.reconstruction import (contractive_penalty, gaussian_kl, gaussian_nll, kl_sparsity, l1_sparsity,
                                         squared_error)
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.autoencoder.configuration_autoencoder import (AutoencoderConfig, ContractiveAutoencoderConfig,
                                                                DenoisingAutoencoderConfig, SparseAutoencoderConfig,
                                                                VAEConfig)
from hfssl.reconstruction import Reconstruction
from hfssl.schedules import Schedule, constant, warmup_then_constant
from hfssl.views.noise import add_noise_normalized

ACTIVATIONS = {"none": nn.Identity, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


@dataclass
class AutoencoderOutput(ModelOutput):
    """Args:
    loss: the training objective (reconstruction term plus the variant's regulariser).
    reconstruction_loss: the reconstruction term (squared error; the VAE's Gaussian NLL), logged apart.
    sparsity_loss / kl_loss / contractive_loss: the variant's regulariser before its weight, logged apart.
    reconstruction: ``(B, C, H, W)`` the decoder's output (normalised pixels).
    code: ``(B, k)`` the code (the VAE: the sampled latent).
    """

    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    sparsity_loss: torch.FloatTensor | None = None
    kl_loss: torch.FloatTensor | None = None
    contractive_loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    code: torch.FloatTensor | None = None


class AutoencoderForPreTraining(HfsslPreTrainedModel):
    """Backbone -> pooled features -> code (linear bottleneck + activation) -> convolutional decoder -> image."""

    config_class = AutoencoderConfig

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.backbone_config)
        freeze_unused_backbone_parts(self.backbone)
        hidden = backbone_hidden_size(config.backbone_config)
        self.code_dim = config.bottleneck_dim or hidden
        self.bottleneck = nn.Linear(hidden, config.bottleneck_dim) if config.bottleneck_dim else nn.Identity()
        self.code_activation = ACTIVATIONS[config.code_activation]()
        self.decoder = build_image_decoder(config.backbone_config, config.num_channels, config.image_size,
                                           input_kind="vector", in_features=self.code_dim,
                                           hidden_size=config.decoder_hidden_size,
                                           num_upsamples=config.decoder_num_upsamples)
        self.post_init()

    def _check_images(self, pixel_values: torch.Tensor) -> None:
        size = self.config.image_size
        if pixel_values.ndim != 4 or pixel_values.shape[-2:] != (size, size):
            raise ValueError(f"{type(self).__name__} reconstructs {size}x{size} images (config.image_size, from the "
                             f"recipe's views.crop_size or data.image_size), got pixel_values {tuple(pixel_values.shape)}")

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The code ``(B, k)`` of normalised images."""
        return self.code_activation(self.bottleneck(self.get_embeddings(pixel_values)))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(B, C, S, S)`` from codes ``(B, k)``."""
        return self.decoder(code)

    def forward(self, pixel_values: torch.Tensor, target_pixel_values: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> AutoencoderOutput:
        """Args:
        pixel_values: the (possibly corrupted) normalised views ``(B, C, S, S)``.
        target_pixel_values: what to reconstruct (the clean views); default ``pixel_values``.
        """
        self._check_images(pixel_values)
        target = pixel_values if target_pixel_values is None else target_pixel_values
        code = self.encode(pixel_values)
        reconstruction = self.decode(code)
        loss = squared_error(reconstruction, target)
        return AutoencoderOutput(loss=loss, reconstruction_loss=loss.detach(), reconstruction=reconstruction, code=code)

    def corrupt(self, pixel_values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The input the model is trained to reconstruct from (the clean images: no corruption)."""
        return pixel_values

    @torch.no_grad()
    def get_reconstructions(self, pixel_values: torch.Tensor, generator: torch.Generator) -> Reconstruction:
        """``reconstruction``: the images corrupted as in training (:meth:`corrupt`) and decoded from their code."""
        self._check_images(pixel_values)
        corrupted = self.corrupt(pixel_values, generator)
        return Reconstruction(original=pixel_values, corrupted=corrupted,
                              reconstructed=self.decode(self.encode(corrupted)))


class DenoisingAutoencoderForPreTraining(AutoencoderForPreTraining):
    """The denoising autoencoder: the builder corrupts the views (``pixel_values``) and passes the clean ones
    (``target_pixel_values``); the loss is the squared error against the clean views."""

    config_class = DenoisingAutoencoderConfig

    def corrupt(self, pixel_values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The configured noise on normalised images, drawn from ``generator`` (the training builder's function)."""
        mean, std = self.config.normalization
        return add_noise_normalized(pixel_values, self.config.noise, mean, std, generator)


class SparseAutoencoderForPreTraining(AutoencoderForPreTraining):
    """+ ``sparsity_weight`` x the L1 (ReLU code) or KL target-activation (sigmoid code) penalty."""

    config_class = SparseAutoencoderConfig

    def sparsity_penalty(self, code: torch.Tensor) -> torch.Tensor:
        if self.config.sparsity == "kl":
            return kl_sparsity(code, self.config.sparsity_target)
        return l1_sparsity(code)

    def forward(self, pixel_values: torch.Tensor, target_pixel_values: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> AutoencoderOutput:
        outputs = super().forward(pixel_values, target_pixel_values)
        sparsity = self.sparsity_penalty(outputs.code)
        outputs.loss = outputs.loss + self.config.sparsity_weight * sparsity
        outputs.sparsity_loss = sparsity.detach()
        return outputs


class VAEForPreTraining(AutoencoderForPreTraining):
    """The VAE: ``mu`` = pooled features (the exported encoder's output), ``logvar`` = a linear layer on them."""

    config_class = VAEConfig

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        self.logvar = nn.Linear(self.code_dim, self.code_dim)
        self.logvar.apply(self._init_weights)
        self._kl_weight = float(config.beta) if config.kl_warmup_fraction == 0 else 0.0

    def schedules(self) -> dict[str, Schedule]:
        """``kl_weight``: 0 -> beta linearly over ``kl_warmup_fraction`` of training, then beta."""
        config = self.config
        if config.kl_warmup_fraction > 0:
            return {"kl_weight": warmup_then_constant(0.0, config.beta, warmup_fraction=config.kl_warmup_fraction)}
        return {"kl_weight": constant(config.beta)}

    @classmethod
    def schedule_names(cls, config) -> tuple[str, ...]:
        return ("kl_weight",)

    def on_train_step_start(self, step: int, scheduled: dict[str, float]) -> None:
        if "kl_weight" in scheduled:
            self._kl_weight = float(scheduled["kl_weight"])

    def posterior(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``(B, d)``."""
        mean = self.get_embeddings(pixel_values)
        return mean, self.logvar(mean)

    def forward(self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> AutoencoderOutput:
        """Args:
        pixel_values: normalised views ``(B, C, S, S)``.
        noise: ``eps ~ N(0, I)`` of shape ``(B, d)`` for the reparameterisation (the builder draws it).
        """
        self._check_images(pixel_values)
        mean, logvar = self.posterior(pixel_values)
        if noise is None:
            noise = torch.randn_like(mean)
        elif noise.shape != mean.shape:
            raise ValueError(f"the VAE's noise must be (B, latent) = {tuple(mean.shape)}, got {tuple(noise.shape)}")
        code = mean + torch.exp(0.5 * logvar) * noise.to(mean.dtype)
        reconstruction = self.decode(code)
        nll = gaussian_nll(reconstruction, pixel_values, self.config.reconstruction_variance ** 0.5)
        kl = gaussian_kl(mean, logvar)
        return AutoencoderOutput(loss=nll + self._kl_weight * kl, reconstruction_loss=nll.detach(), kl_loss=kl.detach(),
                                 reconstruction=reconstruction, code=code)

    @torch.no_grad()
    def get_reconstructions(self, pixel_values: torch.Tensor, generator: torch.Generator) -> Reconstruction:
        """``reconstruction``: decoded from the posterior mean (no sampling; ``generator`` is not used)."""
        self._check_images(pixel_values)
        return Reconstruction(original=pixel_values, corrupted=pixel_values,
                              reconstructed=self.decode(self.get_embeddings(pixel_values)))

    @torch.no_grad()
    def sample_prior(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Normalised images ``(count, C, S, S)`` decoded from ``z ~ N(0, I)`` drawn from ``generator``."""
        device = next(self.parameters()).device
        latent = torch.randn((count, self.code_dim), generator=generator, device=generator.device).to(device)
        return self.decode(latent)


class ContractiveAutoencoderForPreTraining(AutoencoderForPreTraining):
    """+ ``contractive_weight`` x ``||d code / d input||_F^2`` (exact, or the random-projection estimate)."""

    config_class = ContractiveAutoencoderConfig

    def forward(self, pixel_values: torch.Tensor, projections: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> AutoencoderOutput:
        """Args:
        pixel_values: normalised views ``(B, C, S, S)``.
        projections: ``(S, B, k)`` standard-normal directions of the stochastic estimate (the builder draws
            them); ignored by the exact penalty.
        """
        self._check_images(pixel_values)
        inputs = pixel_values.detach().requires_grad_(True)
        code = self.encode(inputs)
        reconstruction = self.decode(code)
        reconstruction_loss = squared_error(reconstruction, pixel_values)
        if self.config.contractive_estimator == "exact":
            projections = None
        elif projections is None:
            projections = torch.randn((self.config.contractive_projections, *code.shape), device=code.device)
        penalty = contractive_penalty(code, inputs, projections)
        return AutoencoderOutput(loss=reconstruction_loss + self.config.contractive_weight * penalty,
                                 reconstruction_loss=reconstruction_loss.detach(), contractive_loss=penalty.detach(),
                                 reconstruction=reconstruction, code=code)
