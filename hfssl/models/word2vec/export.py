"""word2vec's transferable part: the word vectors as a plain transformers model with the tokenizer, and
the word2vec text and binary formats (word2vec.c's ``-binary 0/1``), written and read without gensim.

Both start with a header line ``"<num words> <vector size>\\n"``. Text: one line per word,
``word v1 ... vd``. Binary: per word, ``word`` and a space, then ``d`` little-endian float32,
then ``\\n``. gensim's ``KeyedVectors.load_word2vec_format(path, binary=...)`` reads both, and
:func:`load_word2vec_format` reads gensim's ``save_word2vec_format`` output.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfssl.data.text import build_word_tokenizer
from hfssl.export import ExportContext, write_directory
from hfssl.models.word2vec.configuration_word2vec import Word2VecConfig
from hfssl.models.word2vec.modeling_word2vec import Word2VecModel

logger = logging.getLogger(__name__)


def _check_words(words: Sequence[str]) -> None:
    for index, word in enumerate(words):
        if not word or any(character.isspace() for character in word):
            raise ValueError(
                f"word {index} ({word!r}) is empty or contains whitespace, which the word2vec formats cannot store"
            )


def save_word2vec_format(path: str | Path, words: Sequence[str], vectors: np.ndarray | torch.Tensor,
                         binary: bool = False) -> Path:
    """Write ``words`` and their vectors ``(V, d)`` in the word2vec text or binary format."""
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().cpu().numpy()
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError(f"expected vectors of shape ({len(words)}, d), got {vectors.shape}")
    _check_words(words)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(f"{vectors.shape[0]} {vectors.shape[1]}\n".encode())
        little_endian = vectors.astype("<f4", copy=False)
        for word, vector in zip(words, little_endian):
            if binary:
                handle.write(word.encode("utf-8") + b" " + vector.tobytes() + b"\n")
            else:
                # repr-precision floats (9 significant digits) survive the round trip exactly.
                handle.write((word + " " + " ".join(f"{value:.9g}" for value in vector) + "\n").encode("utf-8"))
    return path


def load_word2vec_format(path: str | Path, binary: bool | None = None) -> tuple[list[str], np.ndarray]:
    """Read a word2vec text or binary file (``binary=None``: guessed from the first vector line).

    Returns:
        the words in file order and their vectors ``(V, d)`` float32.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        header = handle.readline().split()
        if len(header) != 2:
            raise ValueError(f"{path} does not start with a '<num words> <vector size>' header line")
        count, size = int(header[0]), int(header[1])
        body = handle.read()
    if binary is None:
        binary = _looks_binary(body, size)
    words: list[str] = []
    vectors = np.empty((count, size), dtype=np.float32)
    if binary:
        position = 0
        for index in range(count):
            while position < len(body) and body[position : position + 1] in (b"\n", b"\r"):
                position += 1
            end = body.index(b" ", position)
            words.append(body[position:end].decode("utf-8"))
            start = end + 1
            vectors[index] = np.frombuffer(body, dtype="<f4", count=size, offset=start)
            position = start + 4 * size
    else:
        lines = body.decode("utf-8").splitlines()
        lines = [line for line in lines if line.strip()]
        if len(lines) < count:
            raise ValueError(f"{path} announces {count} words but holds {len(lines)} vector lines")
        for index, line in enumerate(lines[:count]):
            parts = line.rstrip().split(" ")
            if len(parts) != size + 1:
                raise ValueError(f"{path}: line {index + 2} has {len(parts) - 1} values, expected {size}")
            words.append(parts[0])
            vectors[index] = np.asarray(parts[1:], dtype=np.float32)
    return words, vectors


def _looks_binary(body: bytes, size: int) -> bool:
    first = body[: body.find(b"\n") if b"\n" in body else len(body)]
    try:
        parts = first.decode("utf-8").split()
        [float(value) for value in parts[1:]]
        return len(parts) != size + 1
    except (UnicodeDecodeError, ValueError):
        return True


def trained_words(model: Any) -> tuple[list[str], torch.Tensor]:
    """Trained words of a model (count > 0), most frequent first, and their input vectors."""
    counts = model.word_counts.detach().cpu()
    order = torch.argsort(counts, descending=True, stable=True)
    order = order[counts[order] > 0]
    words = model.vocabulary
    return [words[i] for i in order.tolist()], model.input_embeddings.weight.detach().cpu()[order]


def export_word2vec_format(model: Any, path: str | Path, binary: bool = False) -> Path:
    """Write a :class:`Word2VecModel`'s word vectors (trained words, most frequent first)."""
    words, vectors = trained_words(model)
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

