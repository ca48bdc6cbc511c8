"""Context encoder configuration (Pathak et al. 2016, "Context Encoders: Feature Learning by Inpainting")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range

#: The region kinds of sec. 3.3 (see :mod:`hfssl.models.context_encoder.masks`).
MASK_TYPES = ("center", "random_blocks", "random_region")


def square_side(fraction: float, image_size: int) -> int:
    """A square's side ``round(fraction * S)`` pixels, at least 1 and at most ``S`` (the masks' squares)."""
    return min(image_size, max(1, round(fraction * image_size)))


def discriminator_input_size(mask_type: str, mask_size: float, overlap: int, image_size: int) -> int:
    """Side of what the discriminator sees: the central square grown by ``overlap`` (clipped to the image) for
    ``center``, the whole image otherwise."""
    if mask_type == "center":
        return min(image_size, square_side(mask_size, image_size) + 2 * overlap)
    return image_size


class ContextEncoderConfig(HfsslVisionConfig):
    """Configuration of :class:`ContextEncoderForPreTraining`.

    The encoder is any transformers vision backbone (the exported part); the decoder (the shared image decoder of
    :mod:`hfssl.decoders` on the backbone's last hidden state) and the discriminator are training-time parts.

    Args:
        mask_type: ``center`` (the paper's central square), ``random_blocks`` or ``random_region``.
        mask_size: side of the central square as a fraction of the image side (the paper's 1/2).
        num_blocks: squares removed by ``random_blocks``.
        block_size: side of each block as a fraction of the image side (4 blocks of 1/4: up to 1/4 of the image).
        region_ratio: share of the pixels ``random_region`` removes (the paper's 1/4).
        region_grid: side of the noise grid whose upsampling shapes the random regions (larger: more, smaller blobs).
        overlap: width in pixels of the visible band around the hole that is predicted too, its error weighted
            ``overlap_weight`` times (the official code's ``overlapPred``; 0 turns it off, as on these small images).
        overlap_weight: the band's weight (the official code's 10).
        adversarial: add the adversarial term (a discriminator); ``False`` trains with the l2 loss alone.
        reconstruction_weight: lambda_rec of eq. 3 (the paper's 0.999).
        adversarial_weight: lambda_adv of eq. 3 (the paper's 0.001).
        discriminator_channels: width of the discriminator's first convolution (doubled at each of its layers).
        discriminator_layers: stride-2 convolutions of the discriminator (its input: the central square, or the whole
            image for the random masks, must keep at least one pixel).
        discriminator_lr_scale: the discriminator's learning rate as a share of the encoder/decoder's (the official
            code trains the generator at 10x the discriminator's rate: 0.1); its parameter group
            ``discriminator`` (``optim.parameter_groups.discriminator`` in a recipe overrides it).
        decoder_options: keyword arguments of :func:`hfssl.decoders.build_image_decoder` (its widths).
        image_size: side of the square images the decoder outputs; training sets it from ``data.image_size``.
    """

    model_type = "hfssl_context_encoder"
    default_backbone = "resnet50"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        mask_type: str = "center",
        mask_size: float = 0.5,
        num_blocks: int = 4,
        block_size: float = 0.25,
        region_ratio: float = 0.25,
        region_grid: int = 4,
        overlap: int = 0,
        overlap_weight: float = 10.0,
        adversarial: bool = True,
        reconstruction_weight: float = 0.999,
        adversarial_weight: float = 0.001,
        discriminator_channels: int = 32,
        discriminator_layers: int = 3,
        discriminator_lr_scale: float = 0.1,
        decoder_options: dict[str, Any] | None = None,
        image_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {', '.join(MASK_TYPES)}, got {mask_type!r}")
        check_range("mask_size", mask_size, 0.0, 1.0, low_open=True, high_open=True)
        check_range("num_blocks", num_blocks, 1, 64)
        check_range("block_size", block_size, 0.0, 1.0, low_open=True)
        check_range("region_ratio", region_ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_range("region_grid", region_grid, 1, 256)
        check_range("overlap", overlap, 0, 64)
        check_range("overlap_weight", overlap_weight, 0.0, 1e4)
        check_range("reconstruction_weight", reconstruction_weight, 0.0, 1e4)
        check_range("adversarial_weight", adversarial_weight, 0.0, 1e4)
        check_range("discriminator_channels", discriminator_channels, 1, 4096)
        check_range("discriminator_layers", discriminator_layers, 1, 8)
        check_range("discriminator_lr_scale", discriminator_lr_scale, 0.0, 1e3)
        for name, value in (("num_blocks", num_blocks), ("region_grid", region_grid), ("overlap", overlap),
                            ("discriminator_channels", discriminator_channels),
                            ("discriminator_layers", discriminator_layers)):
            if int(value) != value:
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        if image_size is not None:
            check_range("image_size", image_size, 1, 1 << 14)
        if adversarial and image_size is not None:
            seen = discriminator_input_size(mask_type, float(mask_size), int(overlap), int(image_size))
            if seen < 2 ** int(discriminator_layers):
                raise ValueError(f"discriminator_layers={discriminator_layers} halves the discriminator's {seen}-px "
                                 f"input below one pixel; use at most {max(1, seen.bit_length() - 1)} layers (or a larger "
                                 "mask_size or image)")
        if not isinstance(adversarial, bool):
            raise ValueError(f"adversarial must be true or false, got {adversarial!r}")
        if decoder_options is not None and not isinstance(decoder_options, dict):
            raise ValueError(f"decoder_options must be a mapping of build_image_decoder's options, got {decoder_options!r}")
        self.mask_type = mask_type
        self.mask_size = float(mask_size)
        self.num_blocks = int(num_blocks)
        self.block_size = float(block_size)
        self.region_ratio = float(region_ratio)
        self.region_grid = int(region_grid)
        self.overlap = int(overlap)
        self.overlap_weight = float(overlap_weight)
        self.adversarial = adversarial
        self.reconstruction_weight = float(reconstruction_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.discriminator_channels = int(discriminator_channels)
        self.discriminator_layers = int(discriminator_layers)
        self.discriminator_lr_scale = float(discriminator_lr_scale)
        self.decoder_options = dict(decoder_options or {})
        self.image_size = None if image_size is None else int(image_size)
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
