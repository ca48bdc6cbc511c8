"""SimCSE (Gao, Yao, Chen 2021): a sentence encoder trained with in-batch negatives.

:class:`SimCSEForPreTraining` keeps a plain transformers encoder (``AutoModel``, no pooler: SimCSE pools the
token states) at ``self.backbone``; the sentence embedding is the mean of the token states over the attention
mask or the first token's state (``config.pooling``), with no training-only MLP on top, as
sentence-transformers trains it, so the released encoder is exactly what was trained (the paper's
unsupervised MLP is dropped at test time anyway, sec. 3 / appendix B).

* Unsupervised (sec. 3): the batch's sentences go through the encoder twice in one pass (rows ``1..B`` and
  ``B+1..2B`` are the same sentences), so each row meets two independent dropout masks; the pairs are the
  positives and every other sentence of the global batch a negative (:class:`hfssl.losses.SimCSELoss`).
* Supervised (sec. 4): ``pair_input_ids`` are the positives, ``negative_input_ids`` the optional hard negatives.

Dropout draws from torch's global generator; ``dropout_seed`` (drawn by the input builder from the step's
generator) seeds it for the forward, so a resumed run repeats the masks. With
``config.gradient_cache_chunk_size`` the encoder runs through :func:`hfssl.losses.gradient_cache.cached_embeddings`
(chunks without activations, the loss on every embedding, the chunks again in the engine's backward).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from hfssl.backbones import pool_text_features
from hfssl.losses import SimCSELoss
from hfssl.losses.gradient_cache import cached_embeddings
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.simcse.configuration_simcse import SimCSEConfig, encoder_source

logger = logging.getLogger(__name__)


@dataclass
class SimCSEOutput(ModelOutput):
    """Outputs of :class:`SimCSEForPreTraining`.

    Attributes:
        loss: the contrastive loss (:class:`hfssl.losses.SimCSELoss`).
        retrieval_accuracy: share of this process's anchors whose best candidate is their positive (no gradient).
        embeddings: ``(B, hidden)`` anchor sentence embeddings (first dropout pass), detached.
    """

    loss: torch.Tensor | None = None
    retrieval_accuracy: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None


def build_encoder(config: SimCSEConfig) -> PreTrainedModel:
    """The encoder at random, with SDPA attention where the architecture has it, and without a pooler."""
    for options in ({"attn_implementation": "sdpa", "add_pooling_layer": False}, {"add_pooling_layer": False}, {}):
        try:
            return AutoModel.from_config(config.encoder_config, **options)
        except (TypeError, ValueError):  # an architecture without SDPA, or without a pooler option
            continue
    raise ValueError(f"transformers cannot build an encoder from model.encoder_config {config.encoder_config.model_type!r}")


class SimCSEForPreTraining(HfsslPreTrainedModel):
    """SimCSE around a transformers encoder; see the module docstring."""

    config_class = SimCSEConfig
    main_input_name = "input_ids"
    _supports_sdpa = True

    def __init__(self, config: SimCSEConfig) -> None:
        super().__init__(config)
        self.backbone = build_encoder(config)
        self.contrastive_loss = SimCSELoss(config.temperature)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        # Every weight is the encoder's: its own initialisation applies.
        self.backbone._init_weights(module)

    # ---- the transferable part -----------------------------------------------------------------

    def get_backbone(self) -> PreTrainedModel:
        return self.backbone

    def get_text_encoder(self) -> PreTrainedModel:
        """The ``text-features`` capability: the encoder (its token states are pooled by the protocols)."""
        return self.backbone

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.backbone.get_input_embeddings()

    def get_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       pooling: str | None = None) -> torch.Tensor:
        """``(B, hidden)`` sentence embeddings (``config.pooling`` unless ``pooling`` is given)."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool_text_features(hidden, attention_mask, pooling or self.config.pooling)

    def load_pretrained_weights(self) -> list[str]:
        """Start from ``model.backbone_name_or_path`` (called by the engine when a run starts): its encoder,
        less a pooler SimCSE does not use (an MLM run's ``BertForMaskedLM`` gives its ``BertModel``)."""
        name_or_path = self.config.backbone_name_or_path
        if not name_or_path:
            return []
        source = encoder_source(name_or_path)
        try:
            pretrained = AutoModel.from_pretrained(source)
        except OSError as error:
            raise OSError(f"could not load model.backbone_name_or_path {name_or_path!r}: {error}. Pass a local folder "
                          "with config.json and the weights, or connect to the Hugging Face Hub") from error
        state = {key: value for key, value in pretrained.state_dict().items() if not key.startswith("pooler.")}
        self.backbone.load_state_dict(state, strict=True)
        return [name_or_path]

    # ---- the loss ------------------------------------------------------------------------------

    def _encode(self, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        return pool_text_features(self.backbone(**rows).last_hidden_state, rows["attention_mask"], self.config.pooling)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, text_keys: torch.Tensor | None = None,
                pair_input_ids: torch.Tensor | None = None, pair_attention_mask: torch.Tensor | None = None,
                pair_keys: torch.Tensor | None = None, negative_input_ids: torch.Tensor | None = None,
                negative_attention_mask: torch.Tensor | None = None, negative_keys: torch.Tensor | None = None,
                dropout_seed: int | None = None) -> SimCSEOutput:
        """The SimCSE loss of one batch.

        Args:
            input_ids, attention_mask: ``(B, L)`` the sentences (the anchors).
            text_keys: ``(B,)`` int64 keys of the sentences' texts (equal texts, equal keys): duplicates are
                never each other's negatives. ``pair_keys`` / ``negative_keys`` likewise.
            pair_input_ids, pair_attention_mask: ``(B, L)`` the positives (supervised); ``None``: unsupervised.
            negative_input_ids, negative_attention_mask: ``(B, L)`` hard negatives (supervised, optional).
            dropout_seed: seeds the dropout masks of this forward; the global generator is left as it was.
        """
        if dropout_seed is not None and self.training:
            devices = [input_ids.device] if input_ids.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices, device_type=input_ids.device.type):
                torch.manual_seed(dropout_seed)
                return self.forward(input_ids, attention_mask, text_keys, pair_input_ids, pair_attention_mask,
                                    pair_keys, negative_input_ids, negative_attention_mask, negative_keys)
        if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(f"{type(self).__name__} expects input_ids and attention_mask of one shape (batch, length), "
                             f"got {tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
        if negative_input_ids is not None and pair_input_ids is None:
            raise ValueError("hard negatives (negative_input_ids) need positives (pair_input_ids)")
        batch = input_ids.shape[0]
        groups = [(input_ids, attention_mask)]
        if pair_input_ids is None:
            groups.append((input_ids, attention_mask))  # unsupervised: the same sentences, other dropout masks
        else:
            groups.append((pair_input_ids, pair_attention_mask))
            if negative_input_ids is not None:
                groups.append((negative_input_ids, negative_attention_mask))
        length = max(ids.shape[1] for ids, _ in groups)
        rows = {"input_ids": torch.cat([_pad(ids, length, 0) for ids, _ in groups]),
                "attention_mask": torch.cat([_pad(mask, length, 0) for _, mask in groups])}  # (G * B, L)
        embeddings = cached_embeddings(self._encode, rows, self.config.gradient_cache_chunk_size,
                                       self.backbone.parameters())
        parts = embeddings.split(batch)  # anchors, positives (, negatives): (B, hidden) each
        anchor_keys = candidate_keys = None
        if text_keys is not None:
            positive_keys = text_keys if pair_input_ids is None else pair_keys
            anchor_keys = torch.stack([text_keys, positive_keys], dim=1)  # (B, 2)
            candidate_keys = positive_keys if negative_input_ids is None else torch.stack([positive_keys, negative_keys], 1)
        loss, accuracy = self.contrastive_loss(parts[0], parts[1], parts[2] if len(parts) > 2 else None,
                                            anchor_keys, candidate_keys)
        return SimCSEOutput(loss=loss, retrieval_accuracy=accuracy, embeddings=parts[0].detach())


def _pad(tensor: torch.Tensor, length: int, value: int) -> torch.Tensor:
    """``(B, l)`` -> ``(B, length)`` padded on the right with ``value``."""
    if tensor.shape[1] == length:
        return tensor
    return torch.nn.functional.pad(tensor, (0, length - tensor.shape[1]), value=value)
