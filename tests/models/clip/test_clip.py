"""CLIP / LiT: the model, its locked towers, its temperature, pretrained towers and the exported dual encoder."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hfssl.models.clip import HfsslCLIPConfig, HfsslCLIPForPreTraining, dual_encoder_of, export_dual_encoder
from hfssl.export import ExportContext
from hfssl.recipe import recipe_from_dict
from tiny import TINY, TINY_TEXT_TOWER, TINY_VIT, tiny_inputs, tiny_model

TINY_CLIP_VISION = {"model_type": "clip_vision_model", "image_size": 16, "patch_size": 4, "hidden_size": 32,
                    "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TINY_CLIP_TEXT = {"model_type": "clip_text_model", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
                  "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
                  "eos_token_id": 102, "bos_token_id": 101, "pad_token_id": 0}


def _recipe(model: dict, channels: int = 3):  # noqa: ANN202 - a Recipe
    return recipe_from_dict({"method": "clip", "model": model,
                             "data": {"source": "captions", "image_size": 16, "channels": channels},
                             "views": {"mean": [0.5] * channels, "std": [0.25] * channels}}, check_model=False)


@pytest.mark.parametrize("lock", ["lock_image_tower", "lock_text_tower"])
def test_a_locked_tower_gets_no_gradient_and_stays_in_inference_mode(lock: str) -> None:
    model = tiny_model("clip", **{lock: True}).train()
    locked = model.backbone.vision_model if lock == "lock_image_tower" else model.backbone.text_model
    free = model.backbone.text_model if lock == "lock_image_tower" else model.backbone.vision_model
    assert not locked.training and free.training  # model.train() keeps the locked tower in eval mode
    model(**tiny_inputs("clip")).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in locked.parameters())
    assert all(p.grad is not None for p in free.parameters() if p.requires_grad)
    for projection in (model.backbone.visual_projection, model.backbone.text_projection):
        assert projection.weight.grad is not None  # LiT: the locked tower's projection is trained
    assert model.backbone.logit_scale.grad is not None


def test_the_logit_scale_starts_at_one_over_0_07_and_is_clipped_at_100() -> None:
    model = tiny_model("clip")
    assert model.backbone.logit_scale.item() == pytest.approx(math.log(1 / 0.07), abs=1e-6)
    with torch.no_grad():
        model.backbone.logit_scale.fill_(7.0)  # exp(7) = 1097
    output = model(**tiny_inputs("clip"))
    assert output.logit_scale.item() == pytest.approx(100.0, rel=1e-5)
    model.on_train_step_end(1, {})
    assert model.backbone.logit_scale.item() == pytest.approx(math.log(100.0), abs=1e-6)


def test_the_loss_is_the_symmetric_cross_entropy_of_the_transformers_model() -> None:
    """The loss equals CLIP's loss computed from transformers' own logits of the same dual encoder."""
    model = tiny_model("clip").eval()
    inputs = tiny_inputs("clip")
    with torch.no_grad():
        loss = model(**inputs).loss
        logits = model.backbone(**inputs).logits_per_image
    targets = torch.arange(len(logits))
    expected = (torch.nn.functional.cross_entropy(logits, targets)
                + torch.nn.functional.cross_entropy(logits.T, targets)) / 2
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"vision_config": {"model_type": "resnet"}}, "cannot be a dual-encoder image tower"),
    ({"lock_image_tower": True, "lock_text_tower": True}, "lock one tower at most"),
    ({"max_logit_scale": 0.5}, "max_logit_scale must be in"),
    ({"vision_config": {"model_type": "no_such_model"}}, "vision_config"),
])
def test_bad_configs_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HfsslCLIPConfig(**{**TINY["clip"][0], **kwargs})


def test_mismatched_batches_are_refused() -> None:
    inputs = tiny_inputs("clip")
    inputs["input_ids"] = inputs["input_ids"][:3]
    with pytest.raises(ValueError, match="each image needs exactly one caption"):
        tiny_model("clip")(**inputs)


def test_lit_loads_an_hfssl_image_encoder_and_locked_text_loads_minilm(tmp_path: Path) -> None:
    """The pretrained towers: an image encoder folder (as an hfssl vision run exports it) and the
    built-in all-MiniLM-L6-v2, copied in by ``load_pretrained_weights`` (what the engine calls)."""
    from transformers import AutoModel, ViTConfig, ViTModel

    torch.manual_seed(3)
    encoder = ViTModel(ViTConfig(**{k: v for k, v in TINY_VIT.items() if k != "model_type"}))
    encoder.save_pretrained(tmp_path / "encoder")
    config = HfsslCLIPConfig(vision_name_or_path=str(tmp_path / "encoder"), lock_image_tower=True,
                             text_name_or_path="builtin:all-MiniLM-L6-v2", projection_dim=8)
    assert config.vision_config.model_type == "vit" and config.text_config.hidden_size == 384
    assert config.tokenizer_name_or_path == "builtin:all-MiniLM-L6-v2"
    model = HfsslCLIPForPreTraining(config)
    assert sorted(model.load_pretrained_weights()) == sorted([str(tmp_path / "encoder"), "builtin:all-MiniLM-L6-v2"])
    for name, value in encoder.state_dict().items():
        assert torch.equal(model.backbone.vision_model.state_dict()[name], value), name
    from hfssl.backbones import resolve_pretrained_path

    minilm = AutoModel.from_pretrained(resolve_pretrained_path("builtin:all-MiniLM-L6-v2"))
    name = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(model.backbone.text_model.state_dict()[name], minilm.state_dict()[name])
    assert not any(p.requires_grad for p in model.backbone.vision_model.parameters())


_PIPELINE_SCRIPT = """
import json, sys, torch
from PIL import Image
from transformers import AutoModel, AutoProcessor, pipeline
path, io, remote = sys.argv[1], torch.load(sys.argv[2]), sys.argv[3] == "remote"
labels = ["an emoji of a cat", "an emoji of a red car", "flags"]
image = Image.fromarray(io["pixels"].numpy())
refused = None
if remote:  # custom code: refused unless trusted, never silently loaded as the plain class
    try:
        AutoModel.from_pretrained(path)
    except ValueError as error:
        refused = "trust_remote_code=True" in str(error)
