"""Token rows for text models, shared by masked- and causal-language-model training and text evaluation.

* :func:`encode_documents` / :func:`pack_documents`: whole documents to token ids (never truncated)
  and rows ``[CLS] + length - 1 tokens`` with every document followed by ``[SEP]`` (RoBERTa's
  FULL-SENTENCES packing; MLM's ``grouped`` rows and the ``mlm-accuracy`` protocol's rows), or, for a
  causal language model, rows of ``length`` tokens with every document followed by the end-of-text
  token and consecutive rows sharing one token (``prefix_id=None, overlap=1``), so that every token of
  the stream after the first is a next-token target exactly once.
* :class:`TokenRowCollator`: packed rows (with their real lengths) to padded ``input_ids`` and
  ``attention_mask`` tensors.
* :func:`split_held_out` / :func:`held_out_texts`: one document in :data:`HOLDOUT_EVERY` is never
  trained on (MLM keeps it out), so a text model can be scored on text it did not see.
* :func:`training_documents`: a language model's training documents (held-out ones out, empty ones
  dropped), refused before training when they are empty or when its held-out protocol would find nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hfssl.data.text import iter_texts, load_text_split, resolve_text_column

#: One document in ``HOLDOUT_EVERY`` (index ``i`` with ``i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1``) is held out.
HOLDOUT_EVERY = 100


def pack_documents(documents: list[list[int]], cls_id: int | None, sep_id: int, pad_id: int, length: int,
                   overlap: int = 0, lead_id: int | None = None) -> tuple[list[list[int]], list[int]]:
    """Pack token lists into rows of ``length`` tokens, every document followed by ``sep_id``.

    Args:
        cls_id: the token that starts every row (BERT's ``[CLS]``), or ``None`` for rows of the stream alone.
        sep_id: the token after every document (``[SEP]``; a causal model's end-of-text token).
        overlap: stream tokens a row repeats from the end of the one before (a causal model: 1, so the
            last token of a row, which predicts nothing there, is the first input of the next).
        lead_id: a token before the first document (a causal model's end-of-text token, so that the first
            document's first token is a target too, as every later document's is after the one before).

    Returns:
        the rows (the last one padded with ``pad_id``) and their numbers of real tokens.
    """
    stream = [token for document in documents if document for token in (*document, sep_id)]
    if lead_id is not None and stream:
        stream.insert(0, lead_id)
    prefix = [] if cls_id is None else [cls_id]
    body = length - len(prefix)
    if not 0 <= overlap < body:
        raise ValueError(f"overlap {overlap} must be in [0, {body}) for rows of {length} tokens")
    rows, lengths = [], []
    stride = body - overlap
    for start in range(0, max(len(stream) - overlap, 0), stride):
        chunk = stream[start:start + body]
        lengths.append(len(chunk) + len(prefix))
        rows.append([*prefix, *chunk, *([pad_id] * (body - len(chunk)))])
    return rows, lengths


def plain_backend(tokenizer: Any) -> Any:
    """A copy of the ``tokenizers`` backend without truncation or padding: a tokenizer saved after a
    call with ``truncation=True`` keeps truncating in ``encode_batch``, which would cut documents."""
    from tokenizers import Tokenizer

    backend = tokenizer.backend_tokenizer if hasattr(tokenizer, "backend_tokenizer") else tokenizer
    if backend.truncation is None and backend.padding is None:
        return backend
    backend = Tokenizer.from_str(backend.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def encode_documents(texts: list[str | None], tokenizer: Any) -> list[list[int]]:
    """Token ids of whole documents, without special tokens, never truncated."""
    backend = plain_backend(tokenizer)
    return [encoding.ids for encoding in backend.encode_batch([text or "" for text in texts], add_special_tokens=False)]


def split_held_out(dataset: Any, streaming: bool) -> tuple[Any, Any]:
    """``(training documents, held-out documents)``: one document in :data:`HOLDOUT_EVERY`."""
    if streaming:
        return dataset.filter(lambda _, index: index % HOLDOUT_EVERY != HOLDOUT_EVERY - 1, with_indices=True), None
    indices = np.arange(len(dataset))
    held = indices % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
    return dataset.select(indices[~held]), dataset.select(indices[held])


def held_out_texts(data: Any, max_documents: int | None = None) -> tuple[list[str], str]:
    """The held-out documents of a text ``data`` section: ``data.eval_split`` when the source has it,
    else the documents :func:`split_held_out` kept out of training. Returns the texts and the split's name."""
    from hfssl.data.sources import load_split
    from hfssl.data.text import BUILTIN_TEXT

    dataset, name = None, None
    if data.eval_split and data.source not in BUILTIN_TEXT:
        try:
            dataset, name = load_split(data.source, data.eval_split, data.config_name), data.eval_split
        except (ValueError, KeyError, FileNotFoundError):
            dataset = None
    if dataset is None:
        import dataclasses

        full = load_text_split(dataclasses.replace(data, streaming=False, max_train_samples=None))
        _, dataset = split_held_out(full, streaming=False)
        name = f"held-out (1 in {HOLDOUT_EVERY} documents of {data.train_split})"
    column = resolve_text_column(dataset, data)
    texts = [text for text in iter_texts(dataset, column, data.source) if text.strip()]
    if max_documents is not None:
        texts = texts[:max_documents]
    if not texts:
        raise ValueError(f"dataset {data.source!r} has no held-out text to evaluate on (one document in "
                         f"{HOLDOUT_EVERY} is held out): give more documents or set data.eval_split")
    return texts, name


def _check_held_out(data: Any, held: Any, column: str, documents: int, protocol: str) -> None:
    """``protocol`` measures on the held-out documents: a corpus too small to hold one out would fail after
    the whole training, so it is refused before it."""
    if data.max_train_samples is not None:  # held_out_texts reads the whole source, not the capped one
        try:
            held_out_texts(data, max_documents=1)
            return
        except ValueError:
            held = None
    if held is None or not any(text.strip() for text in iter_texts(held, column, data.source)):
        raise ValueError(
            f"dataset {data.source!r} has {documents} document(s), so none is held out for eval protocol "
            f"{protocol} (one in {HOLDOUT_EVERY} is, and it must hold text): give at least {HOLDOUT_EVERY} "
            f"documents, set data.eval_split to a split of the source, or remove {protocol} from eval.protocols")


def training_documents(recipe: Any, held_out_protocol: str | None = None) -> tuple[Any, str]:
    """A language model's training documents and their text column: ``recipe.data``'s split less the documents
    :func:`split_held_out` keeps out (by position in the source, before anything is filtered, as
    :func:`held_out_texts` reads them) and less empty texts.

    Raises ``ValueError`` naming the source when no document holds text, and when ``held_out_protocol`` (the
    method's protocol that scores held-out text) is in ``eval.protocols`` without ``data.eval_split`` but no
    held-out document holds text (checked before training, not after it; not for a streamed source; ``None``:
    no such check).
    """
    data = recipe.data
    dataset = load_text_split(data)
    column = resolve_text_column(dataset, data)
    documents, held = split_held_out(dataset, data.streaming)
    documents = documents.filter(lambda row: bool(row[column] and str(row[column]).strip()))
    if not data.streaming:
        if len(documents) == 0:
            raise ValueError(f"dataset {data.source!r} has no non-empty text in column {column!r}; point data.source "
                             "(and data.text_column) at real text")
        if held_out_protocol is not None and held_out_protocol in recipe.eval.protocols and not data.eval_split:
            _check_held_out(data, held, column, len(dataset), held_out_protocol)
    return documents, column


# ---- batches ---------------------------------------------------------------------------------------


class TokenRowCollator:
    """Packed rows ``{"input_ids", "length"}`` -> int64 ``input_ids`` padded with ``pad_id`` to the
    longest row of the batch, and the ``attention_mask`` of the real tokens."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([int(row["length"]) for row in rows], dtype=torch.int64)
        input_ids = torch.full((len(rows), max(1, int(lengths.max()))), self.pad_id, dtype=torch.int64)
        for index, row in enumerate(rows):
            input_ids[index, : int(lengths[index])] = torch.from_numpy(
                np.asarray(row["input_ids"], dtype=np.int64)[: int(lengths[index])])
        return {"input_ids": input_ids, "attention_mask": (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()}
