"""SimCSE's transferable part: ``DIR/encoder`` is a sentence-transformers model folder that is also a plain
transformers encoder.

The folder holds the encoder (``config.json``, ``model.safetensors``) and its tokenizer at its root, so
``AutoModel.from_pretrained(DIR/encoder)`` loads it, plus sentence-transformers' description of the pipeline
(the format every sentence-transformers version reads, written here without it):

* ``modules.json``: ``Transformer`` (the root folder) then ``Pooling`` (``1_Pooling/``);
* ``1_Pooling/config.json``: mean over the real tokens or the first token, as :attr:`SimCSEConfig.pooling`;
* ``sentence_bert_config.json``: the training sequence length, no lower-casing beyond the tokenizer's own;
* ``config_sentence_transformers.json``: cosine similarity.

No normalisation module: SimCSE's embeddings are compared by cosine, as sentence-transformers' ``similarity``
does. In a fresh process ``SentenceTransformer(DIR/encoder).encode(sentences)`` equals hfssl's embeddings
(``tests/models/simcse``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hfssl.export import ExportContext, write_directory

logger = logging.getLogger(__name__)


def sentence_transformers_files(hidden_size: int, pooling: str, max_seq_length: int) -> dict[str, Any]:
    """The sentence-transformers files (relative path -> JSON content) of a Transformer + Pooling model."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    pooling_config = {"word_embedding_dimension": hidden_size, "pooling_mode_cls_token": pooling == "cls",
                      "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
                      "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True}
    return {"modules.json": modules, "1_Pooling/config.json": pooling_config,
            "sentence_bert_config.json": {"max_seq_length": max_seq_length, "do_lower_case": False},
            "config_sentence_transformers.json": {"similarity_fn_name": "cosine", "prompts": {},
                                                  "default_prompt_name": None, "model_type": "SentenceTransformer"}}


def export_sentence_encoder(model: Any, output_dir: Path, context: ExportContext) -> Path:
    """``MethodSpec.export`` of SimCSE: the encoder, its tokenizer and the sentence-transformers files."""
    tokenizer = model.get_tokenizer(context.run_dir)
    if tokenizer is None:
        raise ValueError("this SimCSE model has no tokenizer: export it from its run directory (which holds "
                         "tokenizer.json), or save its tokenizer beside it")
    config = model.config
    with write_directory(output_dir) as staging:
        model.get_backbone().save_pretrained(staging, safe_serialization=True)
        tokenizer.model_max_length = min(int(getattr(tokenizer, "model_max_length", 10**9)),
                                         int(getattr(config.encoder_config, "max_position_embeddings", 10**9)))
        tokenizer.save_pretrained(staging)
        for name, content in sentence_transformers_files(config.hidden_size, config.pooling,
                                                         config.max_seq_length).items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content, indent=2) + "\n")
    logger.info("exported the sentence encoder (transformers + sentence-transformers) to %s", output_dir)
    return Path(output_dir)
