"""CLIP's text towers pooled as they were trained (``model.text_pooling``): all-MiniLM-L6-v2's embedding is
its sentence-transformers mean pooling, the default follows a sentence-transformers folder, bad values
name the recipe key, and hfssl loads the pooled export with its own copy of the class."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from hfssl.backbones import resolve_pretrained_path
from hfssl.export import ExportContext
from hfssl.models.clip import HfsslCLIPConfig, HfsslCLIPForPreTraining, export_dual_encoder
from hfssl.recipe import recipe_from_dict
from hfssl.settings import RecipeError
from tiny import TINY_TEXT_TOWER, TINY_VIT

MINILM = "builtin:all-MiniLM-L6-v2"
TEXTS = ["an emoji of a cat face (animals & nature)", "flags", "an emoji of a red car"]


def _write_sentence_transformers_folder(folder: Path, pooling: dict[str, bool], pooling_path: str = "1_Pooling") -> None:
    """A BERT folder with sentence-transformers' modules.json and Pooling config (no weights: configs only)."""
    from transformers import BertConfig

    BertConfig(**{k: v for k, v in TINY_TEXT_TOWER.items() if k != "model_type"}).save_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": pooling_path, "type": "sentence_transformers.models.Pooling"}]))
    (folder / pooling_path).mkdir()
    modes = {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
             **pooling}
    (folder / pooling_path / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))


def test_minilm_text_embedding_is_its_sentence_embedding() -> None:
    """With the default (mean) pooling, the text embedding before the projection is all-MiniLM-L6-v2's own
    sentence embedding: the attention-masked mean of its last hidden states, as its 1_Pooling says."""
    folder = Path(resolve_pretrained_path(MINILM))
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    config = HfsslCLIPConfig(vision_config=TINY_VIT, text_name_or_path=MINILM, projection_dim=8)
    assert config.text_pooling == "mean"
    model = HfsslCLIPForPreTraining(config)
    model.load_pretrained_weights()
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokens = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert (tokens["attention_mask"] == 0).any()  # padded rows: the mask must keep padding out of the mean
    encoder = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        hidden = encoder(**tokens).last_hidden_state  # (B, T, 384)
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        expected = (hidden * mask).sum(1) / mask.sum(1)  # sentence-transformers' mean pooling, by hand
        embeddings = model.get_text_embeddings(**tokens)
        features = model.get_text_features(**tokens)
        pooler = encoder(**tokens).pooler_output
    torch.testing.assert_close(embeddings, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(features, model.backbone.text_projection(expected), atol=1e-5, rtol=1e-5)
    assert (embeddings - pooler).abs().max() > 0.1  # what the pooler gave instead: another vector
    # each row alone (no padding) gives the same embedding as in the padded batch
    with torch.no_grad():
        alone = model.get_text_embeddings(**tokenizer(TEXTS[1:2], return_tensors="pt"))
    torch.testing.assert_close(alone[0], expected[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("pooling", "expected"), [
    ({"pooling_mode_mean_tokens": True}, "mean"),
    ({"pooling_mode_cls_token": True}, "cls"),
])
def test_the_default_follows_a_sentence_transformers_folder(pooling: dict, expected: str, tmp_path: Path) -> None:
    _write_sentence_transformers_folder(tmp_path, pooling, pooling_path="pooling_module")
    assert HfsslCLIPConfig(text_name_or_path=str(tmp_path), projection_dim=8).text_pooling == expected


def test_other_towers_keep_the_pooler_by_default(tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig(**{k: v for k, v in TINY_TEXT_TOWER.items() if k != "model_type"}).save_pretrained(tmp_path)
    assert HfsslCLIPConfig(text_name_or_path=str(tmp_path), projection_dim=8).text_pooling == "pooler"
    assert HfsslCLIPConfig(text_config=TINY_TEXT_TOWER, projection_dim=8).text_pooling == "pooler"
    assert HfsslCLIPConfig(text_name_or_path=MINILM, text_pooling="pooler", projection_dim=8).text_pooling == "pooler"


def test_a_config_saved_before_text_pooling_keeps_the_pooler(tmp_path: Path) -> None:
    """A run trained before ``text_pooling`` existed projected the pooler: reloading it must not switch."""
    model = HfsslCLIPForPreTraining(HfsslCLIPConfig(vision_config=TINY_VIT, text_name_or_path=MINILM, projection_dim=8))
    model.save_pretrained(tmp_path)
    assert AutoModel.from_pretrained(tmp_path).config.text_pooling == "mean"
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["text_pooling"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert AutoModel.from_pretrained(tmp_path).config.text_pooling == "pooler"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"text_pooling": "max"}, r"model.text_pooling='max' is not one of \('pooler', 'mean', 'cls'\)"),
    ({"text_config": {"model_type": "clip_text_model", "hidden_size": 32, "num_hidden_layers": 1,
                      "num_attention_heads": 2, "intermediate_size": 64}, "text_pooling": "mean"},
     "a CLIP text tower .* pools at its end-of-text token"),
])
def test_bad_text_poolings_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HfsslCLIPConfig(**{"vision_config": TINY_VIT, "projection_dim": 8, **kwargs})


