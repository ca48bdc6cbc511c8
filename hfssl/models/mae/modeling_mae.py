"""MAE through transformers' ``ViTMAEForPreTraining`` (He et al. 2022).

The transferable part is the ViT encoder. ``ViTMAEModel`` always masks its input (it is made for
pre-training), so :meth:`MAEForPreTraining.export_backbone` converts the encoder into a plain
``ViTModel`` (same blocks; the fixed 2-D sin-cos position embeddings are copied into ViT's
position-embedding parameter), which is what the MAE paper fine-tunes and what
``pipeline("image-feature-extraction")`` expects. :meth:`get_embeddings` runs the encoder on all
patches, unmasked, and equals the exported ``ViTModel``'s output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import ViTConfig, ViTMAEForPreTraining, ViTModel
from transformers.utils import ModelOutput

from hfssl.backbones import pool_tokens
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.mae.configuration_mae import MAEConfig
from hfssl.reconstruction import Reconstruction


@dataclass
class MAEOutput(ModelOutput):
    """Args:
    loss: mean squared error on the masked patches (normalised pixels when ``norm_pix_loss``).
    logits: decoder predictions, ``(B, num_patches, patch_size**2 * C)``.
    mask: ``(B, num_patches)``, 1 for removed patches.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None


class MAEForPreTraining(HfsslPreTrainedModel):
    config_class = MAEConfig

    def __init__(self, config: MAEConfig) -> None:
        super().__init__(config)
        self.mae = ViTMAEForPreTraining(config.backbone_config)
        self.post_init()

    def get_backbone(self):  # noqa: ANN201 - a ViTMAEModel
        return self.mae.vit

    def get_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """CLS (or mean-patch) features ``(B, hidden)`` of the encoder on all patches, no masking."""
        return pool_tokens(self.encode_unmasked(pixel_values), self.config.pooling)

    def get_layer_embeddings(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """CLS (or mean-patch) features ``(B, hidden)`` of every encoder block on all patches, no
        masking, each block's output through the encoder's final LayerNorm (as MAE's own
        ``get_intermediate_layers``, see :func:`hfssl.backbones.pool_hidden_states`); the last entry
        equals :meth:`get_embeddings` and the exported ``ViTModel``'s per-block features."""
        layernorm = self.mae.vit.layernorm
        return [pool_tokens(layernorm(hidden), self.config.pooling) for hidden in self._unmasked_blocks(pixel_values)]

    def encode_unmasked(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Encoder output ``(B, 1 + num_patches, hidden)`` on every patch, in patch order."""
        return self.mae.vit.layernorm(self._unmasked_blocks(pixel_values)[-1])

    def _unmasked_blocks(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output ``(B, 1 + num_patches, hidden)`` on all patches, before the final norm."""
        vit = self.mae.vit
        embeddings = vit.embeddings
        patches = embeddings.patch_embeddings(pixel_values)  # (B, num_patches, hidden)
        position = embeddings.position_embeddings  # (1, 1 + num_patches, hidden), fixed sin-cos
        patches = patches + position[:, 1:, :]
        cls = (embeddings.cls_token + position[:, :1, :]).expand(patches.shape[0], -1, -1)
        hidden = torch.cat([cls, patches], dim=1)
        blocks = []
        for layer in vit.layers:  # no attention mask: every token is present
            hidden = layer(hidden, None)
            blocks.append(hidden)
        return blocks

    def export_backbone(self) -> ViTModel:
        """A plain ``ViTModel`` with this encoder's weights (its pooler is untrained: use CLS/mean)."""
        mae_config = self.config.backbone_config
        keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                "layer_norm_eps", "image_size", "patch_size", "num_channels", "qkv_bias", "initializer_range")
        vit_config = ViTConfig(**{key: getattr(mae_config, key) for key in keys})
        vit = ViTModel(vit_config)
        state = {k: v for k, v in self.mae.vit.state_dict().items()}
        missing, unexpected = vit.load_state_dict(state, strict=False)
        if unexpected or any(not key.startswith("pooler.") for key in missing):
            raise RuntimeError(f"MAE -> ViT conversion failed: missing {missing}, unexpected {unexpected}")
        return vit.eval()

    def forward(self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> MAEOutput:
        """Args:
        pixel_values: ``(B, C, H, W)``.
        noise: optional ``(B, num_patches)`` uniform noise that fixes the random mask (argsort order).
        """
        if pixel_values.ndim != 4:
            raise ValueError(f"MAE expects pixel_values of shape (batch, channels, height, width), got {tuple(pixel_values.shape)}")
        outputs = self.mae(pixel_values=pixel_values, noise=noise)
        return MAEOutput(loss=outputs.loss, logits=outputs.logits, mask=outputs.mask)

    @torch.no_grad()
    def get_reconstructions(self, pixel_values: torch.Tensor, generator: torch.Generator) -> Reconstruction:
        """``reconstruction``: a random mask of ``mask_ratio`` of the patches (its noise drawn from ``generator``),
        the decoder's prediction of the removed patches with the visible ones pasted back, in normalised pixels
        (with ``norm_pix_loss`` the per-patch normalisation undone with the true patch statistics, as MAE's
        pictures do); ``mask`` covers the removed patches, where MAE's loss is measured. ``corrupted`` is the
        image with the removed patches set to 0 (the normalised mean)."""
        if pixel_values.ndim != 4:
            raise ValueError(f"MAE expects pixel_values of shape (batch, channels, height, width), got {tuple(pixel_values.shape)}")
        patch = int(self.config.backbone_config.patch_size)
        grid = (pixel_values.shape[-2] // patch) * (pixel_values.shape[-1] // patch)
        noise = torch.rand((pixel_values.shape[0], grid), generator=generator, device=generator.device)
        outputs = self(pixel_values=pixel_values, noise=noise.to(pixel_values.device))
        mae = self.mae
        target = mae.patchify(pixel_values)
        prediction = outputs.logits
        if self.config.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            prediction = prediction * (var + 1e-6) ** 0.5 + mean
        removed = outputs.mask.unsqueeze(-1).to(target.dtype)  # (B, patches, 1), 1 = removed
        reconstructed = mae.unpatchify(target * (1 - removed) + prediction * removed)
        corrupted = mae.unpatchify(target * (1 - removed))
        mask = mae.unpatchify(removed.expand_as(target))[:, :1]
        return Reconstruction(original=pixel_values, corrupted=corrupted, reconstructed=reconstructed, mask=mask)
