"""Configuration of GPT-style causal language modelling (next-token prediction; Radford et al. 2019).

The model is a transformers decoder: :class:`CLMConfig` holds its config (``decoder_config``: a preset
name from :data:`GPT2_PRESETS`, a dict of ``GPT2Config`` fields, a dict with another ``model_type``
that ``AutoModelForCausalLM`` builds, or a config), or takes it from a starting checkpoint
(``backbone_name_or_path``: a local folder or Hub id of any ``AutoModelForCausalLM`` model: continued
pre-training), plus what defines the task: the row length and the special tokens. Rows are packed
documents, each ended by the end-of-text token (:func:`hfssl.data.token_rows.pack_documents`).
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

from hfssl.configuration_utils import set_vocab_size

#: GPT-2-style sizes from tiny to small (``gpt2-small`` is GPT-2's 124M model, Radford et al. 2019, table 2).
#: ``vocab_size`` comes from the tokenizer; ``n_positions`` is at least ``max_seq_length``.
GPT2_PRESETS: dict[str, dict[str, int]] = {
    "gpt2-tiny": {"n_layer": 2, "n_embd": 128, "n_head": 2},
    "gpt2-mini": {"n_layer": 4, "n_embd": 256, "n_head": 4},
    "gpt2-medium-mini": {"n_layer": 6, "n_embd": 384, "n_head": 6},
    "gpt2-small": {"n_layer": 12, "n_embd": 768, "n_head": 12},
}
#: Byte-level BPE vocabulary trained on the corpus when the recipe gives no ``model.vocab_size``.
DEFAULT_VOCAB_SIZE = 8192
#: Tokens per chunk of the fused output layer + cross-entropy (``model.loss_chunk_size``).
DEFAULT_LOSS_CHUNK_SIZE = 2048
_DROPPED = ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype")


def _positions(config: PretrainedConfig) -> int:
    return int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 0) or 10**9)


def resolve_decoder_config(value: PretrainedConfig | dict[str, Any] | str | None, backbone_name_or_path: str | None,
                           max_seq_length: int) -> PretrainedConfig:
    """A decoder config from a preset name, a dict, a config, or the starting checkpoint's config."""
    if value is None and backbone_name_or_path:
        from hfssl.backbones import resolve_pretrained_path

        try:
            value = AutoConfig.from_pretrained(resolve_pretrained_path(backbone_name_or_path))
        except OSError as error:
            raise OSError(f"could not read the config of model.backbone_name_or_path {backbone_name_or_path!r}: {error}. "
                          "Pass a local folder holding config.json, or connect to the Hugging Face Hub") from error
    if value is None:
        value = "gpt2-mini"
    if isinstance(value, str):
        if value not in GPT2_PRESETS:
            raise ValueError(f"unknown model.decoder_config preset {value!r}; use one of {', '.join(GPT2_PRESETS)} or a "
                             "dict of GPT2Config fields")
        value = {"model_type": "gpt2", **GPT2_PRESETS[value], "n_positions": 1024}
    if isinstance(value, PretrainedConfig):
        value = value.to_dict()
    if not isinstance(value, dict):
        raise ValueError(f"model.decoder_config must be a preset name or a dict of config fields, got {value!r}")
    values = {key: item for key, item in value.items() if key not in _DROPPED}
    model_type = values.pop("model_type", "gpt2")
    if model_type == "gpt2":
        values.setdefault("n_positions", max(1024, max_seq_length))
    try:
        config = AutoConfig.for_model(model_type, **values)
    except ValueError as error:
        raise ValueError(f"model.decoder_config: {error}") from error
    from transformers import AutoModelForCausalLM

    if type(config) not in AutoModelForCausalLM._model_mapping:
        raise ValueError(f"model.decoder_config is a {model_type!r} config, which transformers' AutoModelForCausalLM "
                         "cannot build; causal language modelling trains decoders (gpt2, llama, ...)")
    return config


