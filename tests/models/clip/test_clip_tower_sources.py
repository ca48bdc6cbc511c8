"""CLIP / LiT towers from any checkpoint: a released CLIP-like dual encoder (CLIPModel, SiglipModel,
VisionTextDualEncoderModel), an hfssl run directory (exported or not) or an encoder folder, copied bit for bit
by ``load_pretrained_weights`` (what the engine calls when a run starts); bad sources name the recipe key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (AutoTokenizer, BertConfig, BertModel, CLIPConfig, CLIPModel, SiglipConfig, SiglipModel,
                          ViTConfig, ViTModel, VisionTextDualEncoderModel)

from hfssl import SimCLRConfig, SimCLRForPreTraining
from hfssl.backbones import resolve_pretrained_path
from hfssl.models.clip import HfsslCLIPConfig, HfsslCLIPForPreTraining
from hfssl.models.clip.tower_sources import locate_tower
from tiny import TINY_TEXT_TOWER, TINY_VIT, tiny_model

TOWER = {"image_size": 16, "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64}
CLIP_TEXT = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 64, "eos_token_id": 102, "bos_token_id": 101,
             "pad_token_id": 0}
VIT = {key: value for key, value in TINY_VIT.items() if key != "model_type"}
BERT = {key: value for key, value in TINY_TEXT_TOWER.items() if key != "model_type"}


def _released(kind: str) -> torch.nn.Module:
    """A tiny random CLIP-like checkpoint, as one would download it."""
    torch.manual_seed(7)
    if kind == "clip":
        return CLIPModel(CLIPConfig(vision_config=TOWER, text_config=CLIP_TEXT, projection_dim=16))
    if kind == "siglip":
        text = {key: value for key, value in CLIP_TEXT.items() if not key.endswith("token_id")}
        return SiglipModel(SiglipConfig(vision_config=TOWER, text_config=text))
    return VisionTextDualEncoderModel(vision_model=ViTModel(ViTConfig(**VIT)), text_model=BertModel(BertConfig(**BERT)))


def _save(model: torch.nn.Module, folder: Path) -> Path:
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_pretrained_path("builtin:all-MiniLM-L6-v2")).save_pretrained(folder)
    return folder


def _same_weights(tower: torch.nn.Module, expected: torch.nn.Module) -> None:
    """Every weight of ``expected`` is in ``tower`` bit for bit (keys with or without a wrapper's prefix)."""
    mine = tower.state_dict()
    for name, value in expected.state_dict().items():
        key = next(key for key in (name, f"vision_model.{name}", f"text_model.{name}", name.split(".", 1)[-1])
                   if key in mine)
        assert torch.equal(mine[key], value), name
    assert len(mine) == len(expected.state_dict())


@pytest.mark.parametrize("kind", ["clip", "siglip", "dual"])
def test_lit_takes_the_image_tower_of_a_released_dual_encoder(kind: str, tmp_path: Path) -> None:
    released = _released(kind).eval()
    folder = _save(released, tmp_path / kind)
    config = HfsslCLIPConfig(vision_name_or_path=str(folder), lock_image_tower=True, text_config=TINY_TEXT_TOWER,
                             tokenizer_name_or_path="builtin:all-MiniLM-L6-v2", projection_dim=8)
    assert config.vision_config.model_type == released.config.vision_config.model_type
    model = HfsslCLIPForPreTraining(config).eval()
    assert model.load_pretrained_weights() == [str(folder)]
    _same_weights(model.backbone.vision_model, released.vision_model)
    assert not any(p.requires_grad for p in model.backbone.vision_model.parameters())  # LiT: locked
    released.requires_grad_(False)  # nn.MultiheadAttention (SigLIP's pooling head) computes alike when both are frozen
    pixels = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = released.vision_model(pixel_values=pixels)
        expected = expected.pooler_output if kind != "dual" else expected.last_hidden_state[:, 0]
        assert torch.equal(model.get_embeddings(pixels), expected)  # the tower's features, before any projection
        assert torch.equal(model.get_layer_embeddings(pixels)[-1], expected)


def test_both_towers_of_a_clip_checkpoint_make_a_clip_model(tmp_path: Path) -> None:
    """A dual encoder's text tower too; both CLIP towers give a CLIPModel, its tokenizer the checkpoint's."""
    released = _released("clip")
    folder = str(_save(released, tmp_path / "clip"))
    model = HfsslCLIPForPreTraining(HfsslCLIPConfig(vision_name_or_path=folder, text_name_or_path=folder,
                                                    lock_text_tower=True, projection_dim=8))
    assert type(model.backbone).__name__ == "CLIPModel" and model.config.tokenizer_name_or_path == folder
    assert model.load_pretrained_weights() == [folder, folder]
    _same_weights(model.backbone.vision_model, released.vision_model)
    _same_weights(model.backbone.text_model, released.text_model)


def _vit_run(tmp_path: Path, exported: bool) -> tuple[Path, ViTModel]:
    torch.manual_seed(5)
    run = tmp_path / "run"
    simclr = SimCLRForPreTraining(SimCLRConfig(backbone_config=dict(TINY_VIT), projection_hidden_dim=16,
                                               projection_dim=8))
    simclr.save_pretrained(run)
    if exported:
        backbone = SimCLRForPreTraining(simclr.config).get_backbone()  # not the full model's: which one was read shows
        backbone.save_pretrained(run / "encoder")
        return run, backbone
    return run, simclr.get_backbone()


@pytest.mark.parametrize("exported", [True, False])
def test_lit_takes_an_hfssl_run_directory(exported: bool, tmp_path: Path) -> None:
    """A run's encoder/ when it was exported, else the backbone of the model saved in the run."""
    run, expected = _vit_run(tmp_path, exported)
    assert locate_tower(str(run), "vision").folder == str(run / "encoder" if exported else run)
    model = HfsslCLIPForPreTraining(HfsslCLIPConfig(vision_name_or_path=str(run), lock_image_tower=True,
                                                    text_config=TINY_TEXT_TOWER, projection_dim=8,
                                                    tokenizer_name_or_path="builtin:all-MiniLM-L6-v2"))
    model.load_pretrained_weights()
    _same_weights(model.backbone.vision_model, expected)


def test_an_hfssl_clip_run_gives_its_image_tower(tmp_path: Path) -> None:
    clip = tiny_model("clip")
    clip.save_pretrained(tmp_path / "clip-run")
    model = HfsslCLIPForPreTraining(HfsslCLIPConfig(vision_name_or_path=str(tmp_path / "clip-run"),
                                                    text_config=TINY_TEXT_TOWER, projection_dim=8,
                                                    tokenizer_name_or_path="builtin:all-MiniLM-L6-v2"))
    model.load_pretrained_weights()
    _same_weights(model.backbone.vision_model, clip.backbone.vision_model)


def test_sources_without_the_tower_name_the_key(tmp_path: Path) -> None:
    kwargs = {"text_config": TINY_TEXT_TOWER, "tokenizer_name_or_path": "builtin:all-MiniLM-L6-v2"}
    with pytest.raises(ValueError, match=r"model.vision_name_or_path='builtin:all-MiniLM-L6-v2' holds a bert model, "
                                         "which takes no images"):
        HfsslCLIPConfig(vision_name_or_path="builtin:all-MiniLM-L6-v2", **kwargs)
    tiny_model("word2vec").save_pretrained(tmp_path / "w2v")
    with pytest.raises(ValueError, match="is an hfssl word2vec run, which has no vision tower"):
        HfsslCLIPConfig(vision_name_or_path=str(tmp_path / "w2v"), **kwargs)
    (tmp_path / "training" / "checkpoints" / "step-00000002").mkdir(parents=True)
    with pytest.raises(ValueError, match="is an hfssl run directory without a saved model"):
        HfsslCLIPConfig(vision_name_or_path=str(tmp_path / "training"), **kwargs)
    ViTModel(ViTConfig(**VIT)).save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match="model.text_name_or_path=.*holds a vit model, which is not a text encoder"):
        HfsslCLIPConfig(text_name_or_path=str(tmp_path / "vit"), tokenizer_name_or_path="x")
