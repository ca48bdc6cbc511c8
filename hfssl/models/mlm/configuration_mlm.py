"""Configuration of BERT-style masked language modelling (Devlin et al. 2019).

The model is transformers' own BERT: :class:`MLMConfig` holds a ``BertConfig`` (``bert_config``: a
preset name from :data:`BERT_PRESETS`, a dict or a config), or takes it from a starting checkpoint
(``backbone_name_or_path``: a local folder, a Hub id or ``builtin:all-MiniLM-L6-v2``), plus what
defines the pretext task and its loss: the sequence length, the masking probabilities (15 %, then
80 % ``[MASK]`` / 10 % random token / 10 % kept, BERT sec. 3.1 and appendix C.2), whole-word
masking, next-sentence prediction, and how training rows are formed (``packing``).

``packing`` is a data choice kept here because it changes what the loss sees: ``grouped``
concatenates documents, each ended by ``[SEP]``, and cuts the stream into rows of exactly
``max_seq_length`` tokens (transformers' ``run_mlm`` ``group_texts``, RoBERTa's FULL-SENTENCES);
``line_by_line`` makes one padded row per document, truncated to ``max_seq_length``.
"""

from __future__ import annotations

from typing import Any

from transformers import BertConfig, PretrainedConfig

from hfssl.configuration_utils import check_range, set_vocab_size