classifier = pipeline("zero-shot-image-classification", model=path, trust_remote_code=remote)
scores = {row["label"]: row["score"] for row in classifier(image, candidate_labels=labels, hypothesis_template="{}")}
model = AutoModel.from_pretrained(path, trust_remote_code=remote).eval()
processor = AutoProcessor.from_pretrained(path, trust_remote_code=remote)
with torch.no_grad():
    inputs = processor(text=labels, images=image, return_tensors="pt", padding=True)
    probabilities = model(**inputs).logits_per_image.softmax(-1)[0]
print()  # transformers' unanswered trust prompt (no newline) may precede the report
print(json.dumps({"class": type(model).__name__, "processor": type(processor).__name__,
                  "scores": [scores[label] for label in labels], "probabilities": probabilities.tolist(),
                  "hfssl_imported": "hfssl" in sys.modules, "refused_untrusted": refused}))
"""


@pytest.mark.parametrize(("towers", "expected_class", "channels"), [
    ({"vision_config": TINY_VIT, "text_config": TINY_TEXT_TOWER}, "VisionTextDualEncoderModel", 3),
    ({"vision_config": {**TINY_VIT, "num_channels": 1}, "text_config": TINY_TEXT_TOWER}, "VisionTextDualEncoderModel", 1),
    ({"vision_config": TINY_CLIP_VISION, "text_config": TINY_CLIP_TEXT}, "CLIPModel", 3),
    ({"vision_config": TINY_VIT, "text_config": TINY_TEXT_TOWER, "text_pooling": "mean"},
     "PooledVisionTextDualEncoderModel", 3),
])
def test_export_runs_in_the_zero_shot_pipeline_without_hfssl(towers: dict, expected_class: str, channels: int,
                                                             tmp_path: Path) -> None:
    """``DIR/encoder`` loads in a fresh process without hfssl, and the zero-shot pipeline and the model's
    own logits give the probabilities of the hfssl model (grey runs through the luma-converted tower; a
    mean-pooled text tower through the exported remote code, with ``trust_remote_code=True``, over labels
    of different lengths, so padding is masked out of the mean)."""
    model_kwargs = {**towers, "projection_dim": 16, "tokenizer_name_or_path": "builtin:all-MiniLM-L6-v2"}
    torch.manual_seed(0)
    model = HfsslCLIPForPreTraining(HfsslCLIPConfig(**model_kwargs)).eval()
    with torch.no_grad():
        model.backbone.logit_scale.fill_(math.log(30.0))
    recipe = _recipe(model_kwargs, channels)
    export_dual_encoder(model, tmp_path / "encoder", ExportContext(recipe))
    pixels = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    torch.save({"pixels": pixels}, tmp_path / "io.pt")
    labels = ["an emoji of a cat", "an emoji of a red car", "flags"]
    with torch.no_grad():  # the hfssl model on the same image (its luma when grey)
        image = pixels.permute(2, 0, 1).float().unsqueeze(0)
        if channels == 1:
            image = (image * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        image = (image / 255 - 0.5) / 0.25
        _, processor = dual_encoder_of(model, recipe)
        tokens = processor.tokenizer(labels, padding=True, return_tensors="pt")
        image_embeds = torch.nn.functional.normalize(model.get_image_features(image), dim=1)
        text_embeds = torch.nn.functional.normalize(model.get_text_features(**tokens), dim=1)
        expected = (model.clipped_logit_scale() * image_embeds @ text_embeds.T).softmax(-1)[0]
    remote = towers.get("text_pooling", "pooler") != "pooler"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")  # where transformers copies the remote code
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(_PIPELINE_SCRIPT), str(tmp_path / "encoder"),
                             str(tmp_path / "io.pt"), "remote" if remote else "local"], capture_output=True,
                            text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["hfssl_imported"] is False
    assert report["class"] == expected_class
    assert report["refused_untrusted"] is (True if remote else None)
    torch.testing.assert_close(torch.tensor(report["probabilities"]), expected, atol=2e-3, rtol=0)
    torch.testing.assert_close(torch.tensor(report["scores"]), expected, atol=2e-3, rtol=0)


@pytest.mark.parametrize(("model", "message"), [
    ({"vision_config": TINY_VIT, "text_config": TINY_TEXT_TOWER}, "model.tokenizer_name_or_path is required"),
    ({**TINY["clip"][0], "lock_image_tower": True, "lock_text_tower": True}, "lock one tower at most"),
    ({**TINY["clip"][0], "vision_config": {**TINY_VIT, "num_channels": 1}}, "data.channels=3 but the image tower"),
])
def test_bad_recipes_stop_before_training_with_the_key_named(model: dict, message: str) -> None:
    from hfssl.settings import RecipeError

    with pytest.raises(RecipeError, match=message):
        _recipe(model)


def test_a_missing_lit_encoder_folder_is_named_when_the_model_is_built() -> None:
    """A LiT recipe parses before its image tower's run exists (recipes/clip/emoji_lit.yaml); building the
    model (training start) names the folder."""
    with pytest.raises(ValueError, match="vision_name_or_path='/no/such/encoder' is not a model folder"):
        HfsslCLIPConfig(vision_name_or_path="/no/such/encoder", lock_image_tower=True, tokenizer_name_or_path="x")
