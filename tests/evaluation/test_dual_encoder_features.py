"""knn / linear on the image tower of any CLIP-like checkpoint: a released ``CLIPModel`` folder through the real
``hfssl eval`` gives the numbers of its vision tower saved alone (the same features: the tower's pooled output
before the projection), and an hfssl CLIP run scores its image tower as its exported dual encoder does.
The two CLI comparisons run ``hfssl eval`` twice each (the first pays the evaluation stack's imports); the
linear probe is kept to one C on 300 digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPVisionModel

from hfssl.backbones import resolve_pretrained_path
from hfssl.cli import main as hfssl_main
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.features import load_feature_extractor
from hfssl.export import ExportContext
from hfssl.models.clip import export_dual_encoder
from hfssl.recipe import EvalConfig, recipe_from_dict
from hfssl.registry import IMAGE_FEATURES, IMAGE_TEXT_EMBEDDINGS, LAYER_FEATURES
from tiny import TINY, tiny_model

TOWER = {"image_size": 8, "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64}
TEXT = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 64, "eos_token_id": 102, "bos_token_id": 101,
        "pad_token_id": 0}
# builtin:digits at 8 px (grey, shown to the models as R = G = B), a slice of it.
DIGITS = ["--dataset", "builtin:digits", "--image-size", "8", "--max-train-samples", "300", "--max-test-samples", "100", "--c-grid", "1",
          "--no-baselines"]


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, CLIPModel]:
    """A tiny random CLIPModel with its processor, and its vision tower saved alone as a CLIPVisionModel."""
    root = tmp_path_factory.mktemp("released")
    torch.manual_seed(11)
    clip = CLIPModel(CLIPConfig(vision_config=TOWER, text_config=TEXT, projection_dim=16)).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8},
                                         image_mean=[0.5] * 3, image_std=[0.25] * 3)
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained_path("builtin:all-MiniLM-L6-v2"))
    clip.save_pretrained(root / "clip")
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(root / "clip")
    vision = CLIPVisionModel(clip.config.vision_config)
    vision.load_state_dict(clip.vision_model.state_dict())
    vision.save_pretrained(root / "vision")
    image_processor.save_pretrained(root / "vision")
    return root / "clip", root / "vision", clip


def _eval(path: Path, output: Path, *extra: str) -> list[dict]:
    code = hfssl_main(["eval", str(path), "--protocol", "knn", "--protocol", "linear", "--k", "5", *DIGITS,
                       "--output", str(output), *extra])
    assert code == 0
    return json.loads(output.read_text())["results"]


def test_knn_and_linear_on_a_clip_checkpoint_equal_its_vision_tower_alone(released: tuple, tmp_path: Path) -> None:
    clip_folder, vision_folder, _ = released
    rows = _eval(clip_folder, tmp_path / "clip.json")
    assert [(row["protocol"], row["features"]) for row in rows] == [("knn", "model"), ("linear", "model")]
    assert all(0.0 <= row["top1"] <= row["top5"] <= 1.0 for row in rows)
    assert rows == _eval(vision_folder, tmp_path / "vision.json")


def test_the_features_are_the_towers_pooled_output_before_the_projection(released: tuple) -> None:
    clip_folder, _, clip = released
    context = EvaluationContext(EvalConfig(), model_path=str(clip_folder))
    assert context.capabilities == (IMAGE_TEXT_EMBEDDINGS, IMAGE_FEATURES, LAYER_FEATURES)
    extractor = load_feature_extractor(str(clip_folder), device="cpu")
    pixels = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pixel_values = extractor.transform(pixels)
    with torch.no_grad():
        features = extractor.embed(pixel_values)
        expected = clip.vision_model(pixel_values=pixel_values).pooler_output  # [CLS] after post_layernorm
        assert torch.equal(features, expected) and features.shape == (4, TOWER["hidden_size"])
        layers = extractor.embed_layers(pixel_values)
    assert len(layers) == TOWER["num_hidden_layers"] and torch.equal(layers[-1], expected)


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An hfssl CLIP run as training leaves it (the model, its recipe, the exported dual encoder)."""
    run = tmp_path_factory.mktemp("clip-run") / "run"
    recipe = {"method": "clip", "model": TINY["clip"][0],
              "data": {"source": "builtin:emoji", "text_column": "caption", "image_size": 16},
              "views": {"mean": [0.5] * 3, "std": [0.25] * 3}, "eval": {"protocols": ["zero-shot"]}}
    model = tiny_model("clip").eval()
    model.save_pretrained(run)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    export_dual_encoder(model, run / "encoder", ExportContext(recipe_from_dict(recipe, check_model=False)))
    return run


def test_an_hfssl_clip_run_scores_its_image_tower_as_its_export_does(clip_run: Path, tmp_path: Path) -> None:
    """The run (get_embeddings after the recipe's evaluation transform) and its exported VisionTextDualEncoderModel
    (the ViT tower through the exported processor, pooled as the ViT alone) give the same knn and linear rows;
    the run's own eval_results.json keeps the rows of other protocols."""
    (clip_run / "eval_results.json").write_text(json.dumps({"results": [{"protocol": "zero-shot", "top1": 0.5}]}))
    digits = [arg if arg != "8" else "16" for arg in DIGITS]
    assert hfssl_main(["eval", str(clip_run), "--protocol", "knn", "--protocol", "linear", "--k", "5", *digits]) == 0
    rows = json.loads((clip_run / "eval_results.json").read_text())["results"]
    assert [row["protocol"] for row in rows] == ["zero-shot", "knn", "linear"]
    output = tmp_path / "encoder.json"
    assert hfssl_main(["eval", str(clip_run / "encoder"), "--protocol", "knn", "--protocol", "linear", "--k", "5",
                       *digits, "--output", str(output)]) == 0
    exported = json.loads(output.read_text())["results"]
    for mine, theirs in zip(rows[1:], exported, strict=True):
        assert mine["top1"] == pytest.approx(theirs["top1"], abs=0.011)  # one test image of 100 at most
    features = EvaluationContext.for_path(str(clip_run), None, EvalConfig()).capabilities
    assert IMAGE_FEATURES in features and LAYER_FEATURES in features


def test_a_clip_run_without_dataset_scores_on_its_own_labelled_pairs(clip_run: Path, tmp_path: Path) -> None:
    """Without --dataset the run's image-caption data serve as labelled images (emoji categories)."""
    output = tmp_path / "own.json"
    assert hfssl_main(["eval", str(clip_run), "--protocol", "knn", "--k", "5", "--max-train-samples", "200",
                       "--max-test-samples", "50", "--no-baselines", "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    assert results["dataset"] == "builtin:emoji" and results["num_classes"] == 9
    assert np.isfinite(results["results"][0]["top1"])
