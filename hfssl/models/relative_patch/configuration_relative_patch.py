"""Relative patch position configuration (Doersch et al. 2015, "Unsupervised Visual Representation Learning
by Context Prediction")."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range
from hfssl.views.grid import GridLayout

#: What replaces a dropped colour channel: Gaussian noise with 1/100 of the kept channels' standard
#: deviation (the paper's "color dropping", sec. 3.1), or zeros.
COLOR_DROP_FILLS = ("noise", "zero")


class RelativePatchConfig(HfsslVisionConfig):
    """Configuration of :class:`~hfssl.models.relative_patch.modeling_relative_patch.RelativePatchForPreTraining`.

    Defaults follow the paper (sec. 3 and 3.1): 96-px patches on a 3x3 grid with 48 px between them and
    up to 7 px of jitter, colour dropping of two channels replaced by noise, a 4096-wide fc6 per patch
    and a 4096-wide fc7 on the pair before the 8-way fc8. Each anti-shortcut trick is a switch:
    ``gap=0``, ``jitter=0``, ``downsample_prob=0`` and ``color_drop_channels=0`` turn them off.

    Args:
        patch_size / gap / jitter: the 3x3 layout (:class:`hfssl.views.grid.GridLayout`).
        downsample_prob: chance that a patch is shrunk by ``downsample_factor`` (area average) and
            blown back up (bilinear), against pixelation cues (sec. 3.1: "randomly downsampled some
            patches"; the paper gives no rate, so it is off by default).
        downsample_factor: how much a chosen patch shrinks (2 to the patch size).
        color_drop_channels: on colour data, how many of the three channels each patch loses (0, 1 or
            2, chosen at random per patch), against chromatic aberration (sec. 3.1). Grey data has none.
        color_drop_fill: ``noise`` or ``zero``: what the dropped channels hold.
        patch_embedding_dim: width of the shared per-patch layer (fc6).
        classifier_hidden_dim: width of the hidden layer (fc7) on the concatenated pair.
    """

    model_type = "hfssl_relative_patch"
    default_backbone = "resnet50"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        patch_size: int = 96,
        gap: int = 48,
        jitter: int = 7,
        downsample_prob: float = 0.0,
        downsample_factor: int = 4,
        color_drop_channels: int = 2,
        color_drop_fill: str = "noise",
        patch_embedding_dim: int = 4096,
        classifier_hidden_dim: int = 4096,
        **kwargs: Any,
    ) -> None:
        GridLayout(3, patch_size, gap, jitter)  # checks the layout, naming a bad value
        check_range("downsample_prob", downsample_prob, 0.0, 1.0)
        check_range("downsample_factor", downsample_factor, 2, max(2, patch_size))
        if color_drop_channels not in (0, 1, 2) or isinstance(color_drop_channels, bool):
            raise ValueError(f"color_drop_channels must be 0 (off), 1 or 2, got {color_drop_channels!r}")
        if color_drop_fill not in COLOR_DROP_FILLS:
            raise ValueError(f"color_drop_fill must be one of {', '.join(COLOR_DROP_FILLS)}, got {color_drop_fill!r}")
        check_range("patch_embedding_dim", patch_embedding_dim, 1, 1 << 16)
        check_range("classifier_hidden_dim", classifier_hidden_dim, 1, 1 << 16)
        self.patch_size = patch_size
        self.gap = gap
        self.jitter = jitter
        self.downsample_prob = downsample_prob
        self.downsample_factor = int(downsample_factor)
        self.color_drop_channels = color_drop_channels
        self.color_drop_fill = color_drop_fill
        self.patch_embedding_dim = patch_embedding_dim
        self.classifier_hidden_dim = classifier_hidden_dim
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)

    @property
    def layout(self) -> GridLayout:
        return GridLayout(3, self.patch_size, self.gap, self.jitter)

    def task_summary(self) -> str:
        """One line for the model card: what the encoder saw in training."""
        tricks = [f"gap {self.gap} px", f"jitter up to {self.jitter} px"]
        if self.downsample_prob > 0:
            tricks.append(f"{self.downsample_prob:g} of the patches shrunk {self.downsample_factor}x and blown back up")
        if self.color_drop_channels:
            tricks.append(f"{self.color_drop_channels} colour channel(s) dropped ({self.color_drop_fill}) on colour data")
        return (f"pairs of {self.patch_size}-px patches, the centre of a 3x3 grid and one of its 8 neighbours "
                f"({', '.join(tricks)})")
