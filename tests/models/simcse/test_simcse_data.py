"""SimCSE's data: sentences through the shared text module, supervised pairs with hard negatives, bad rows named
with their index, text keys that make duplicates exact, and the pairs' loss through the model."""

from __future__ import annotations

import json

import pytest
import torch

from hfssl.data.config import TextDataConfig
from hfssl.data.text import load_text_split
from hfssl.models.simcse import SimCSEConfig, SimCSEForPreTraining
from hfssl.models.simcse.data import Collator, InputBuilder, prepare_rows, text_key
from hfssl.settings import RecipeError
from tiny_simcse import TINY_SIMCSE


class WordTokenizer:
    """Word ids from a fixed vocabulary (enough for the collator: padding, truncation, tensors)."""

    def __call__(self, texts, padding, truncation, max_length, return_tensors, return_token_type_ids):
        ids = [[2] + [5 + sum(map(ord, word)) % 90 for word in text.split()][: max_length - 1] for text in texts]
        width = max(len(row) for row in ids)
        return {"input_ids": torch.tensor([row + [0] * (width - len(row)) for row in ids]),
                "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])}


def _write(tmp_path, rows):
    path = tmp_path / "pairs.json"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return str(path)


def test_sentences_are_split_and_held_out_documents_left_out(tmp_path):
    rows = [{"text": f"Document {index} first. Second sentence of {index}!"} for index in range(100)]
    data = TextDataConfig(source=_write(tmp_path, rows), eval_split=None, split_sentences=True)
    prepared = prepare_rows(load_text_split(data), data)
    assert len(prepared) == 2 * 99  # document 99 is held out (1 in 100)
    assert prepared[0]["text"] == "Document 0 first." and prepared[1]["text"] == "Second sentence of 0!"


def test_pairs_with_hard_negatives_and_a_bad_row_named_by_its_index(tmp_path):
    rows = [{"anchor": "a cat", "positive": "a small cat", "negative": "a car"},
            {"anchor": "empty positive", "positive": "", "negative": "x"},
            {"anchor": "stocks fell", "positive": "shares dropped", "negative": "stocks rose"}]
    data = TextDataConfig(source=_write(tmp_path, rows), eval_split=None, text_column="anchor", pair_column="positive",
                          negative_column="negative")
    prepared = prepare_rows(load_text_split(data), data)
    assert sorted(prepared.column_names) == ["negative", "pair", "text"] and len(prepared) == 2  # the empty positive dropped
    batch = Collator(WordTokenizer(), 8)(list(prepared))
    assert batch["text_keys"].tolist() == [text_key("a cat"), text_key("stocks fell")]
    assert batch["negative_keys"].tolist() == [text_key("a car"), text_key("stocks rose")]
    inputs = InputBuilder()(batch, torch.Generator().manual_seed(0))
    model = SimCSEForPreTraining(SimCSEConfig(**TINY_SIMCSE)).train()
    output = model(**inputs)
    assert torch.isfinite(output.loss) and output.loss.requires_grad

    bad = _write(tmp_path, [*rows, {"anchor": "fine", "positive": 7, "negative": "z"}])
    data = TextDataConfig(source=bad, eval_split=None, text_column="anchor", pair_column="positive")
    with pytest.raises(ValueError, match=r"row 3 of column 'positive'.*not a string"):
        prepare_rows(load_text_split(data), data)
    data = TextDataConfig(source=bad, eval_split=None, text_column="anchor", pair_column="paraphrase")
    with pytest.raises(ValueError, match=r"no pair column 'paraphrase'.*data.pair_column"):
        prepare_rows(load_text_split(data), data)


def test_recipe_checks():
    with pytest.raises(RecipeError, match="negative_column.*needs data.pair_column"):
        TextDataConfig(negative_column="negative")
    with pytest.raises(RecipeError, match="split_sentences"):
        TextDataConfig(pair_column="positive", split_sentences=True)
    with pytest.raises(ValueError, match="pooling"):
        SimCSEConfig(**TINY_SIMCSE, pooling="max")
    with pytest.raises(ValueError, match="gradient_cache_chunk_size"):
        SimCSEConfig(**TINY_SIMCSE, gradient_cache_chunk_size=0)
    with pytest.raises(ValueError, match="bidirectional text encoder"):
        SimCSEConfig(encoder_config={"model_type": "vit"})


def test_text_keys_are_stable_and_the_dropout_seed_is_drawn_from_the_generator():
    assert text_key("same") == text_key("same") != text_key("Same")
    assert -2**63 <= text_key("same") < 2**63
    first = InputBuilder()({"input_ids": torch.zeros(1)}, torch.Generator().manual_seed(3))["dropout_seed"]
    again = InputBuilder()({"input_ids": torch.zeros(1)}, torch.Generator().manual_seed(3))["dropout_seed"]
    assert first == again


def test_an_mlm_run_is_read_through_its_encoder_folder(tmp_path):
    """model.backbone_name_or_path may be an hfssl run (an MLM run): its exported encoder/ is the start."""
    from transformers import BertConfig, BertForMaskedLM

    from hfssl.models.simcse.configuration_simcse import encoder_source

    run = tmp_path / "mlm-run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model_type": "hfssl_mlm"}))
    with pytest.raises(ValueError, match="hfssl export"):
        encoder_source(str(run))
    bert = BertForMaskedLM(BertConfig(**{**TINY_SIMCSE["encoder_config"], "max_position_embeddings": 32}))
    bert.save_pretrained(run / "encoder")
    assert encoder_source(str(run)) == str(run / "encoder")
    model = SimCSEForPreTraining(SimCSEConfig(backbone_name_or_path=str(run), max_seq_length=16))
    assert model.load_pretrained_weights() == [str(run)]
    torch.testing.assert_close(model.backbone.embeddings.word_embeddings.weight, bert.bert.embeddings.word_embeddings.weight)