class CLMConfig(PretrainedConfig):
    """Configuration of :class:`~hfssl.models.clm.modeling_clm.CLMForPreTraining`.

    Args:
        decoder_config: the decoder: a preset (``gpt2-tiny`` ... ``gpt2-small``), a dict of ``GPT2Config``
            fields (or of another decoder's, with its ``model_type``) or a config; taken from
            ``backbone_name_or_path`` when unset.
        backbone_name_or_path: continue pre-training from this ``AutoModelForCausalLM`` checkpoint (local
            folder or Hub id); its tokenizer is used.
        vocab_size: size of the byte-level BPE vocabulary trained on the corpus (default
            :data:`DEFAULT_VOCAB_SIZE`; the trained tokenizer's real size is written back); with a checkpoint,
            its vocabulary (leave it unset).
        max_seq_length: tokens per training row; at most the decoder's positions.
        eos_token_id / pad_token_id: the end-of-text token that ends every document, and padding (from the
            tokenizer).
        loss_chunk_size: the output layer is fused with the cross-entropy over chunks of this many tokens
            (:class:`hfssl.losses.causal_lm.LinearCrossEntropy`: gradients formed in the forward pass, the
            ``(tokens, vocabulary)`` logits never whole; default :data:`DEFAULT_LOSS_CHUNK_SIZE`, the fastest step
            measured in BENCHMARKS.md and 2,048 x V floats of memory); ``None`` forms the logits whole and lets
            autograd differentiate ``F.cross_entropy``. The loss and gradients do not depend on it.
    """

    model_type = "hfssl_clm"

    def __init__(
        self,
        decoder_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        vocab_size: int | None = None,
        max_seq_length: int = 128,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        loss_chunk_size: int | None = DEFAULT_LOSS_CHUNK_SIZE,
        **kwargs: Any,
    ) -> None:
        if not isinstance(max_seq_length, int) or isinstance(max_seq_length, bool) or max_seq_length < 4:
            raise ValueError(f"model.max_seq_length must be an integer >= 4, got {max_seq_length!r}")
        if loss_chunk_size is not None and (not isinstance(loss_chunk_size, int) or loss_chunk_size < 1):
            raise ValueError(f"model.loss_chunk_size must be a positive integer or null, got {loss_chunk_size!r}")
        super().__init__(**kwargs)
        self.backbone_name_or_path = backbone_name_or_path
        decoder = resolve_decoder_config(decoder_config, backbone_name_or_path, max_seq_length)
        from_checkpoint = backbone_name_or_path is not None and decoder_config is None
        set_vocab_size(decoder, vocab_size, decoder_config, backbone_name_or_path, DEFAULT_VOCAB_SIZE)
        if max_seq_length > _positions(decoder):
            raise ValueError(f"model.max_seq_length {max_seq_length} is above the decoder's {_positions(decoder)} "
                             "positions; lower model.max_seq_length")
        # A checkpoint's own end-of-text token, else id 0 (<|endoftext|> of the BPE trained here).
        eos = eos_token_id if eos_token_id is not None else (
            decoder.eos_token_id if from_checkpoint and isinstance(decoder.eos_token_id, int) else 0)
        pad = pad_token_id if pad_token_id is not None else eos
        for name, token in (("eos_token_id", eos), ("pad_token_id", pad)):
            if not 0 <= token < decoder.vocab_size:
                raise ValueError(f"{name} {token} is outside the vocabulary (size {decoder.vocab_size}): the tokenizer "
                                 "and the model do not match")
        decoder.eos_token_id, decoder.pad_token_id = eos, pad
        if getattr(decoder, "bos_token_id", None) is None or not from_checkpoint:
            decoder.bos_token_id = eos  # GPT-2's convention: <|endoftext|> also starts a text
        self.decoder_config = decoder
        self.vocab_size = decoder.vocab_size
        self.hidden_size = decoder.hidden_size
        self.max_seq_length = max_seq_length
        self.eos_token_id = eos
        self.pad_token_id = pad
        self.loss_chunk_size = loss_chunk_size

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        if isinstance(output.get("decoder_config"), PretrainedConfig):
            output["decoder_config"] = output["decoder_config"].to_dict()
        return output
