"""SimCSE's data: sentences (unsupervised) or sentence pairs (supervised) from any ``datasets`` text source.

Pipeline (``MethodSpec.build_data`` = :func:`build_training_data`):

1. **Text** through the shared text module (:mod:`hfssl.data.text`): any ``datasets`` source, built-in
   corpora, streaming; bad cells (not strings) raise naming their row. One document in
   :data:`hfssl.data.token_rows.HOLDOUT_EVERY` is held out of training by position, as for MLM (the
   ``alignment-uniformity`` protocol reads them). ``data.split_sentences`` makes one row per sentence.
   Supervised: ``data.pair_column`` holds each row's positive and ``data.negative_column`` an optional hard
   negative; rows with an empty text or positive are dropped.
2. **Tokenizer**: ``data.tokenizer_name_or_path``, else the starting encoder's (``model.backbone_name_or_path``);
   saved beside the model.
3. **Batches** (:class:`Collator`, in the DataLoader): the texts tokenised (truncated to
   ``model.max_seq_length``, padded to the batch's longest) and each text's 64-bit key (BLAKE2b of its UTF-8
   bytes, the same in every process), with which the loss keeps duplicate texts from being each other's
   negatives (exact, whatever the data order: :class:`hfssl.losses.SimCSELoss`).
4. **On the device** (:class:`InputBuilder`): the batch plus a dropout seed drawn from the step's generator.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from hfssl.data.text import check_text, load_text_split, resolve_text_column, split_sentences
from hfssl.data.token_rows import split_held_out
from hfssl.data.training import TrainingData
from hfssl.models.simcse.configuration_simcse import SimCSEConfig, encoder_source

#: Columns of the prepared rows.
TEXT, PAIR, NEGATIVE = "text", "pair", "negative"


def text_key(text: str) -> int:
    """A signed 64-bit key of ``text``: equal texts, equal keys, in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def load_tokenizer(config: SimCSEConfig, data: Any) -> Any:
    """``data.tokenizer_name_or_path``, else the starting encoder's tokenizer; checked against the encoder."""
    from transformers import AutoTokenizer

    name = data.tokenizer_name_or_path or config.backbone_name_or_path
    if not name:
        raise ValueError("SimCSE needs a tokenizer: set data.tokenizer_name_or_path, or model.backbone_name_or_path "
                         "(whose tokenizer is used)")
    source = encoder_source(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ValueError(f"could not load the tokenizer of {name!r}: {error}. Pass a folder holding tokenizer.json, or "
                         "connect to the Hugging Face Hub") from error
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"the tokenizer of {name!r} has {len(tokenizer)} tokens, the encoder {config.vocab_size} "
                         "embeddings: they do not belong together")
    if tokenizer.pad_token is None:
        raise ValueError(f"the tokenizer of {name!r} has no padding token; SimCSE pads sentences to a batch")
    return tokenizer


def _column(dataset: Any, data: Any, name: str | None, key: str) -> str | None:
    if name is None:
        return None
    if dataset.column_names is not None and name not in dataset.column_names:
        raise ValueError(f"dataset {data.source!r} has no {key} column {name!r}; its columns are {dataset.column_names}. "
                         f"Set data.{key}_column to the column that holds them")
    return name


def _rows(batch: dict[str, list], indices: list[int], columns: dict[str, str], source: str,
          sentences: bool) -> dict[str, list]:
    """Checked cells (a bad one named by its row) -> prepared rows; empty rows dropped; sentences split."""
    checked = {key: [check_text(value, index, column, source) for index, value in zip(indices, batch[column])]
               for key, column in columns.items()}
    if sentences:
        return {TEXT: [sentence for text in checked[TEXT] for sentence in split_sentences(text)]}
    keep = [row for row in range(len(indices)) if all(checked[key][row].strip() for key in (TEXT, PAIR) if key in checked)]
    return {key: [values[row] for row in keep] for key, values in checked.items()}


def prepare_rows(dataset: Any, data: Any) -> Any:
    """The training rows: ``text`` (and ``pair``, ``negative``) columns of the training documents."""
    column = resolve_text_column(dataset, data)
    columns = {TEXT: column}
    for key, name in ((PAIR, data.pair_column), (NEGATIVE, data.negative_column)):
        if _column(dataset, data, name, key) is not None:
            columns[key] = name
    training, _ = split_held_out(dataset, data.streaming)
    training = training.select_columns(list(dict.fromkeys(columns.values())))
    options: dict[str, Any] = {} if data.streaming else {"desc": "simcse: sentences" if data.split_sentences else "simcse: rows"}
    return training.map(_rows, batched=True, with_indices=True, remove_columns=list(dict.fromkeys(columns.values())),
                        fn_kwargs={"columns": columns, "source": data.source, "sentences": data.split_sentences}, **options)


class Collator:
    """Rows -> ``input_ids``, ``attention_mask``, ``text_keys`` (and the ``pair_`` / ``negative_`` ones)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def _encode(self, texts: list[str], prefix: str) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
                                 return_token_type_ids=False)
        return {f"{prefix}input_ids": encoded["input_ids"], f"{prefix}attention_mask": encoded["attention_mask"],
                f"{prefix}keys" if prefix else "text_keys": torch.tensor([text_key(text) for text in texts],
                                                                         dtype=torch.int64)}

    def __call__(self, rows: list[dict[str, str]]) -> dict[str, torch.Tensor]:
        batch = self._encode([row[TEXT] for row in rows], "")
        for key in (PAIR, NEGATIVE):
            if key in rows[0]:
                batch.update(self._encode([row[key] or "" for row in rows], f"{key}_"))
        return batch


class InputBuilder:
    """``make_inputs(batch, generator)``: the tokenised batch plus this micro-batch's dropout seed."""

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, Any]:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        return {**batch, "dropout_seed": seed}


def build_training_data(recipe: Any, accelerator: Any) -> TrainingData:
    """``MethodSpec.build_data`` of SimCSE (see the module docstring)."""
    config = SimCSEConfig(**recipe.model)
    data = recipe.data
    tokenizer = load_tokenizer(config, data)
    with accelerator.main_process_first():
        rows = prepare_rows(load_text_split(data), data)
    if not data.streaming:
        if len(rows) == 0:
            raise ValueError(f"dataset {data.source!r} gave no training rows (every text or positive is empty); point "
                             "data.source (and data.text_column / data.pair_column) at real text")
        if len(rows) < recipe.train.batch_size:
            raise ValueError(f"dataset {data.source!r} has {len(rows)} training rows, fewer than train.batch_size "
                             f"({recipe.train.batch_size}): in-batch negatives need a full batch")

    def save(directory: Any) -> None:
        tokenizer.save_pretrained(directory)

    return TrainingData(train_dataset=rows, collate_fn=Collator(tokenizer, config.max_seq_length),
                        make_inputs=InputBuilder(), save_artifacts=save)


def build_inputs(recipe: Any, data: TrainingData) -> InputBuilder:
    """``MethodSpec.build_inputs``: the dropout seed; the tokenised batch comes from :class:`Collator`."""
    return InputBuilder()
