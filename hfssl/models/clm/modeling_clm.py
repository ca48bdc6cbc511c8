"""GPT-style causal language modelling (next-token prediction) with a transformers decoder.

:class:`CLMForPreTraining` wraps an ``AutoModelForCausalLM`` (GPT-2 by default) at ``self.language_model``,
with SDPA attention. Its forward takes packed rows ``input_ids`` ``(B, L)`` with their ``attention_mask``
(rows are padded on the right only) and predicts every real token from the ones before it in the row.
The decoder runs without the attention mask: causal attention never lets a real token see the padding
after it, and SDPA's causal kernel then needs no mask tensor. The output layer runs on the real targets
only (no logits for the padding or for each row's last token), fused with the cross-entropy over chunks of
``model.loss_chunk_size`` tokens (:mod:`hfssl.losses.causal_lm`: the gradients are formed in the forward pass and
the ``(tokens, V)`` logits never exist whole; ``null`` forms them whole): the same loss and gradients as
``GPT2LMHeadModel.forward(labels=...)`` either way (tested).

Distributed training: the loss is the sum of the token losses divided by the mean number of target
tokens per process, so the gradients DDP averages are those of the mean over every target token of the
global batch (two processes = one process on the whole batch, ``tests/models/clm``), even when the
processes hold different numbers of tokens (a padded last row).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.utils import ModelOutput

from hfssl.backbones import pool_text_features
from hfssl.distributed import all_reduce_mean
from hfssl.losses.causal_lm import linear_cross_entropy
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.clm.configuration_clm import CLMConfig

logger = logging.getLogger(__name__)


@dataclass
class CLMOutput(ModelOutput):
    """Outputs of :class:`CLMForPreTraining`.

    Attributes:
        loss: next-token cross-entropy, the mean over the target tokens of the global batch.
        next_token_accuracy: share of this process's target tokens predicted exactly (argmax; no gradient).
        num_tokens: this process's number of target tokens.
    """

    loss: torch.Tensor | None = None
    next_token_accuracy: torch.Tensor | None = None
    num_tokens: torch.Tensor | None = None


def build_decoder(config: CLMConfig) -> PreTrainedModel:
    """A randomly initialised ``AutoModelForCausalLM`` of ``config.decoder_config`` with SDPA attention."""
    return AutoModelForCausalLM.from_config(config.decoder_config, attn_implementation="sdpa")


class CLMForPreTraining(HfsslPreTrainedModel):
    """Causal language modelling: next-token prediction over packed rows; see the module docstring."""

    config_class = CLMConfig
    main_input_name = "input_ids"
    _supports_sdpa = True

    def __init__(self, config: CLMConfig) -> None:
        super().__init__(config)
        self.language_model = build_decoder(config)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        # Every weight here is the decoder's: its own initialisation (GPT-2: normal(0, 0.02), scaled projections).
        self.language_model._init_weights(module)

    # ---- the transferable part -----------------------------------------------------------------

    def get_backbone(self) -> Any:
        """The decoder's base model (``GPT2Model``): token states without the output layer."""
        return self.language_model.base_model

    def export_backbone(self) -> PreTrainedModel:
        """The released model: the ``AutoModelForCausalLM`` (its output layer tied to the embeddings as trained)."""
        return self.language_model

    def get_causal_lm(self) -> PreTrainedModel:
        """The ``causal-lm`` capability: the released causal language model (its tokenizer: :meth:`get_tokenizer`)."""
        return self.language_model

    def get_text_encoder(self) -> PreTrainedModel:
        """The ``text-features`` capability: the decoder's base model, whose ``last_hidden_state`` protocols pool."""
        return self.language_model.base_model

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.language_model.get_input_embeddings()

    def get_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       pooling: str = "mean") -> torch.Tensor:
        """``(B, hidden)`` text features: the mean of the last token states over the attention mask."""
        hidden = self.get_backbone()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool_text_features(hidden, attention_mask, pooling)

    def load_pretrained_weights(self) -> list[str]:
        """Start from the ``AutoModelForCausalLM`` checkpoint ``model.backbone_name_or_path`` (called by the
        engine when a run starts; nothing to do without one). Returns what was loaded."""
        from hfssl.backbones import resolve_pretrained_path

        name_or_path = self.config.backbone_name_or_path
        if not name_or_path:
            return []
        try:
            source = AutoModelForCausalLM.from_pretrained(resolve_pretrained_path(name_or_path), attn_implementation="sdpa")
        except OSError as error:
            raise OSError(f"could not load model.backbone_name_or_path {name_or_path!r}: {error}. Pass a local folder "
                          "with config.json and the weights, or connect to the Hugging Face Hub") from error
        if source.config.vocab_size != self.config.vocab_size:
            raise ValueError(f"{name_or_path!r} has {source.config.vocab_size} embeddings, the model config "
                             f"{self.config.vocab_size}: the tokenizer and the model do not match")
        self.language_model.load_state_dict(source.state_dict())
        return [name_or_path]

    # ---- the loss ------------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                dropout_seed: int | None = None) -> CLMOutput:
        """Next-token loss of packed rows.

        Args:
            input_ids: ``(B, L)`` token ids, each row's real tokens first.
            attention_mask: ``(B, L)`` 1 for real tokens, 0 for the padding at the end of a row.
            dropout_seed: seeds the dropout masks of this forward (the input builder draws it from the
                step's generator, so a resumed run repeats them); the global generator is left as it was.
        """
        if dropout_seed is not None and self.training:
            devices = [input_ids.device] if input_ids.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices, device_type=input_ids.device.type):
                torch.manual_seed(dropout_seed)
                return self.forward(input_ids, attention_mask)
        if input_ids.ndim != 2 or input_ids.shape[1] < 2:
            raise ValueError(f"{type(self).__name__} expects input_ids of shape (batch, length >= 2), got "
                             f"{tuple(input_ids.shape)}")
        positions = self.config.decoder_config
        limit = getattr(positions, "max_position_embeddings", None) or getattr(positions, "n_positions", None)
        if limit is not None and input_ids.shape[1] > limit:
            raise ValueError(f"rows of {input_ids.shape[1]} tokens exceed the decoder's {limit} positions; lower "
                             "model.max_seq_length")
        # Right padding under causal attention: no real token attends to a pad, so no mask is passed.
        hidden = self.get_backbone()(input_ids=input_ids).last_hidden_state  # (B, L, H)
        targets = input_ids[:, 1:]  # (B, L - 1)
        if attention_mask is not None:
            chosen = attention_mask[:, 1:].bool()
            states, targets = hidden[:, :-1][chosen], targets[chosen]  # (N, H), (N,)
        else:
            states, targets = hidden[:, :-1].reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        output_layer = self.language_model.get_output_embeddings()
        token_losses, correct = linear_cross_entropy(states, output_layer.weight, output_layer.bias, targets,
                                                     self.config.loss_chunk_size)
        count = torch.tensor(float(targets.numel()), device=token_losses.device, dtype=token_losses.dtype)
        loss = token_losses / all_reduce_mean(count).clamp_min(1.0)  # the same divisor on every process
        accuracy = correct.to(token_losses.dtype) / count.clamp_min(1.0)
        return CLMOutput(loss=loss, next_token_accuracy=accuracy, num_tokens=count)
