"""word2vec's transferable part: the word vectors as a plain transformers model with the tokenizer, and
the word2vec text and binary files (the formats are :mod:`hfssl.data.word2vec_format`, re-exported here).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfssl.data.text import build_word_tokenizer
from hfssl.data.word2vec_format import load_word2vec_format, save_word2vec_format  # noqa: F401 - re-exported
from hfssl.export import ExportContext, write_directory
from hfssl.models.word2vec.configuration_word2vec import Word2VecConfig
from hfssl.models.word2vec.modeling_word2vec import Word2VecModel

logger = logging.getLogger(__name__)


def export_word2vec_format(model: Any, path: str | Path, binary: bool = False) -> Path:
    """Write a :class:`Word2VecModel`'s word vectors (trained words, most frequent first)."""
    words, vectors = model.get_word_vectors()
    return save_word2vec_format(path, words, vectors, binary=binary)


def model_from_word2vec_format(path: str | Path, binary: bool | None = None, lowercase: bool = False,
                               token_pattern: str = r"\S+", **config_kwargs: Any) -> tuple[Any, Any]:
    """Import word2vec vectors as a :class:`Word2VecModel` and its ``WordLevel`` tokenizer.

    The file order is taken as the frequency order (word2vec files are sorted by frequency), and
    ``word_counts`` get descending placeholder counts ``V, V-1, ..., 1`` as gensim does on import.
    The output embeddings are not in these files and start at zero. ``token_pattern`` and
    ``lowercase`` set how the returned tokenizer splits text.
    """
    words, vectors = load_word2vec_format(path, binary)
    tokenizer = build_word_tokenizer(words, lowercase, token_pattern)
    vocab = tokenizer.get_vocab()
    size = len(vocab)
    counts = np.zeros(size, dtype=np.int64)
    weight = torch.zeros(size, vectors.shape[1])
    for rank, (word, vector) in enumerate(zip(words, vectors)):
        index = vocab[word]
        counts[index] = len(words) - rank
        weight[index] = torch.from_numpy(vector)
    config = Word2VecConfig(vocab_size=size, vector_size=vectors.shape[1], word_counts=counts.tolist(), **config_kwargs)
    model = Word2VecModel(config)
    with torch.no_grad():
        model.input_embeddings.weight.copy_(weight)
    model.set_vocabulary(tokenizer)
    return model, tokenizer


def export_encoder(model: Any, tokenizer: Any, directory: str | Path, max_length: int = 2048) -> Path:
    """Write the word vectors as a plain transformers model that loads without hfssl.

    The carrier is a zero-layer ``OPTModel`` without layer norm and with zero position embeddings:
    its ``get_input_embeddings()`` holds the vectors and its ``last_hidden_state`` is exactly the
    vector of each input token, so ``pipeline("feature-extraction", model=directory)`` returns word
    vectors. The tokenizer and ``word_counts.json`` are saved beside it.

    Args:
        model: a trained :class:`Word2VecModel`.
        tokenizer: its tokenizer (rows = token ids).
        directory: output folder (``run_dir/encoder``).
        max_length: longest text (in words) the position table accepts.
    """
    from transformers import OPTConfig, OPTModel

    directory = Path(directory)
    vectors = model.input_embeddings.weight.detach().float().cpu()
    vocab_size, dim = vectors.shape
    config = OPTConfig(
        vocab_size=vocab_size, hidden_size=dim, word_embed_proj_dim=dim, num_hidden_layers=0, ffn_dim=dim,
        num_attention_heads=1, max_position_embeddings=max_length, do_layer_norm_before=False,
        pad_token_id=0, bos_token_id=0, eos_token_id=0, enable_bias=False, dropout=0.0,
    )
    encoder = OPTModel(config).eval()
    with torch.no_grad():
        encoder.get_input_embeddings().weight.copy_(vectors)
        encoder.decoder.embed_positions.weight.zero_()
    encoder.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    counts = model.word_counts.detach().cpu().tolist()
    vocab = tokenizer.get_vocab()
    words = [""] * vocab_size
    for word, index in vocab.items():
        if index < vocab_size:
            words[index] = word
    (directory / "word_counts.json").write_text(
        json.dumps({"counts": dict(zip(words, counts))}, ensure_ascii=False) + "\n", encoding="utf-8")
    return directory


def run_tokenizer(model: Any, context: ExportContext) -> Any:
    """The tokenizer of a run: saved in ``context.run_dir`` by training, else rebuilt from the model's
    vocabulary with the recipe's word splitting."""
    from transformers import AutoTokenizer

    if context.run_dir is not None and (Path(context.run_dir) / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(context.run_dir)
    words = model.vocabulary
    if not words or len(words) != model.config.vocab_size:
        raise ValueError("this word2vec model has no tokenizer: load it from its run directory (which holds "
                         "tokenizer.json) or call model.set_vocabulary(tokenizer) before exporting")
    data = context.recipe.data if context.recipe is not None else None
    lowercase = getattr(data, "lowercase", True)
    pattern = getattr(data, "token_pattern", r"[\w']+")
    return build_word_tokenizer(words[1:], lowercase, pattern)


def export_word_vectors(model: Any, output_dir: Path, context: ExportContext) -> Path:
    """``MethodSpec.export`` of word2vec: ``output_dir`` gets the vectors as a plain transformers model
    with the tokenizer (:func:`export_encoder`); ``vectors.txt`` / ``vectors.bin`` in word2vec's
    formats go to ``context.files_dir`` (the run directory for ``RUN/encoder``), else into ``output_dir``.
    """
    tokenizer = run_tokenizer(model, context)
    model.set_vocabulary(tokenizer)
    with write_directory(output_dir) as staging:
        export_encoder(model, tokenizer, staging)
    files_dir = Path(context.files_dir) if context.files_dir is not None else Path(output_dir)
    export_word2vec_format(model, files_dir / "vectors.txt", binary=False)
    export_word2vec_format(model, files_dir / "vectors.bin", binary=True)
    logger.info("exported word vectors to %s (gensim files in %s)", output_dir, files_dir)
    return Path(output_dir)

