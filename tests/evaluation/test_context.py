"""The evaluation context: what protocols can ask for, loaded on first use, and what a model provides."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfssl.data.config import ImageDataConfig, ImageTextDataConfig
from hfssl.data.text import build_word_tokenizer
from hfssl.evaluation.context import EvaluationContext
from hfssl.recipe import EvalConfig
from hfssl.registry import IMAGE_FEATURES, LAYER_FEATURES, WORD_VECTORS
from image_text_fixtures import CAPTIONS, caption_folder
from tiny import tiny_model


def test_capabilities_come_from_the_method_or_the_path(tmp_path: Path) -> None:
    simclr = tiny_model("simclr")
    assert EvaluationContext(EvalConfig(), model=simclr).capabilities == (IMAGE_FEATURES, LAYER_FEATURES)
    simclr.save_pretrained(tmp_path / "run")
    assert EvaluationContext(EvalConfig(), model_path=str(tmp_path / "run")).capabilities == (IMAGE_FEATURES, LAYER_FEATURES)
    tiny_model("word2vec").save_pretrained(tmp_path / "w2v")
    assert EvaluationContext(EvalConfig(), model_path=str(tmp_path / "w2v")).capabilities == (WORD_VECTORS,)
    (tmp_path / "vectors.txt").write_text("1 2\na 1 0\n")
    assert EvaluationContext(EvalConfig(), model_path=str(tmp_path / "vectors.txt")).capabilities == (WORD_VECTORS,)


def test_labelled_splits_are_capped_and_named(tmp_path: Path) -> None:
    context = EvaluationContext(EvalConfig(max_train_samples=50, max_test_samples=20),
                                data_config=ImageDataConfig(source="builtin:digits", image_size=8))
    splits = context.image_splits()
    assert (len(splits.train), len(splits.test), context.num_classes) == (50, 20, 10)
    assert context.class_names == [str(digit) for digit in range(10)]
    raw = context.raw_pixel_features()
    assert raw.train_features.shape == (50, 3 * 8 * 8) and 0.0 <= raw.train_features.min() <= raw.train_features.max() <= 1.0


def test_image_text_pairs_and_their_class_names(tmp_path: Path) -> None:
    source = caption_folder(tmp_path / "pairs")
    context = EvaluationContext(EvalConfig(max_test_samples=1),
                                data_config=ImageTextDataConfig(source=str(source), image_size=8))
    pairs = context.image_text_pairs()
    assert len(pairs.test) == 1 and pairs.test[0]["text"] in CAPTIONS
    assert context.image_text_pairs() is pairs  # loaded once
    with pytest.raises(ValueError, match="image-text protocols need an image-caption source"):
        EvaluationContext(EvalConfig(), data_config=ImageDataConfig(source="builtin:digits")).image_text_pairs()


def test_the_tokenizer_saved_with_a_model(tmp_path: Path) -> None:
    model = tiny_model("word2vec")
    model.save_pretrained(tmp_path / "run")
    with pytest.raises(ValueError, match="has no tokenizer saved with it"):
        EvaluationContext(EvalConfig(), model_path=str(tmp_path / "run")).tokenizer()
    build_word_tokenizer([f"w{index}" for index in range(1, 100)], True, r"\w+").save_pretrained(tmp_path / "run")
    tokenizer = EvaluationContext(EvalConfig(), model_path=str(tmp_path / "run")).tokenizer()
    assert tokenizer.convert_tokens_to_ids("w7") == 7
