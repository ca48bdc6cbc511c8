"""MLM data: packing keeps every token exactly once, sentence pairs and NSP rows, the WordPiece
tokenizer, held-out documents, and bad input with errors that name it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hfssl  # noqa: F401 - registers the methods
from hfssl.models.mlm.configuration_mlm import MLMConfig
from hfssl.models.mlm.data import (
    HOLDOUT_EVERY,
    Collator,
    InputBuilder,
    build_training_data,
    combine_pairs,
    pack_documents,
    sentence_pairs,
    split_held_out,
    split_sentences,
    tokenizer_config_updates,
    train_wordpiece,
)
from hfssl.recipe import load_recipe

REPO = Path(__file__).resolve().parents[3]
CLS, SEP, PAD = 2, 3, 0
TINY_BERT = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def test_packing_never_loses_or_repeats_a_token():
    rng = np.random.default_rng(0)
    documents = [list(rng.integers(5, 1000, size=int(rng.integers(0, 90)))) for _ in range(60)]
    rows, lengths = pack_documents(documents, CLS, SEP, PAD, length=32)
    assert all(len(row) == 32 and row[0] == CLS for row in rows)
    assert all(length == 32 for length in lengths[:-1]) and 1 < lengths[-1] <= 32
    assert all(token == PAD for row, length in zip(rows, lengths) for token in row[length:])
    content = [token for row, length in zip(rows, lengths) for token in row[1:length]]
    expected = [token for document in documents if document for token in (*document, SEP)]
    assert content == expected  # every token once, in order, documents ended by [SEP]


def test_sentence_pairs_keep_order_and_fit_the_budget():
    rng = np.random.default_rng(1)
    sentences = [list(range(start, start + size)) for start, size in ((0, 7), (100, 5), (200, 9), (300, 4), (400, 30))]
    pairs = sentence_pairs(sentences, budget=20, rng=np.random.default_rng(2))
    assert pairs
    flat = [token for sentence in sentences for token in sentence]
    for first, second in pairs:
        assert first and second and len(first) + len(second) <= 20
        joined = first + second
        start = flat.index(joined[0])
        # A and B are consecutive text of the document (trimmed only at their ends).
        assert all(flat.index(token) >= start for token in joined)
        assert [flat.index(token) for token in joined] == sorted(flat.index(token) for token in joined)
    del rng
    assert split_sentences("One. Two!  Three?\nFour") == ["One.", "Two!", "Three?", "Four"]


def test_next_sentence_rows_are_cls_a_sep_b_sep_with_half_random_seconds():
    rows = 2000
    generator = torch.Generator().manual_seed(0)
    first_lengths = torch.randint(1, 10, (rows,), generator=generator)
    second_lengths = torch.randint(1, 10, (rows,), generator=generator)
    first = torch.full((rows, 9), PAD)
    second = torch.full((rows, 9), PAD)
    for row in range(rows):
        first[row, : first_lengths[row]] = 1000 + row
        second[row, : second_lengths[row]] = 5000 + row
    batch = {"first_ids": first, "first_lengths": first_lengths, "second_ids": second, "second_lengths": second_lengths}
    out = combine_pairs(batch, torch.Generator().manual_seed(1), CLS, SEP, PAD, length=24)
    assert abs(float(out["next_sentence_label"].float().mean()) - 0.5) < 0.05
    for row in range(0, rows, 97):
        ids, types = out["input_ids"][row].tolist(), out["token_type_ids"][row].tolist()
        a = int(first_lengths[row])
        assert ids[0] == CLS and ids[1: a + 1] == [1000 + row] * a and ids[a + 1] == SEP
        second_part = ids[a + 2:]
        b = second_part.index(SEP)
        owner = second_part[0] - 5000
        assert (owner == row) == (out["next_sentence_label"][row] == 0)
        assert second_part[:b] == [5000 + owner] * b
        assert types[: a + 2] == [0] * (a + 2) and types[a + 2: a + 3 + b] == [1] * (b + 1)
        assert out["attention_mask"][row].sum() == a + b + 3


def test_wordpiece_tokenizer_has_bert_special_tokens_and_round_trips(tmp_path):
    from transformers import AutoTokenizer

    texts = ["the quick brown fox jumps over the lazy dog"] * 20 + ["pack my box with five dozen liquor jugs"] * 20
    tokenizer = train_wordpiece(iter(texts), vocab_size=200)
    assert [tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id,
            tokenizer.mask_token_id] == [0, 1, 2, 3, 4]
    assert len(tokenizer) <= 200
    encoded = tokenizer("The quick fox")["input_ids"]
    assert encoded[0] == 2 and encoded[-1] == 3
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)("The quick fox")["input_ids"] == encoded


def test_held_out_documents_are_never_trained_on():
    import datasets

    dataset = datasets.Dataset.from_dict({"text": [f"document {i}" for i in range(350)]})
    train, held = split_held_out(dataset, streaming=False)
    assert len(held) == 3 and held["text"] == [f"document {i}" for i in (99, 199, 299)]
    assert not set(held["text"]) & set(train["text"]) and len(train) + len(held) == 350
    assert HOLDOUT_EVERY == 100


def test_input_builder_masks_only_real_tokens_and_is_seeded():
    config = MLMConfig(bert_config=TINY_BERT, vocab_size=100, max_seq_length=16)
    builder = InputBuilder(config, None)
    batch = Collator(PAD, pairs=False)([{"input_ids": np.array([2, *range(10, 25)]), "length": 16},
                                        {"input_ids": np.array([2, 11, 12, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                                         "length": 4}])
    assert batch["input_ids"].shape == (2, 16) and batch["attention_mask"][1].tolist() == [1] * 4 + [0] * 12
    one = builder(batch, torch.Generator().manual_seed(3))
    two = builder(batch, torch.Generator().manual_seed(3))
    assert one["dropout_seed"] == two["dropout_seed"] and isinstance(one["dropout_seed"], int)
    assert all(torch.equal(one[key], two[key]) for key in one if key != "dropout_seed")
    assert (one["labels"][batch["attention_mask"] == 0] == -100).all()
    assert (one["labels"][:, 0] == -100).all()


# ---- bad input -----------------------------------------------------------------------------------


def _recipe(tmp_path: Path, *overrides: str):
    return load_recipe(REPO / "recipes" / "mlm" / "lee.yaml", ["train.progress_bar=false", "train.trackers=[]",
                                                                *overrides])


class _Accelerator:
    def main_process_first(self):
        import contextlib

        return contextlib.nullcontext()


def test_empty_texts_are_refused_with_the_source_named(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("text\n\"\"\n\"  \"\n")
    with pytest.raises(ValueError, match="no non-empty text"):
        build_training_data(_recipe(tmp_path, f"data.source={path}"), _Accelerator())


def test_a_missing_text_column_is_named(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("body\nsome text here\n")
    with pytest.raises(ValueError, match="no text column 'text'.*body.*data.text_column"):
        build_training_data(_recipe(tmp_path, f"data.source={path}"), _Accelerator())


def test_a_sequence_longer_than_the_positions_is_refused():
    with pytest.raises(ValueError, match="max_seq_length 1024 is above the model's max_position_embeddings \\(512\\)"):
        MLMConfig(bert_config={**TINY_BERT, "max_position_embeddings": 512}, vocab_size=100, max_seq_length=1024)
    with pytest.raises(ValueError, match="max_seq_length 600 is above"):
        MLMConfig(backbone_name_or_path="builtin:all-MiniLM-L6-v2", max_seq_length=600)


def test_a_tokenizer_that_does_not_fit_the_model_is_refused():
    from hfssl.models.mlm.data import load_tokenizer

    with pytest.raises(ValueError, match="differs from the 30522 embeddings"):
        MLMConfig(backbone_name_or_path="builtin:all-MiniLM-L6-v2", vocab_size=8000)
    config = MLMConfig(bert_config={**TINY_BERT, "vocab_size": 100}, backbone_name_or_path="builtin:all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="tokenizer has 30522 tokens but the model .* only 100"):
        tokenizer_config_updates(load_tokenizer("builtin:all-MiniLM-L6-v2"), config)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        MLMConfig(bert_config=TINY_BERT, vocab_size=100, mask_token_id=103)


@pytest.mark.parametrize("kwargs, message", [
    ({"mask_probability": 0.0}, "mask_probability"),
    ({"mask_replace_probability": 0.9, "random_replace_probability": 0.2}, "must be <= 1"),
    ({"packing": "documents"}, "packing"),
    ({"bert_config": "bert-huge"}, "unknown model.bert_config preset"),
])
def test_bad_config_values_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLMConfig(**{"bert_config": TINY_BERT, "vocab_size": 100, **kwargs})


def test_documents_are_never_cut_by_a_tokenizer_saved_with_truncation(tmp_path):
    from transformers import AutoTokenizer

    from hfssl.models.mlm.data import encode_documents

    tokenizer = train_wordpiece(iter(["one two three four five six seven eight nine ten"] * 10), vocab_size=100)
    long_text = " ".join(["one two three four five"] * 20)
    tokenizer([long_text], truncation=True, max_length=8)  # leaves truncation on in the backend
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.backend_tokenizer.truncation is not None
    assert [len(ids) for ids in encode_documents([long_text], reloaded)] == [100]
