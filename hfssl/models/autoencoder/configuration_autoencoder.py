"""Configurations of the autoencoder family (issue 22): plain, denoising, sparse, variational and contractive.

Every variant has the same shape: a transformers vision backbone (the exported encoder), its pooled features
(``config.pooling``), a code (a linear bottleneck of ``bottleneck_dim`` units with ``code_activation``, or the
pooled features themselves when ``bottleneck_dim`` is ``None``), and a convolutional decoder from the code to
the image (:func:`hfssl.decoders.build_image_decoder` with ``input_kind="vector"``), trained with the squared
error against the normalised image. ``image_size``, ``pixel_mean`` and ``pixel_std`` (the reconstructed
image's side and the normalisation the noise and the pictures undo) are filled from the recipe's ``data`` /
``views`` sections when training starts; the recipe does not set them.
"""

from __future__ import annotations

import inspect
from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range
from hfssl.views.noise import NoiseSettings

CODE_ACTIVATIONS = ("none", "relu", "sigmoid")
SPARSITY_PENALTIES = ("l1", "kl")
CONTRACTIVE_ESTIMATORS = ("exact", "stochastic")
#: Keys of the config that training fills from the recipe's data and views (a recipe's ``model`` section may not set them).
DERIVED_KEYS = ("image_size", "pixel_mean", "pixel_std")


