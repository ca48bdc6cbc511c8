"""Image decoders of the reconstruction methods: a backbone's output (or a code vector) -> an image.

The decoder belongs to the full self-supervised model only (like a projection head): export keeps the
backbone. :func:`build_image_decoder` picks the decoder from what the backbone gives as
``last_hidden_state``:

* a feature map ``(B, C, h, w)`` (ResNet, ConvNeXt and other convolutional backbones):
  :class:`ConvImageDecoder`: a 1x1 convolution to ``hidden_size`` channels, the map resized to the
  decoder's start side ``ceil(image_size / 2**num_upsamples)`` (bilinear), then ``num_upsamples`` stages
  of nearest 2x upsampling + 3x3 convolution + BatchNorm + ReLU (the width halves each stage, never under
  ``min_hidden_size``), a 3x3 convolution to ``out_channels``, and a bilinear resize to ``image_size``
  when the doubling overshoots it (28 px from a 4 px start: 32 -> 28);
* tokens ``(B, 1 + N, D)`` (ViT-like backbones): :class:`TokenImageDecoder`: the [CLS] token dropped,
  each patch token through a two-layer MLP (``D -> hidden_size -> patch * patch * out_channels``) and put
  back in its place (patch un-embedding), resized to ``image_size`` if the patch grid does not tile it;
* a code vector ``(B, in_features)`` (``input_kind="vector"``: an autoencoder's bottleneck): the
  convolutional decoder whose start map comes from a linear layer ``in_features -> hidden * s * s``.

The output is unbounded (no final activation): the methods compare it with the normalised image (or the
target their loss names), so a sigmoid would clip what normalisation puts outside [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig

from hfssl.backbones import backbone_hidden_size

INPUT_KINDS = ("feature_map", "tokens", "vector")


def decoder_input_kind(backbone_config: PretrainedConfig) -> str:
    """``tokens`` for a backbone whose ``last_hidden_state`` is a token sequence (ViT-like: a config with an
    integer ``patch_size`` and a ``hidden_size``, no ``hidden_sizes``), else ``feature_map``."""
    is_tokens = (isinstance(getattr(backbone_config, "patch_size", None), int)
                 and not getattr(backbone_config, "hidden_sizes", None)
                 and getattr(backbone_config, "model_type", "") != "convnext")
    return "tokens" if is_tokens else "feature_map"


class ConvImageDecoder(nn.Module):
    """A feature map ``(B, C, h, w)`` or a vector ``(B, C)`` -> an image ``(B, out_channels, S, S)`` (module doc)."""

    def __init__(self, in_channels: int, out_channels: int, image_size: int, *, hidden_size: int = 128,
                 num_upsamples: int = 3, min_hidden_size: int = 16, from_vector: bool = False) -> None:
        super().__init__()
        if image_size < 1 or out_channels < 1 or in_channels < 1:
            raise ValueError(f"decoder sizes must be >= 1, got in_channels={in_channels}, out_channels={out_channels}, "
                             f"image_size={image_size}")
        if num_upsamples < 0 or hidden_size < 1 or min_hidden_size < 1:
            raise ValueError(f"decoder: num_upsamples must be >= 0 and hidden sizes >= 1, got num_upsamples="
                             f"{num_upsamples}, hidden_size={hidden_size}, min_hidden_size={min_hidden_size}")
        self.image_size = image_size
        self.from_vector = from_vector
        self.start_size = max(1, math.ceil(image_size / 2 ** num_upsamples))
        self.hidden_size = hidden_size
        if from_vector:
            self.stem = nn.Linear(in_channels, hidden_size * self.start_size ** 2)
        else:
            self.stem = nn.Conv2d(in_channels, hidden_size, kernel_size=1)
        stages, width = [], hidden_size
        for _ in range(num_upsamples):
            next_width = max(min_hidden_size, width // 2)
            stages += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(width, next_width, kernel_size=3, padding=1, bias=False),
                       nn.BatchNorm2d(next_width), nn.ReLU(inplace=True)]
            width = next_width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Conv2d(width, out_channels, kernel_size=3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.from_vector:
            if features.ndim != 2:
                raise ValueError(f"this decoder takes code vectors (B, C), got {tuple(features.shape)}")
            start = self.stem(features).view(features.shape[0], self.hidden_size, self.start_size, self.start_size)
        else:
            if features.ndim != 4:
                raise ValueError(f"this decoder takes feature maps (B, C, h, w), got {tuple(features.shape)}")
            start = self.stem(features)
            if start.shape[-2:] != (self.start_size, self.start_size):
                start = F.interpolate(start, size=(self.start_size, self.start_size), mode="bilinear",
                                      align_corners=False)
        images = self.head(self.stages(start))
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return images


class TokenImageDecoder(nn.Module):
    """ViT tokens ``(B, 1 + N, D)`` (or ``(B, N, D)`` with ``has_cls=False``) -> ``(B, out_channels, S, S)``:
    patch un-embedding through a per-token MLP (module doc)."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, image_size: int, *,
                 decoder_hidden_size: int = 128, has_cls: bool = True) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.out_channels = out_channels
        self.image_size = image_size
        self.has_cls = has_cls
        self.mlp = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, decoder_hidden_size), nn.GELU(),
                                 nn.Linear(decoder_hidden_size, patch_size * patch_size * out_channels))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3:
            raise ValueError(f"this decoder takes tokens (B, N, D), got {tuple(tokens.shape)}")
        patches = tokens[:, 1:] if self.has_cls else tokens
        batch, count, _ = patches.shape
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(f"the token decoder needs a square patch grid, got {count} patch tokens")
        p, c = self.patch_size, self.out_channels
        pixels = self.mlp(patches).view(batch, side, side, p, p, c)
        images = pixels.permute(0, 5, 1, 3, 2, 4).reshape(batch, c, side * p, side * p)
        if side * p != self.image_size:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return images


