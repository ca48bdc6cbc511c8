"""MAE configuration (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners").

MAE is not re-implemented: the model wraps transformers' ``ViTMAEForPreTraining``, whose
``ViTMAEConfig`` is the ``backbone_config`` here. ``mask_ratio`` and ``norm_pix_loss`` are kept
at the top level (they define the loss) and copied into the backbone config.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range


class MAEConfig(HfsslVisionConfig):
    """Configuration of :class:`MAEForPreTraining`.

    Defaults follow the paper: ViT-B/16 encoder, an 8-block 512-wide decoder (transformers'
    ``ViTMAEConfig`` defaults), 75 % masking (sec. 4.1) and the per-patch normalised pixel loss.

    Args:
        backbone_config: a ``vit_mae`` config (dict, config or preset ``mae-vit-tiny-patch4``).
        mask_ratio: fraction of patches removed, in (0, 1).
        norm_pix_loss: regress per-patch normalised pixels (sec. 3, "reconstruction target").
    """

    model_type = "hfssl_mae"
    default_backbone = "mae-vit-base"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "cls",
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        **kwargs: Any,
    ) -> None:
        check_range("mask_ratio", mask_ratio, 0.0, 1.0, low_open=True, high_open=True)
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)
        if self.backbone_config.model_type != "vit_mae":
            raise ValueError(
                f"MAE needs a 'vit_mae' backbone_config (transformers ViTMAEConfig), got {self.backbone_config.model_type!r}"
            )
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.backbone_config.mask_ratio = mask_ratio
        self.backbone_config.norm_pix_loss = norm_pix_loss