class AutoencoderConfig(HfsslVisionConfig):
    """Configuration of :class:`~hfssl.models.autoencoder.modeling_autoencoder.AutoencoderForPreTraining`.

    Args:
        bottleneck_dim: width of the code (the bottleneck between encoder and decoder); ``None``: the pooled
            backbone features are the code.
        code_activation: ``none``, ``relu`` or ``sigmoid`` on the code.
        decoder_hidden_size: channels of the decoder's first map (halved at every upsampling, at least 16).
        decoder_num_upsamples: the decoder's 2x upsampling stages (its start map is ``ceil(S / 2**n)`` px).
        image_size / pixel_mean / pixel_std: filled from the recipe (module docstring); defaults 32 and 0.5.
    """

    model_type = "hfssl_autoencoder"
    default_backbone = "resnet18"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        bottleneck_dim: int | None = 64,
        code_activation: str = "none",
        decoder_hidden_size: int = 128,
        decoder_num_upsamples: int = 3,
        image_size: int = 32,
        pixel_mean: list[float] | tuple[float, ...] | None = None,
        pixel_std: list[float] | tuple[float, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        if bottleneck_dim is not None:
            check_range("bottleneck_dim", bottleneck_dim, 1, 1 << 16)
        if code_activation not in CODE_ACTIVATIONS:
            raise ValueError(f"code_activation must be one of {', '.join(CODE_ACTIVATIONS)}, got {code_activation!r}")
        check_range("decoder_hidden_size", decoder_hidden_size, 1, 1 << 14)
        check_range("decoder_num_upsamples", decoder_num_upsamples, 0, 8)
        check_range("image_size", image_size, 2, 1 << 14)
        self.bottleneck_dim = bottleneck_dim
        self.code_activation = code_activation
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_upsamples = decoder_num_upsamples
        self.image_size = image_size
        self.pixel_mean = list(pixel_mean) if pixel_mean is not None else None
        self.pixel_std = list(pixel_std) if pixel_std is not None else None
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
        channels = int(getattr(self.backbone_config, "num_channels", 3))
        for name in ("pixel_mean", "pixel_std"):
            values = getattr(self, name)
            if values is not None and len(values) != channels:
                raise ValueError(f"{name} needs one value per channel ({channels}), got {values!r}")
        if self.pixel_std is not None and any(value <= 0 for value in self.pixel_std):
            raise ValueError(f"pixel_std must be positive, got {self.pixel_std!r}")

    @property
    def num_channels(self) -> int:
        return int(getattr(self.backbone_config, "num_channels", 3))

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` per channel of the normalised images (0.5 when not filled from a recipe)."""
        channels = self.num_channels
        mean = tuple(self.pixel_mean) if self.pixel_mean is not None else (0.5,) * channels
        std = tuple(self.pixel_std) if self.pixel_std is not None else (0.5,) * channels
        return mean, std


class DenoisingAutoencoderConfig(AutoencoderConfig):
    """The denoising autoencoder (Vincent et al. 2008): the input corrupted, the loss against the clean image.

    Args:
        noise_gaussian_std: additive Gaussian noise (std in [0, 1] pixel units), 0 = off.
        noise_salt_pepper: fraction of pixels set to black or white, 0 = off.
        noise_masking: fraction of pixels set to 0 (the paper's masking noise), 0 = off; 0.25 by default.
        At least one is on. The corruption is :func:`hfssl.views.noise.add_noise` on the un-normalised image.
    """

    model_type = "hfssl_denoising_autoencoder"

    def __init__(self, noise_gaussian_std: float = 0.0, noise_salt_pepper: float = 0.0, noise_masking: float = 0.25,
                 **kwargs: Any) -> None:
        self.noise_gaussian_std = float(noise_gaussian_std)
        self.noise_salt_pepper = float(noise_salt_pepper)
        self.noise_masking = float(noise_masking)
        settings = self.noise
        settings.check("noise_")
        if not settings.active:
            raise ValueError("the denoising autoencoder needs a corruption: set noise_gaussian_std, noise_salt_pepper "
                             "or noise_masking above 0 (model.noise_masking: 0.25, for example)")
        super().__init__(**kwargs)

    @property
    def noise(self) -> NoiseSettings:
        """The corruption as :class:`~hfssl.views.noise.NoiseSettings`."""
        return NoiseSettings(self.noise_gaussian_std, self.noise_salt_pepper, self.noise_masking)


class SparseAutoencoderConfig(AutoencoderConfig):
    """The sparse autoencoder (Ng 2011): a sparsity penalty on the code, added to the reconstruction error.

    Args:
        sparsity: ``kl`` (the target-activation penalty on sigmoid units; the code activation is sigmoid) or
            ``l1`` (``sum_j |h_j|`` on ReLU units).
        sparsity_weight: the penalty's weight (beta in Ng's notes).
        sparsity_target: the target mean activation rho of the ``kl`` penalty.
    """

    model_type = "hfssl_sparse_autoencoder"

    def __init__(self, sparsity: str = "kl", sparsity_weight: float = 0.1, sparsity_target: float = 0.05,
                 bottleneck_dim: int | None = 256, code_activation: str | None = None, **kwargs: Any) -> None:
        if sparsity not in SPARSITY_PENALTIES:
            raise ValueError(f"sparsity must be one of {', '.join(SPARSITY_PENALTIES)}, got {sparsity!r}")
        check_range("sparsity_weight", sparsity_weight, 0.0, 1e6)
        check_range("sparsity_target", sparsity_target, 0.0, 1.0, low_open=True, high_open=True)
        expected = "sigmoid" if sparsity == "kl" else "relu"
        if code_activation is not None and code_activation != expected:
            raise ValueError(f"the {sparsity} sparsity penalty takes {expected} code units; leave code_activation "
                             f"unset (got {code_activation!r})")
        if bottleneck_dim is None:
            raise ValueError("the sparse autoencoder penalises its code: set bottleneck_dim (256, for example)")
        self.sparsity = sparsity
        self.sparsity_weight = float(sparsity_weight)
        self.sparsity_target = float(sparsity_target)
        super().__init__(bottleneck_dim=bottleneck_dim, code_activation=expected, **kwargs)


class VAEConfig(AutoencoderConfig):
    """The variational autoencoder (Kingma & Welling 2014) with a beta weight (Higgins et al. 2017).

    The posterior is a diagonal Gaussian whose mean is the pooled backbone features (so the exported encoder's
    pooled output is the posterior mean) and whose log-variance is a linear layer on them; the latent has the
    backbone's width (``bottleneck_dim`` is not used). Loss: ``sum_pixels (x_hat - x)^2 / (2
    reconstruction_variance) + kl_weight * KL(q(z|x) || N(0, I))``, per image, averaged; ``kl_weight`` is the
    schedule ``kl_weight`` (``train.schedules.kl_weight``): a linear warm-up from 0 to ``beta`` over
    ``kl_warmup_fraction`` of training, then ``beta``.

    Args:
        beta: the KL weight after the warm-up (1 = the ELBO).
        kl_warmup_fraction: fraction of training over which the KL weight rises from 0 (0 = no warm-up).
        reconstruction_variance: the fixed variance of the Gaussian decoder (0.5: the squared error summed).
    """

    model_type = "hfssl_vae"

    def __init__(self, beta: float = 1.0, kl_warmup_fraction: float = 0.1, reconstruction_variance: float = 0.5,
                 bottleneck_dim: int | None = None, **kwargs: Any) -> None:
        if bottleneck_dim is not None:
            raise ValueError("the VAE's latent is the pooled backbone features (the exported encoder gives the posterior "
                             "mean): leave bottleneck_dim unset and choose the backbone's width instead")
        check_range("beta", beta, 0.0, 1e6)
        check_range("kl_warmup_fraction", kl_warmup_fraction, 0.0, 1.0, high_open=True)
        check_range("reconstruction_variance", reconstruction_variance, 0.0, 1e6, low_open=True)
        self.beta = float(beta)
        self.kl_warmup_fraction = float(kl_warmup_fraction)
        self.reconstruction_variance = float(reconstruction_variance)
        kwargs.pop("code_activation", None)
        super().__init__(bottleneck_dim=None, code_activation="none", **kwargs)


class ContractiveAutoencoderConfig(AutoencoderConfig):
    """The contractive autoencoder (Rifai et al. 2011): ``contractive_weight * ||J_f(x)||_F^2``, the squared
    Frobenius norm of the code's Jacobian with respect to the input, added to the reconstruction error.

    Args:
        contractive_weight: the penalty's weight (lambda).
        contractive_estimator: ``exact`` (one backward pass per code unit: for a small code) or ``stochastic``
            (``E_v ||J^T v||^2`` with ``contractive_projections`` standard-normal ``v`` drawn per step).
        contractive_projections: the random projections of the stochastic estimate.
    """

    model_type = "hfssl_contractive_autoencoder"

    def __init__(self, contractive_weight: float = 0.1, contractive_estimator: str = "stochastic",
                 contractive_projections: int = 1, bottleneck_dim: int | None = 64, code_activation: str = "sigmoid",
                 **kwargs: Any) -> None:
        check_range("contractive_weight", contractive_weight, 0.0, 1e6)
        if contractive_estimator not in CONTRACTIVE_ESTIMATORS:
            raise ValueError(f"contractive_estimator must be one of {', '.join(CONTRACTIVE_ESTIMATORS)}, "
                             f"got {contractive_estimator!r}")
        check_range("contractive_projections", contractive_projections, 1, 1024)
        self.contractive_weight = float(contractive_weight)
        self.contractive_estimator = contractive_estimator
        self.contractive_projections = int(contractive_projections)
        super().__init__(bottleneck_dim=bottleneck_dim, code_activation=code_activation, **kwargs)


def _inherit_signature(config_class: type[AutoencoderConfig]) -> None:
    """Give a variant's ``__init__`` the signature and annotations of its own keywords plus the base config's, so
    the recipe loader (which reads ``__init__``'s signature) accepts and checks every ``model`` key."""
    own = inspect.signature(config_class.__init__).parameters
    base = inspect.signature(AutoencoderConfig.__init__).parameters
    merged = [own["self"]] + [parameter for name, parameter in own.items() if name not in ("self", "kwargs")]
    merged += [parameter for name, parameter in base.items() if name not in own and name not in ("self", "kwargs")]
    merged = [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) if index else parameter
              for index, parameter in enumerate(merged)] + [own["kwargs"]]
    init = config_class.__init__
    init.__signature__ = inspect.Signature(merged)
    init.__annotations__ = {**AutoencoderConfig.__init__.__annotations__, **init.__annotations__}


for _variant in (DenoisingAutoencoderConfig, SparseAutoencoderConfig, VAEConfig, ContractiveAutoencoderConfig):
    _inherit_signature(_variant)