def build_image_decoder(backbone_config: PretrainedConfig, out_channels: int, image_size: int,
                        **options: Any) -> nn.Module:
    """The decoder from ``backbone_config``'s ``last_hidden_state`` to ``(B, out_channels, image_size, image_size)``.

    Args:
        backbone_config: the transformers config of the encoder (ResNet, ConvNeXt, ViT, ...).
        out_channels: channels of the reconstruction (1 or 3 for images, 2 for Lab's ab, ...).
        image_size: side of the square reconstruction.
        **options: ``input_kind`` (``feature_map``, ``tokens`` or ``vector``; default from the backbone, see
            :func:`decoder_input_kind`), ``in_features`` (the input width; default the backbone's hidden size;
            for ``vector``, the code width), ``hidden_size`` (128), ``num_upsamples`` (3),
            ``min_hidden_size`` (16) for the convolutional decoder; ``hidden_size`` (128) and ``has_cls``
            (True) for the token decoder.

    Raises:
        ValueError: an unknown option or input kind, naming the known ones.
    """
    known = {"input_kind", "in_features", "hidden_size", "num_upsamples", "min_hidden_size", "has_cls"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"build_image_decoder: unknown options {unknown}; known: {sorted(known)}")
    kind = options.get("input_kind") or decoder_input_kind(backbone_config)
    if kind not in INPUT_KINDS:
        raise ValueError(f"build_image_decoder: input_kind must be one of {INPUT_KINDS}, got {kind!r}")
    in_features = int(options.get("in_features") or backbone_hidden_size(backbone_config))
    hidden = int(options.get("hidden_size", 128))
    if kind == "tokens":
        return TokenImageDecoder(in_features, int(backbone_config.patch_size), out_channels, image_size,
                                 decoder_hidden_size=hidden, has_cls=bool(options.get("has_cls", True)))
    return ConvImageDecoder(in_features, out_channels, image_size, hidden_size=hidden,
                            num_upsamples=int(options.get("num_upsamples", 3)),
                            min_hidden_size=int(options.get("min_hidden_size", 16)), from_vector=kind == "vector")
