"""BERT pre-training with transformers' own BERT (Devlin et al. 2019): masked language modelling,
optionally with next-sentence prediction.

:class:`MLMForPreTraining` wraps a ``BertForMaskedLM`` (or ``BertForPreTraining`` with next-sentence
prediction) at ``self.bert_model``, with SDPA attention. Its forward takes masked ``input_ids`` and
``labels`` (-100 where no prediction is made, transformers' convention) and computes the vocabulary
logits only at the masked positions (about 15 % of the tokens), instead of at every position as
``BertForMaskedLM.forward`` does: the same loss, a fraction of the output layer's work.

Distributed training: the masked-token loss is the sum of the token losses divided by the mean
number of masked tokens per process, so that the gradients averaged by DDP are those of the mean
over every masked token of the global batch (two processes = one process on the whole batch,
``tests/models/mlm``), even when the processes hold different numbers of masked tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import BertForMaskedLM, BertForPreTraining
from transformers.utils import ModelOutput

from hfssl.backbones import pool_text_features
from hfssl.distributed import all_reduce_mean
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.models.mlm.configuration_mlm import MLMConfig
from hfssl.data.token_masking import IGNORE_INDEX

logger = logging.getLogger(__name__)


@dataclass
class MLMOutput(ModelOutput):
    """Outputs of :class:`MLMForPreTraining`.

    Attributes:
        loss: ``mlm_loss`` (+ ``nsp_loss`` with next-sentence prediction).
        mlm_loss: cross-entropy over the masked tokens.
        nsp_loss: next-sentence cross-entropy, or ``None``.
        mlm_accuracy: share of masked tokens predicted exactly (no gradient).
        masked_logits: ``(N, vocab)`` logits at the ``N`` masked positions (row-major order).
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    nsp_loss: torch.Tensor | None = None
    mlm_accuracy: torch.Tensor | None = None
    masked_logits: torch.Tensor | None = None


def build_bert(config: MLMConfig) -> BertForMaskedLM | BertForPreTraining:
    """A randomly initialised ``BertForMaskedLM`` / ``BertForPreTraining`` with SDPA attention."""
    model_class = BertForPreTraining if config.next_sentence_prediction else BertForMaskedLM
    return model_class._from_config(config.bert_config, attn_implementation="sdpa")


