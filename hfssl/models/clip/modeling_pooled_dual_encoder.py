"""A transformers dual encoder whose text embedding pools the text tower's tokens the way the tower was trained.

transformers' ``VisionTextDualEncoderModel`` projects the text tower's ``pooler_output``: for a BERT tower
that is BERT's dense + tanh pooler on ``[CLS]``. A sentence-transformers tower (all-MiniLM-L6-v2) was
trained with the attention-mask weighted *mean* of its token states instead and its pooler was never
trained, so :class:`PooledVisionTextDualEncoderModel` projects that mean (``text_pooling="mean"``) or
the raw ``[CLS]`` state (``"cls"``). The image side and everything else are the parent's.

This file is self-contained on purpose (it imports only ``torch`` and ``transformers``): hfssl trains
with these classes and copies this file into every exported folder whose text pooling is not the
pooler, with an ``auto_map`` in ``config.json``, so plain transformers loads the export with
``trust_remote_code=True``::

    AutoModel.from_pretrained(folder, trust_remote_code=True)
    pipeline("zero-shot-image-classification", model=folder, trust_remote_code=True)

The model type is its own (``pooled-vision-text-dual-encoder``, not ``vision-text-dual-encoder``), so
loading it without ``trust_remote_code=True`` fails with transformers' request for it instead of
silently computing other (pooler) similarities with the plain class.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import VisionTextDualEncoderConfig, VisionTextDualEncoderModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import CLIPOutput

#: ``model_type`` of :class:`PooledVisionTextDualEncoderConfig`.
POOLED_MODEL_TYPE = "pooled-vision-text-dual-encoder"
#: Text poolings of the class: the attention-mask weighted mean of the last hidden states, or its first
#: ("[CLS]") token's state without BERT's pooler.
TEXT_POOLINGS = ("mean", "cls")
#: Where ``auto_map`` finds the classes of this file (the module name is the file name).
AUTO_MAP = {
    "AutoConfig": "modeling_pooled_dual_encoder.PooledVisionTextDualEncoderConfig",
    "AutoModel": "modeling_pooled_dual_encoder.PooledVisionTextDualEncoderModel",
    "AutoModelForZeroShotImageClassification": "modeling_pooled_dual_encoder.PooledVisionTextDualEncoderModel",
}


class PooledVisionTextDualEncoderConfig(VisionTextDualEncoderConfig):
    """``VisionTextDualEncoderConfig`` plus ``text_pooling`` (``"mean"`` or ``"cls"``)."""

    model_type = POOLED_MODEL_TYPE
    text_pooling: str = "mean"

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.text_pooling not in TEXT_POOLINGS:
            raise ValueError(f"text_pooling={self.text_pooling!r} is not one of {TEXT_POOLINGS}")
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(AUTO_MAP)


def pool_tokens(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """``(B, T, H)`` token states -> ``(B, H)``: the mean over the tokens where ``attention_mask`` is 1
    (sentence-transformers' mean pooling: padding excluded, divided by the token count), or token 0."""
    if pooling == "cls":
        return last_hidden_state[:, 0]
    if attention_mask is None:
        return last_hidden_state.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)  # (B, T, 1)
    return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class PooledVisionTextDualEncoderModel(VisionTextDualEncoderModel):
    """``VisionTextDualEncoderModel`` whose text embedding is ``text_projection(pool(last_hidden_state))``
    with ``config.text_pooling``; same parameters (and parameter names) as the parent."""

    config_class = PooledVisionTextDualEncoderConfig
    config: PooledVisionTextDualEncoderConfig

    def get_pooled_text_output(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                               position_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                               **kwargs: Any) -> BaseModelOutputWithPooling:
        """The text tower's output with ``pooler_output`` replaced by the configured pooling ``(B, hidden)``
        (before the projection)."""
        outputs = self.text_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  token_type_ids=token_type_ids, return_dict=True, **kwargs)
        outputs.pooler_output = pool_tokens(outputs.last_hidden_state, attention_mask, self.config.text_pooling)
        return outputs

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          position_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                          **kwargs: Any) -> BaseModelOutputWithPooling:
        """As the parent's: ``pooler_output`` holds the projected text embeddings ``(B, projection_dim)``."""
        outputs = self.get_pooled_text_output(input_ids, attention_mask, position_ids, token_type_ids, **kwargs)
        outputs.pooler_output = self.text_projection(outputs.pooler_output)
        return outputs

    def forward(self, input_ids: torch.LongTensor | None = None, pixel_values: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.LongTensor | None = None,
                return_loss: bool | None = None, token_type_ids: torch.LongTensor | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs: Any) -> tuple | CLIPOutput:
        """The parent's ``forward`` (logits scaled by ``exp(logit_scale)``, ``CLIPOutput``) with the pooled
        text embedding."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        vision_outputs = self.vision_model(pixel_values=pixel_values, output_attentions=output_attentions,
                                           output_hidden_states=output_hidden_states, return_dict=True)
        text_outputs = self.get_pooled_text_output(input_ids, attention_mask, position_ids, token_type_ids,
                                                   output_attentions=output_attentions,
                                                   output_hidden_states=output_hidden_states)
        image_embeds = self.visual_projection(vision_outputs.pooler_output)
        text_embeds = self.text_projection(text_outputs.pooler_output)
        image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
        text_embeds = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
        logits_per_text = torch.matmul(text_embeds, image_embeds.t()) * self.logit_scale.exp()
        logits_per_image = logits_per_text.T
        loss = None
        if return_loss:
            targets = torch.arange(len(logits_per_text), device=logits_per_text.device)
            loss = (torch.nn.functional.cross_entropy(logits_per_text, targets)
                    + torch.nn.functional.cross_entropy(logits_per_image, targets)) / 2.0
        if not return_dict:
            output = (logits_per_image, logits_per_text, text_embeds, image_embeds, text_outputs, vision_outputs)
            return ((loss,) + output) if loss is not None else output
        return CLIPOutput(loss=loss, logits_per_image=logits_per_image, logits_per_text=logits_per_text,
                          text_embeds=text_embeds, image_embeds=image_embeds, text_model_output=text_outputs,
                          vision_model_output=vision_outputs)


__all__ = ["AUTO_MAP", "POOLED_MODEL_TYPE", "TEXT_POOLINGS", "PooledVisionTextDualEncoderConfig",
           "PooledVisionTextDualEncoderModel", "pool_tokens"]
