"""MLM's transferable part: ``DIR/encoder`` is a plain ``BertForMaskedLM`` with its tokenizer.

In a fresh process without hfssl, ``pipeline("fill-mask", model=DIR/encoder)`` fills ``[MASK]``
and ``AutoModel.from_pretrained(DIR/encoder)`` gives the ``BertModel`` encoder (its pooler, which
masked language modelling does not train, is newly initialised by transformers).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hfssl.export import ExportContext, write_directory

logger = logging.getLogger(__name__)


def run_tokenizer(model: Any, context: ExportContext) -> Any:
    """The run's tokenizer (``model.get_tokenizer``): saved in the run directory by training, or in the
    folder the model was loaded from."""
    tokenizer = model.get_tokenizer(context.run_dir)
    if tokenizer is None:
        raise ValueError("this MLM model has no tokenizer: export it from its run directory (which holds tokenizer.json), "
                         "or save its tokenizer beside it")
    return tokenizer


def export_masked_lm(model: Any, output_dir: Path, context: ExportContext) -> Path:
    """``MethodSpec.export`` of MLM: ``output_dir`` gets the ``BertForMaskedLM`` and the tokenizer."""
    tokenizer = run_tokenizer(model, context)
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, the model {model.config.vocab_size} embeddings: "
                         "they do not belong together")
    released = model.export_backbone()
    with write_directory(output_dir) as staging:
        released.save_pretrained(staging, safe_serialization=True)
        tokenizer.model_max_length = min(int(getattr(tokenizer, "model_max_length", 10**9)),
                                         int(model.config.bert_config.max_position_embeddings))
        tokenizer.save_pretrained(staging)
    logger.info("exported the BertForMaskedLM and its tokenizer to %s", output_dir)
    return Path(output_dir)