#: BERT sizes (Turc et al. 2019, "Well-Read Students Learn Better": tiny, mini, small, medium; and
#: BERT-base). ``vocab_size`` comes from the tokenizer.
BERT_PRESETS: dict[str, dict[str, int]] = {
    "bert-tiny": {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2, "intermediate_size": 512},
    "bert-mini": {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024},
    "bert-small": {"num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8, "intermediate_size": 2048},
    "bert-medium": {"num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8, "intermediate_size": 2048},
    "bert-base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
}
PACKING_MODES = ("grouped", "line_by_line")
#: WordPiece vocabulary trained on the corpus when the recipe gives no ``model.vocab_size``.
DEFAULT_VOCAB_SIZE = 8192


def resolve_bert_config(value: PretrainedConfig | dict[str, Any] | str | None, backbone_name_or_path: str | None,
                        max_seq_length: int) -> BertConfig:
    """A ``BertConfig`` from a preset name, a dict, a config, or the starting checkpoint's config."""
    if value is None and backbone_name_or_path:
        from transformers import AutoConfig

        from hfssl.backbones import resolve_pretrained_path

        try:
            value = AutoConfig.from_pretrained(resolve_pretrained_path(backbone_name_or_path))
        except OSError as error:
            raise OSError(f"could not read the config of model.backbone_name_or_path {backbone_name_or_path!r}: {error}. "
                          "Pass a local folder holding config.json, or connect to the Hugging Face Hub") from error
        if value.model_type != "bert":
            raise ValueError(f"model.backbone_name_or_path {backbone_name_or_path!r} is a {value.model_type!r} model; "
                             "masked language modelling here trains BERT models (model_type 'bert')")
        value = value.to_dict()
    if value is None:
        value = "bert-small"
    if isinstance(value, str):
        if value not in BERT_PRESETS:
            raise ValueError(f"unknown model.bert_config preset {value!r}; use one of {', '.join(BERT_PRESETS)} or a "
                             "dict of BertConfig fields")
        value = dict(BERT_PRESETS[value])
    if isinstance(value, PretrainedConfig):
        value = value.to_dict()
    if not isinstance(value, dict):
        raise ValueError(f"model.bert_config must be a preset name or a dict of BertConfig fields, got {value!r}")
    values = {key: item for key, item in value.items()
              if key not in ("model_type", "architectures", "transformers_version", "_name_or_path")}
    values.setdefault("max_position_embeddings", max(512, max_seq_length))
    config = BertConfig(**values)
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(f"model.bert_config: hidden_size {config.hidden_size} is not a multiple of "
                         f"num_attention_heads {config.num_attention_heads}")
    return config


class MLMConfig(PretrainedConfig):
    """Configuration of :class:`~hfssl.models.mlm.modeling_mlm.MLMForPreTraining`.

    Args:
        bert_config: the BERT architecture: a preset (``bert-tiny`` ... ``bert-base``), a dict of
            ``BertConfig`` fields or a config; taken from ``backbone_name_or_path`` when unset.
        backbone_name_or_path: continue pre-training from this checkpoint (local folder, Hub id or
            ``builtin:all-MiniLM-L6-v2``); its tokenizer is used and a missing MLM head is initialised.
        vocab_size: the size of the WordPiece vocabulary trained on the corpus (default
            :data:`DEFAULT_VOCAB_SIZE`; the trained tokenizer's real size is written back); with a
            checkpoint, its vocabulary (leave it unset).
        max_seq_length: tokens per training row, special tokens included; at most the model's
            ``max_position_embeddings``.
        mask_probability: share of (non-special) tokens, or of words with ``whole_word_masking``, chosen.
        mask_replace_probability / random_replace_probability: of the chosen tokens, the share
            replaced by ``[MASK]`` and by a random token; the rest are kept (BERT: 0.8 / 0.1).
        whole_word_masking: choose whole words (every WordPiece of a word) instead of single pieces.
        next_sentence_prediction: train BERT's next-sentence task too (``BertForPreTraining``).
        packing: ``grouped`` or ``line_by_line`` (see the module docstring; NSP builds sentence pairs).
        special_token_ids / mask_token_id / pad_token_id / cls_token_id / sep_token_id: from the tokenizer.
        initialised_head_parameters: parameters the starting checkpoint did not have (a new MLM head).
    """

    model_type = "hfssl_mlm"

    def __init__(
        self,
        bert_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        vocab_size: int | None = None,
        max_seq_length: int = 128,
        mask_probability: float = 0.15,
        mask_replace_probability: float = 0.8,
        random_replace_probability: float = 0.1,
        whole_word_masking: bool = False,
        next_sentence_prediction: bool = False,
        packing: str = "grouped",
        special_token_ids: list[int] | None = None,
        mask_token_id: int | None = None,
        cls_token_id: int | None = None,
        sep_token_id: int | None = None,
        initialised_head_parameters: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        check_range("mask_probability", mask_probability, 0.0, 1.0, low_open=True, high_open=True)
        check_range("mask_replace_probability", mask_replace_probability, 0.0, 1.0)
        check_range("random_replace_probability", random_replace_probability, 0.0, 1.0)
        if mask_replace_probability + random_replace_probability > 1.0 + 1e-9:
            raise ValueError(f"model.mask_replace_probability + model.random_replace_probability must be <= 1 (the rest "
                             f"is kept), got {mask_replace_probability} + {random_replace_probability}")
        if packing not in PACKING_MODES:
            raise ValueError(f"model.packing must be one of {PACKING_MODES}, got {packing!r}")
        if not isinstance(max_seq_length, int) or max_seq_length < 8:
            raise ValueError(f"model.max_seq_length must be an integer >= 8, got {max_seq_length!r}")
        super().__init__(**kwargs)
        self.backbone_name_or_path = backbone_name_or_path
        bert = resolve_bert_config(bert_config, backbone_name_or_path, max_seq_length)
        set_vocab_size(bert, vocab_size, bert_config, backbone_name_or_path, DEFAULT_VOCAB_SIZE)
        if max_seq_length > bert.max_position_embeddings:
            raise ValueError(f"model.max_seq_length {max_seq_length} is above the model's max_position_embeddings "
                             f"({bert.max_position_embeddings}); lower model.max_seq_length")
        self.bert_config = bert
        self.vocab_size = bert.vocab_size
        self.hidden_size = bert.hidden_size
        self.max_seq_length = max_seq_length
        self.mask_probability = mask_probability
        self.mask_replace_probability = mask_replace_probability
        self.random_replace_probability = random_replace_probability
        self.whole_word_masking = whole_word_masking
        self.next_sentence_prediction = next_sentence_prediction
        self.packing = packing
        self.special_token_ids = list(special_token_ids) if special_token_ids is not None else [0, 1, 2, 3, 4]
        self.mask_token_id = 4 if mask_token_id is None else mask_token_id
        self.cls_token_id = 2 if cls_token_id is None else cls_token_id
        self.sep_token_id = 3 if sep_token_id is None else sep_token_id
        self.initialised_head_parameters = list(initialised_head_parameters or [])
        for name in ("mask_token_id", "cls_token_id", "sep_token_id"):
            value = getattr(self, name)
            if not 0 <= value < self.vocab_size:
                raise ValueError(f"{name} {value} is outside the vocabulary (size {self.vocab_size}): the tokenizer and "
                                 "the model do not match")

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        if isinstance(output.get("bert_config"), PretrainedConfig):
            output["bert_config"] = output["bert_config"].to_dict()
        return output
