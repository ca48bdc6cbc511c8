"""The causal LM's transferable part: ``DIR/encoder`` is a plain ``AutoModelForCausalLM`` (``GPT2LMHeadModel``)
with its tokenizer.

In a fresh process without hfssl, ``pipeline("text-generation", model=DIR/encoder)`` continues a prompt and
``AutoModel.from_pretrained(DIR/encoder)`` gives the decoder's token states.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hfssl.export import ExportContext, write_directory

logger = logging.getLogger(__name__)


def export_causal_lm(model: Any, output_dir: Path, context: ExportContext) -> Path:
    """``MethodSpec.export``: ``output_dir`` gets the causal language model, its tokenizer and generation config."""
    tokenizer = model.get_tokenizer(context.run_dir)
    if tokenizer is None:
        raise ValueError("this causal LM has no tokenizer: export it from its run directory (which holds tokenizer.json), "
                         "or save its tokenizer beside it")
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, the model {model.config.vocab_size} embeddings: "
                         "they do not belong together")
    released = model.export_backbone()
    decoder = released.config
    positions = getattr(decoder, "max_position_embeddings", None) or getattr(decoder, "n_positions", None)
    with write_directory(output_dir) as staging:
        generation = released.generation_config
        generation.eos_token_id, generation.pad_token_id = model.config.eos_token_id, model.config.pad_token_id
        generation.bos_token_id = decoder.bos_token_id
        released.save_pretrained(staging, safe_serialization=True)
        if positions:
            tokenizer.model_max_length = min(int(getattr(tokenizer, "model_max_length", 10**9)), int(positions))
        tokenizer.save_pretrained(staging)
    logger.info("exported the %s and its tokenizer to %s", type(released).__name__, output_dir)
    return Path(output_dir)
