"""Data, input builders, recipe checks and pictures of the autoencoder family.

Every variant trains on one view per image (``single_view``: random resized crop and flip, then
normalisation; ``views.noise_*`` noise too when a recipe switches it on). On top of it, drawn from the
engine's generator on the device, in this order:

* denoising: the view corrupted with the model's noise (``model.noise_*``; :func:`hfssl.views.noise.add_noise`),
  ``{"pixel_values": corrupted, "target_pixel_values": clean}``;
* VAE: ``eps ~ N(0, I)`` of shape ``(B, latent)``, ``{"pixel_values", "noise"}``;
* contractive with the stochastic estimate: ``(projections, B, code)`` standard-normal directions,
  ``{"pixel_values", "projections"}``.

So the same seed gives the same views, noise and draws, and a resumed run continues them exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hfssl.backbones import backbone_hidden_size
from hfssl.data.training import TrainingData
from hfssl.models.autoencoder.configuration_autoencoder import (DERIVED_KEYS, AutoencoderConfig,
                                                                ContractiveAutoencoderConfig,
                                                                DenoisingAutoencoderConfig, VAEConfig)
from hfssl.plots import Picture, PictureContext, register_picture
from hfssl.reconstruction import draw_reconstruction_triplets, save_image_rows
from hfssl.registry import IMAGE, MODALITY_LOADERS, get_method
from hfssl.settings import RecipeError
from hfssl.views import build_views
from hfssl.views.noise import add_noise_normalized


def build_data(recipe: Any, accelerator: Any) -> TrainingData:
    """The image loader's data, plus the config values the data fix: the reconstructed side and the
    normalisation (``image_size``, ``pixel_mean``, ``pixel_std``; see :data:`DERIVED_KEYS`)."""
    data = MODALITY_LOADERS[IMAGE](recipe.data, accelerator)
    data.config_updates = {**data.config_updates, **derived_config(recipe)}
    return data


def derived_config(recipe: Any) -> dict[str, Any]:
    views = recipe.views
    return {"image_size": int(views.crop_size or recipe.data.image_size),
            "pixel_mean": [float(value) for value in views.mean], "pixel_std": [float(value) for value in views.std]}


def recipe_config(recipe: Any) -> AutoencoderConfig:
    """The model's config as training builds it (the recipe's ``model`` section and the data's values)."""
    spec = get_method(recipe.method)
    return spec.config_class(**{**recipe.model, **derived_config(recipe)})


def check_recipe(recipe: Any) -> None:
    """Refuse ``model`` keys that training fills from the data, and (denoising) noise in the views, which would
    corrupt the clean target as well as the input."""
    given = [key for key in DERIVED_KEYS if key in recipe.model]
    if given:
        raise RecipeError(f"model.{given[0]} is set from the recipe's data and views sections (data.image_size / "
                          f"views.crop_size, views.mean, views.std); remove it from the model section")
    if get_method(recipe.method).config_class is DenoisingAutoencoderConfig and recipe.views.noise.active:
        raise RecipeError("the denoising autoencoder corrupts its input with model.noise_gaussian_std / "
                          "model.noise_salt_pepper / model.noise_masking; views.noise_* would corrupt the clean target "
                          "too: set the noise in the model section and leave views.noise_* at 0")


class AutoencoderInputs:
    """``make_inputs(batch, generator)`` of the family (module docstring)."""

    def __init__(self, recipe: Any) -> None:
        self.views = build_views("single_view", recipe.views, recipe.data.image_size, recipe.data.channels)
        self.config = recipe_config(recipe)
        self.latent = backbone_hidden_size(self.config.backbone_config)

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        if "pixels" not in batch:
            raise ValueError(f"an image method needs batches with 'pixels' (uint8 (B, C, H, W)); got keys {sorted(batch)}")
        pixels = batch["pixels"]
        if pixels.device.type != generator.device.type:
            pixels = pixels.to(generator.device, non_blocking=True)
        clean = self.views(pixels, generator)["pixel_values"]
        config = self.config
        if isinstance(config, DenoisingAutoencoderConfig):
            mean, std = config.normalization
            corrupted = add_noise_normalized(clean, config.noise, mean, std, generator)
            return {"pixel_values": corrupted, "target_pixel_values": clean}
        if isinstance(config, VAEConfig):
            noise = torch.randn((clean.shape[0], self.latent), generator=generator, device=clean.device)
            return {"pixel_values": clean, "noise": noise}
        if isinstance(config, ContractiveAutoencoderConfig) and config.contractive_estimator == "stochastic":
            code = config.bottleneck_dim or self.latent
            projections = torch.randn((config.contractive_projections, clean.shape[0], code), generator=generator,
                                      device=clean.device)
            return {"pixel_values": clean, "projections": projections}
        return {"pixel_values": clean}


def autoencoder_inputs(recipe: Any, data: TrainingData) -> AutoencoderInputs:
    """``MethodSpec.build_inputs`` of every variant."""
    return AutoencoderInputs(recipe)


def triplets_hook(corruption: Callable[[Any], str]) -> Callable[[Any, PictureContext], list[Path]]:
    """A ``MethodSpec.pictures`` hook drawing the shared triplets, the corruption named from the model's config."""

    def draw(model: Any, context: PictureContext) -> list[Path]:
        return draw_reconstruction_triplets(model, context, corruption=corruption(model.config))

    return draw


PRIOR_SAMPLES = register_picture(Picture(
    "prior_samples.png", "Images decoded from samples of the prior",
    "Images the decoder makes from latents drawn from the prior N(0, I) (seed 0): what the VAE generates.",
    heading="Samples from the prior", order=61))


def draw_vae_pictures(model: Any, context: PictureContext, count: int = 16) -> list[Path]:
    """The VAE's pictures: the reconstruction triplets and ``images/prior_samples.png`` (``count`` samples)."""
    paths = draw_reconstruction_triplets(model, context, corruption="none")
    if context.recipe is None:
        return paths
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        samples = model.sample_prior(count, torch.Generator(device="cpu").manual_seed(0))
    finally:
        model.train(was_training)
    mean, std = model.config.normalization
    shape = (1, -1, 1, 1)
    images = (samples * torch.tensor(std, device=device).view(shape) + torch.tensor(mean, device=device).view(shape))
    images = images.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    half = count // 2
    rows = [("samples", images[:half]), ("samples", images[half:2 * half])]
    return paths + [save_image_rows(rows, context.images_dir / PRIOR_SAMPLES.file, f"hfssl prior_samples count={2 * half}")]
