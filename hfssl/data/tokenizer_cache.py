"""Tokenizers trained on a corpus, cached under a hash of the texts and the settings (MLM's WordPiece,
the causal language model's byte-level BPE).

``tokenizers``' trainers break ties between equally frequent merges in hash-map order, which changes
from process to process: two trainings on the same text can differ by a few tokens. The cache makes the
vocabulary a function of the data, so a resumed run and every process of a distributed run use the very
same tokenizer (the main process trains it first).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hfssl.data.sources import check_cache_writable
from hfssl.data.text import iter_texts

logger = logging.getLogger(__name__)


def cached_tokenizer(dataset: Any, column: str, source: str, kind: str, settings: list[Any],
                     train: Callable[[Iterator[str]], Any]) -> Any:
    """``train(texts)`` on the strings of ``dataset[column]``, cached in ``HF_DATASETS_CACHE/hfssl-<kind>/<hash>``.

    Args:
        kind: names the cache folder and the log lines (``wordpiece``, ``bpe``).
        settings: everything besides the texts that changes the tokenizer (vocabulary size, lower-casing).
        train: trains a ``PreTrainedTokenizerFast`` on an iterator of strings.
    """
    import datasets as hf_datasets
    import tokenizers
    from transformers import AutoTokenizer

    digest = hashlib.sha256(json.dumps([*settings, tokenizers.__version__]).encode())
    for text in iter_texts(dataset, column, source):
        digest.update(text.encode("utf-8", "replace") + b"\x00")
    folder = Path(hf_datasets.config.HF_DATASETS_CACHE) / f"hfssl-{kind}" / digest.hexdigest()[:32]
    if (folder / "tokenizer.json").is_file():
        logger.info("the %s vocabulary of these texts is cached in %s", kind, folder)
        return AutoTokenizer.from_pretrained(folder)
    tokenizer = train(iter_texts(dataset, column, source))
    logger.info("trained a %s vocabulary of %d tokens on %s", kind, len(tokenizer), source)
    # Every process of a run must use the one vocabulary the cache holds (training it again may break
    # ties differently), so a cache that cannot be written is refused here, before training.
    check_cache_writable(folder.parent, f"hfssl's {kind} tokenizer cache (the vocabulary of data.source, shared by "
                         "every process of the run; or set data.tokenizer_name_or_path)")
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    tokenizer.save_pretrained(staging)
    try:
        os.replace(staging, folder)
    except OSError:  # another process cached it first: use that one
        shutil.rmtree(staging, ignore_errors=True)
    return AutoTokenizer.from_pretrained(folder)
