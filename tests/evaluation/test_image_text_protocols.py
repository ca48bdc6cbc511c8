"""Zero-shot classification and retrieval: the maths on fixed embeddings, and the protocols on a tiny
CLIP in memory, on its exported dual encoder and through ``hfssl eval``, with the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hfssl.cli import main as hfssl_main
from hfssl.data.config import ImageTextDataConfig
from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.image_text import class_text_embeddings, load_dual_encoder, retrieval_recalls, zero_shot_scores
from hfssl.evaluation.protocols.zero_shot import ZeroShotSettings
from hfssl.evaluation.runner import evaluate
from hfssl.export import ExportContext
from hfssl.models.clip import export_dual_encoder
from hfssl.recipe import EvalConfig, recipe_from_dict
from hfssl.registry import IMAGE_FEATURES, IMAGE_TEXT_EMBEDDINGS, LAYER_FEATURES
from hfssl.settings import RecipeError
from image_text_fixtures import caption_folder
from tiny import TINY, tiny_model


def unit(rows: list[list[float]]) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float64)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_retrieval_recalls_count_ranks_both_ways_and_merge_identical_captions() -> None:
    images = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    texts = unit([[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 1, 0.1]])
    # image 0 -> text 0 first (hit at 1); image 1's best text is 2 (its own is 1: rank 3 after 3 and 0?)
    rows = retrieval_recalls(images, ["a", "b", "c", "d"], texts, (1, 2, 4))
    similarity = images @ texts.T
    for row, scores in zip(rows, (similarity, similarity.T)):
        ranks = [(np.argsort(-scores[i], kind="stable") == i).nonzero()[0][0] for i in range(4)]
        for k in (1, 2, 4):
            assert row[f"recall_at_{k}"] == pytest.approx(np.mean([rank < k for rank in ranks]))
    assert [row["direction"] for row in rows] == ["image-to-text", "text-to-image"]
    assert rows[0]["recall_at_4"] == 1.0
    # Two images with the same caption string: either copy of the caption is a hit for both.
    duplicated = retrieval_recalls(unit([[1, 0], [1, 0.01]]), ["same", "same"], unit([[1, 0.01], [1, 0]]), (1,))
    assert duplicated[0]["recall_at_1"] == 1.0 and duplicated[1]["recall_at_1"] == 1.0


class FixedTextEncoder:
    """Embeds ``"<template word> <class>"`` prompts to fixed vectors, to check template ensembling."""

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        table = {"a cat": [1, 0.2], "the cat": [1, -0.2], "a dog": [0, 1], "the dog": [0.2, 1]}
        return unit([table[text] for text in texts])


def test_zero_shot_averages_the_normalised_prompts_of_each_class() -> None:
    classes = class_text_embeddings(FixedTextEncoder(), ["cat", "dog"], ["a {}", "the {}"])
    np.testing.assert_allclose(classes[0], [1, 0], atol=1e-12)  # the two cat prompts average to the x axis
    assert np.linalg.norm(classes, axis=1) == pytest.approx([1, 1])
    scores = zero_shot_scores(unit([[1, 0.1], [0.1, 1], [1, 0]]), np.array([0, 1, 1]), classes)
    assert scores == {"top1": pytest.approx(2 / 3), "top5": 1.0}


@pytest.mark.parametrize(("values", "message"), [
    ({"templates": ["no placeholder"]}, "each hold '{}'"),
    ({"templates": []}, "each hold '{}'"),
    ({"class_names": ["", "b"]}, "non-empty names"),
])
def test_bad_zero_shot_settings_are_refused(values: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        ZeroShotSettings(**values)


@pytest.fixture(scope="module")
def tiny_clip_run(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("clip_eval")
    source = caption_folder(root / "pairs")
    model = tiny_model("clip").eval()
    recipe = recipe_from_dict({"method": "clip", "model": TINY["clip"][0],
                               "data": {"source": str(source), "image_size": 16, "label_column": "colour"},
                               "eval": {"protocols": ["zero-shot", "retrieval"],
                                        "zero-shot": {"templates": ["a {} square", "{}"],
                                                      "class_names": ["red", "green", "blue"]}}},
                              check_model=False)
    export_dual_encoder(model, root / "encoder", ExportContext(recipe))
    return model, recipe, root


def test_protocols_give_the_same_numbers_in_memory_and_on_the_exported_folder(tiny_clip_run: tuple) -> None:
    model, recipe, root = tiny_clip_run
    in_memory = evaluate(EvaluationContext(recipe.eval, data_config=recipe.data, model=model, recipe=recipe))
    exported = evaluate(EvaluationContext(recipe.eval, data_config=recipe.data, model_path=str(root / "encoder")))
    assert EvaluationContext(recipe.eval, model_path=str(root / "encoder")).capabilities == (
        IMAGE_TEXT_EMBEDDINGS, IMAGE_FEATURES, LAYER_FEATURES)  # and its image tower's features (knn, linear)
    rows = in_memory["results"]
    assert [row["protocol"] for row in rows] == ["zero-shot", "retrieval", "retrieval"]
    assert rows[0]["num_classes"] == 3 and rows[0]["templates"] == 2 and rows[0]["top5"] == 1.0  # 3 classes
    assert 0 <= rows[0]["top1"] <= 1 and all(0 <= rows[1][f"recall_at_{k}"] <= 1 for k in (1, 5, 10))
    assert rows[1]["recall_at_5"] == 1.0  # two test pairs: every caption is in the top 5
    for mine, theirs in zip(rows, exported["results"]):
        for key in ("top1", "top5", "recall_at_1", "recall_at_5"):
            assert mine.get(key) == pytest.approx(theirs.get(key), abs=1e-9)


def test_hfssl_eval_runs_both_protocols_on_a_dual_encoder_folder(tiny_clip_run: tuple, tmp_path: Path) -> None:
    _, _, root = tiny_clip_run
    output = tmp_path / "results.json"
    code = hfssl_main(["eval", str(root / "encoder"), "--dataset", str(root / "pairs"), "--label-column", "colour",
                       "--image-size", "16", "--class-names", "red", "green", "blue", "--output", str(output)])
    assert code == 0
    results = json.loads(output.read_text())
    assert {row["protocol"] for row in results["results"]} == {"zero-shot", "retrieval"}
    assert results["baselines"] == []


def test_zero_shot_refuses_unlabelled_pairs_and_non_dual_encoders(tiny_clip_run: tuple, tmp_path: Path) -> None:
    model, recipe, root = tiny_clip_run
    unlabelled = ImageTextDataConfig(source=str(root / "pairs"), image_size=16)
    context = EvaluationContext(EvalConfig(protocols=("zero-shot",)), data_config=unlabelled,
                                model_path=str(root / "encoder"))
    with pytest.raises(ValueError, match="needs class names"):
        evaluate(context)
    tiny_model("simclr").get_backbone().save_pretrained(tmp_path / "vision")
    with pytest.raises(ValueError, match="not an image-text dual encoder"):
        load_dual_encoder(str(tmp_path / "vision"))


def test_the_dual_encoder_sees_the_training_evaluation_transform() -> None:
    """Images through the exported processor give the model's own embeddings of the normalised pixels."""
    import torch

    from hfssl.evaluation.image_text import DualEncoder

    model = tiny_model("clip").eval()
    encoder = DualEncoder(*model.get_dual_encoder(16, (0.5,) * 3, (0.25,) * 3, 3))
    pixels = np.random.default_rng(0).integers(0, 256, (5, 3, 16, 16), dtype=np.uint8)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(
            model.get_image_features((torch.tensor(pixels).float() / 255 - 0.5) / 0.25), dim=1).numpy()
    np.testing.assert_allclose(encoder.embed_images(pixels), expected, atol=1e-5)