def test_an_unreproducible_sentence_transformers_pooling_is_refused(tmp_path: Path) -> None:
    _write_sentence_transformers_folder(tmp_path, {"pooling_mode_max_tokens": True})
    with pytest.raises(ValueError, match=r"pooled with \['max_tokens'\].*set model.text_pooling"):
        HfsslCLIPConfig(text_name_or_path=str(tmp_path), projection_dim=8)


def test_a_bad_recipe_value_stops_before_training() -> None:
    with pytest.raises(RecipeError, match="model.text_pooling='last' is not one of"):
        recipe_from_dict({"method": "clip", "model": {"vision_config": TINY_VIT, "text_config": TINY_TEXT_TOWER,
                                                      "tokenizer_name_or_path": MINILM, "text_pooling": "last"},
                          "data": {"source": "captions", "image_size": 16}}, check_model=False)


def test_hfssl_loads_the_pooled_export_without_remote_code(tmp_path: Path) -> None:
    """hfssl registers the pooled class with the Auto classes: its evaluation loads ``DIR/encoder`` without
    ``trust_remote_code`` and embeds texts as the training model does."""
    from hfssl.evaluation.context import is_dual_encoder
    from hfssl.evaluation.image_text import load_dual_encoder

    model_kwargs = {"vision_config": TINY_VIT, "text_config": TINY_TEXT_TOWER, "projection_dim": 16,
                    "tokenizer_name_or_path": MINILM, "text_pooling": "mean"}
    torch.manual_seed(0)
    model = HfsslCLIPForPreTraining(HfsslCLIPConfig(**model_kwargs)).eval()
    with torch.no_grad():
        model.backbone.logit_scale.fill_(math.log(30.0))
    recipe = recipe_from_dict({"method": "clip", "model": model_kwargs,
                               "data": {"source": "captions", "image_size": 16, "channels": 3},
                               "views": {"mean": [0.5] * 3, "std": [0.25] * 3}}, check_model=False)
    export_dual_encoder(model, tmp_path / "encoder", ExportContext(recipe))
    assert (tmp_path / "encoder" / "modeling_pooled_dual_encoder.py").is_file()
    assert is_dual_encoder(tmp_path / "encoder")
    encoder = load_dual_encoder(str(tmp_path / "encoder"))
    assert type(encoder.model) is type(model.backbone)  # hfssl's own class, no remote code
    tokens = encoder.processor.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.get_text_features(**tokens), dim=1)
    torch.testing.assert_close(torch.from_numpy(encoder.embed_texts(TEXTS)), expected, atol=1e-5, rtol=1e-5)
