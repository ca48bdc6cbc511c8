"""Configuration of SimCSE, contrastive sentence embeddings (Gao, Yao, Chen 2021).

The encoder is a BERT-like transformers model (``model_type`` bert, roberta, xlm-roberta, electra, ...):
``encoder_config`` (a dict of its config fields, ``model_type`` defaulting to ``bert``) builds one at random,
or ``backbone_name_or_path`` names where to start: a local folder, a Hub id, ``builtin:all-MiniLM-L6-v2``, or
an hfssl run that exports a text encoder (an MLM run: its ``encoder/`` folder is read).

What defines the loss lives here too: the temperature (0.05, the paper's sec. 3 / appendix A), the pooling
(``mean`` over the tokens, as sentence-transformers; or ``cls``), the sequence length, and the gradient
cache's chunk size (:mod:`hfssl.losses.gradient_cache`; ``None`` = plain backward).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from hfssl.configuration_utils import check_range

POOLINGS = ("mean", "cls")


def encoder_source(name_or_path: str) -> str:
    """The folder / Hub id whose encoder and tokenizer are read: ``builtin:`` names resolved, and an hfssl run
    (a full hfssl model with an ``encoder/`` export, e.g. an MLM run) replaced by its ``encoder/``."""
    from hfssl.backbones import resolve_pretrained_path
    from hfssl.registry import is_hfssl_run

    path = resolve_pretrained_path(name_or_path)
    if is_hfssl_run(path):
        if not (Path(path) / "encoder" / "config.json").is_file():
            raise ValueError(f"model.backbone_name_or_path {name_or_path!r} is an hfssl run without an exported "
                             f"encoder/; run `hfssl export {name_or_path}` first")
        return str(Path(path) / "encoder")
    return path


def resolve_encoder_config(value: PretrainedConfig | dict[str, Any] | None,
                           backbone_name_or_path: str | None) -> PretrainedConfig:
    """The encoder's transformers config: from ``encoder_config``, else from the starting checkpoint."""
    if value is None and backbone_name_or_path:
        source = encoder_source(backbone_name_or_path)
        try:
            value = AutoConfig.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise OSError(f"could not read the config of model.backbone_name_or_path {backbone_name_or_path!r}: {error}. "
                          "Pass a local folder holding config.json, or connect to the Hugging Face Hub") from error
    if value is None:
        value = {}  # BERT-base at random (the paper's smallest encoder); recipes name a start or a size
    if isinstance(value, dict):
        values = {key: item for key, item in value.items()
                  if key not in ("architectures", "transformers_version", "_name_or_path")}
        model_type = values.pop("model_type", "bert")
        value = AutoConfig.for_model(model_type, **values)
    if not isinstance(value, PretrainedConfig):
        raise ValueError(f"model.encoder_config must be a dict of config fields, got {value!r}")
    image_parts = ("num_channels", "vision_config", "image_size")
    if not getattr(value, "vocab_size", None) or getattr(value, "is_decoder", False) or any(
            hasattr(value, name) for name in image_parts):
        raise ValueError(f"SimCSE trains a bidirectional text encoder (BERT-like); {value.model_type!r} is not one")
    return value


class SimCSEConfig(PretrainedConfig):
    """Configuration of :class:`~hfssl.models.simcse.modeling_simcse.SimCSEForPreTraining`.

    Args:
        encoder_config: the encoder's architecture (a dict of config fields or a config); taken from
            ``backbone_name_or_path`` when unset; BERT-base's ``BertConfig`` when both are unset.
        backbone_name_or_path: start from this encoder (folder, Hub id, ``builtin:all-MiniLM-L6-v2``, MLM run).
        pooling: ``mean`` (over real tokens) or ``cls`` (the first token) sentence embedding.
        temperature: tau of the paper's eq. 1, > 0 (0.05).
        max_seq_length: tokens per sentence, special tokens included (the paper: 32 unsupervised).
        gradient_cache_chunk_size: rows per chunk of the gradient cache, or ``None`` for a plain backward.
    """

    model_type = "hfssl_simcse"
    # Declared as a config field: transformers v5 otherwise mistakes ``temperature`` for a text
    # generation parameter and refuses to save the config.
    temperature: float = 0.05

    def __init__(self, encoder_config: PretrainedConfig | dict[str, Any] | None = None,
                 backbone_name_or_path: str | None = None, pooling: str = "mean", temperature: float = 0.05,
                 max_seq_length: int = 32, gradient_cache_chunk_size: int | None = None, **kwargs: Any) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"model.pooling must be one of {POOLINGS}, got {pooling!r}")
        check_range("temperature", temperature, 0.0, float("inf"), low_open=True)
        if not isinstance(max_seq_length, int) or max_seq_length < 4:
            raise ValueError(f"model.max_seq_length must be an integer >= 4, got {max_seq_length!r}")
        if gradient_cache_chunk_size is not None and (not isinstance(gradient_cache_chunk_size, int)
                                                      or gradient_cache_chunk_size < 1):
            raise ValueError("model.gradient_cache_chunk_size must be an integer >= 1 (rows per chunk) or null, got "
                             f"{gradient_cache_chunk_size!r}")
        super().__init__(**kwargs)
        encoder = resolve_encoder_config(encoder_config, backbone_name_or_path)
        limit = getattr(encoder, "max_position_embeddings", None)
        if limit is not None and max_seq_length > limit:
            raise ValueError(f"model.max_seq_length {max_seq_length} is above the encoder's max_position_embeddings "
                             f"({limit}); lower model.max_seq_length")
        self.encoder_config = encoder
        self.backbone_name_or_path = backbone_name_or_path
        self.hidden_size = encoder.hidden_size
        self.vocab_size = encoder.vocab_size
        self.pooling = pooling
        self.temperature = float(temperature)
        self.max_seq_length = max_seq_length
        self.gradient_cache_chunk_size = gradient_cache_chunk_size

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        if isinstance(output.get("encoder_config"), PretrainedConfig):
            output["encoder_config"] = output["encoder_config"].to_dict()
        return output