class MLMForPreTraining(HfsslPreTrainedModel):
    """BERT masked language modelling (+ next-sentence prediction); see the module docstring."""

    config_class = MLMConfig
    main_input_name = "input_ids"
    _supports_sdpa = True

    def __init__(self, config: MLMConfig) -> None:
        super().__init__(config)
        self.bert_model = build_bert(config)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        # Every weight here is BERT's: transformers' BERT initialisation (normal(0, 0.02)) applies.
        self.bert_model._init_weights(module)

    # ---- the transferable part -----------------------------------------------------------------

    def get_backbone(self) -> Any:
        """The ``BertModel`` (encoder) inside the pre-training model."""
        return self.bert_model.bert

    def export_backbone(self) -> BertForMaskedLM:
        """The released model: a ``BertForMaskedLM`` (encoder + MLM head; NSP's pooler and classifier dropped)."""
        if isinstance(self.bert_model, BertForMaskedLM):
            return self.bert_model
        released = BertForMaskedLM(self.config.bert_config).to(self.device).eval()
        state = {key: value for key, value in self.bert_model.state_dict().items()
                 if not key.startswith(("bert.pooler.", "cls.seq_relationship."))}
        released.load_state_dict(state, strict=True)
        return released

    def get_masked_lm(self) -> BertForMaskedLM:
        """The ``masked-lm`` capability: the released ``BertForMaskedLM``."""
        return self.export_backbone()

    def get_text_encoder(self) -> Any:
        """The ``text-features`` capability: the released model's ``BertModel`` encoder."""
        return self.export_backbone().bert

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.bert_model.get_input_embeddings()

    def get_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       pooling: str = "mean") -> torch.Tensor:
        """``(B, hidden)`` sentence features: the mean of the token states over the attention mask, or the ``[CLS]`` state."""
        return pool_text_features(self.get_backbone()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                                  attention_mask, pooling)

    def load_pretrained_weights(self) -> list[str]:
        """Start from the checkpoint ``model.backbone_name_or_path`` (called by the engine when a run
        starts; nothing to do without one); records in ``config.initialised_head_parameters`` the
        parameters the checkpoint lacked (an MLM head for a plain ``BertModel`` such as
        all-MiniLM-L6-v2). Returns what was loaded."""
        from hfssl.backbones import resolve_pretrained_path

        name_or_path = self.config.backbone_name_or_path
        if not name_or_path:
            return []
        path = resolve_pretrained_path(name_or_path)
        model_class = type(self.bert_model)
        try:
            source, info = model_class.from_pretrained(path, output_loading_info=True, attn_implementation="sdpa")
        except OSError as error:
            raise OSError(f"could not load model.backbone_name_or_path {name_or_path!r}: {error}. Pass a local folder "
                          "with config.json and the weights, or connect to the Hugging Face Hub") from error
        if source.config.vocab_size != self.config.vocab_size:
            raise ValueError(f"{name_or_path!r} has {source.config.vocab_size} embeddings, the model config "
                             f"{self.config.vocab_size}: the tokenizer and the model do not match")
        self.bert_model.load_state_dict(source.state_dict())
        missing = sorted(info.get("missing_keys", []))
        self.config.initialised_head_parameters = missing
        if missing:
            logger.warning("%s has no %s: initialised at random", name_or_path, ", ".join(missing))
        return [name_or_path]

    # ---- the loss ------------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None, dropout_seed: int | None = None) -> MLMOutput:
        """Masked-token (and next-sentence) losses.

        Args:
            input_ids: ``(B, L)`` masked token ids.
            labels: ``(B, L)`` original ids at the chosen positions, ``-100`` elsewhere.
            attention_mask: ``(B, L)`` 1 for real tokens, 0 for padding.
            token_type_ids: ``(B, L)`` segment ids (next-sentence prediction).
            next_sentence_label: ``(B,)`` 0 when segment B follows A, 1 when it is random.
            dropout_seed: seeds the dropout masks of this forward (the input builder draws it from the
                step's generator, so a resumed run repeats them); the global generator is left as it was.
        """
        if dropout_seed is not None and self.training:
            devices = [input_ids.device] if input_ids.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices, device_type=input_ids.device.type):
                torch.manual_seed(dropout_seed)
                return self.forward(input_ids, labels, attention_mask, token_type_ids, next_sentence_label)
        if input_ids.ndim != 2:
            raise ValueError(f"{type(self).__name__} expects input_ids of shape (batch, length), got {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.config.bert_config.max_position_embeddings:
            raise ValueError(f"sequences of {input_ids.shape[1]} tokens exceed the model's "
                             f"{self.config.bert_config.max_position_embeddings} positions; lower model.max_seq_length")
        encoder = self.bert_model.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        hidden = encoder.last_hidden_state  # (B, L, H)
        heads = self.bert_model.cls
        predictions = heads.predictions if hasattr(heads, "seq_relationship") else heads
        output: dict[str, torch.Tensor] = {}
        losses = []
        if labels is not None:
            chosen = labels != IGNORE_INDEX
            targets = labels[chosen]  # (N,)
            logits = predictions(hidden[chosen])  # (N, V): the output layer only where a token is predicted
            token_losses = F.cross_entropy(logits.float(), targets, reduction="sum")
            count = chosen.sum().to(token_losses.dtype)
            mean_count = all_reduce_mean(count).clamp_min(1.0)  # the same on every process
            output["mlm_loss"] = token_losses / mean_count
            with torch.no_grad():
                output["mlm_accuracy"] = (logits.argmax(-1) == targets).float().mean() if targets.numel() else count * 0
            output["masked_logits"] = logits
            losses.append(output["mlm_loss"])
        if next_sentence_label is not None:
            if not hasattr(heads, "seq_relationship"):
                raise ValueError("next_sentence_label given to a model without next-sentence prediction; set "
                                 "model.next_sentence_prediction: true")
            nsp_logits = heads.seq_relationship(encoder.pooler_output)
            rows = torch.tensor(float(next_sentence_label.numel()), device=nsp_logits.device)
            output["nsp_loss"] = F.cross_entropy(nsp_logits.float(), next_sentence_label, reduction="sum") / \
                all_reduce_mean(rows).clamp_min(1.0)
            losses.append(output["nsp_loss"])
        if not losses:
            raise ValueError("MLMForPreTraining needs labels (and next_sentence_label for NSP) to compute a loss")
        return MLMOutput(loss=sum(losses), **output)
