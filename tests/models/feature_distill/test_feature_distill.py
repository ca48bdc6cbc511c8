"""Feature distillation: the loss against its formula, a frozen teacher that gets no gradient and is never
saved, exact resume through the engine with the teacher reloaded from an hfssl run's encoder/, and the
refusal of a teacher whose weights changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, ResNetConfig, ResNetModel, ViTImageProcessor

from hfssl.losses import FeatureDistillationLoss
from hfssl.models.feature_distill import FeatureDistillConfig, FeatureDistillForPreTraining
from hfssl.recipe import OptimConfig, load_recipe
from hfssl.training.optim import build_optimizer
from hfssl.training.trainer import train
from tiny_feature_distill import TEACHER
from tiny import TINY_RESNET

REPO = Path(__file__).resolve().parents[3]


def test_cosine_and_smooth_l1_losses_match_their_formulas():
    generator = torch.Generator().manual_seed(0)
    predictions, targets = torch.randn(5, 7, generator=generator), torch.randn(5, 7, generator=generator) * 2
    cosine = [1 - float(p @ t) / (float(p.norm()) * float(t.norm())) for p, t in zip(predictions, targets)]
    assert FeatureDistillationLoss("cosine")(predictions, targets).item() == pytest.approx(sum(cosine) / 5, rel=1e-5)
    beta = 0.7
    total = 0.0
    for p, t in zip(predictions.flatten().tolist(), targets.flatten().tolist()):
        x = abs(p - t)
        total += 0.5 * x * x / beta if x < beta else x - 0.5 * beta
    loss = FeatureDistillationLoss("smooth_l1", beta)(predictions, targets)
    assert loss.item() == pytest.approx(total / 35, rel=1e-5)
    assert FeatureDistillationLoss("cosine")(targets * 3, targets).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="cosine, smooth_l1"):
        FeatureDistillationLoss("l2")


def _model() -> FeatureDistillForPreTraining:
    return FeatureDistillForPreTraining(FeatureDistillConfig(backbone_config=TINY_RESNET, teacher_config=TEACHER,
                                                             projection_hidden_dim=32))


def test_the_teacher_is_frozen_in_eval_mode_outside_the_optimiser_and_never_saved(tmp_path):
    model = _model().train()
    assert not model.teacher.training and model.training
    teacher_parameters = {id(parameter) for parameter in model.teacher.parameters()}
    optimiser = build_optimizer(model, OptimConfig(lr=0.1))
    assert not teacher_parameters & {id(p) for group in optimiser.param_groups for p in group["params"]}
    model(pixel_values=torch.randn(4, 3, 16, 16)).loss.backward()
    assert all(parameter.grad is None for parameter in model.teacher.parameters())
    assert not any(name.startswith("teacher.") for name in model.state_dict())
    model.save_pretrained(tmp_path)
    assert not any(name.startswith("teacher.") for name in load_file(tmp_path / "model.safetensors"))
    loaded = AutoModel.from_pretrained(tmp_path)  # the teacher rebuilt from teacher_config, on a real device
    assert loaded.teacher.embedder.embedder.convolution.weight.device.type == "cpu"
    assert not any(parameter.requires_grad for parameter in loaded.teacher.parameters())
    assert loaded.config.teacher_config["hidden_sizes"] == [16, 24]


def test_a_config_without_a_teacher_is_refused():
    with pytest.raises(ValueError, match="model.teacher_name_or_path"):
        FeatureDistillForPreTraining(FeatureDistillConfig(backbone_config=TINY_RESNET))


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> Path:
    """A stand-in for an hfssl run: a full-model config.json beside the exported encoder/ (grey, 16 px)."""
    run = tmp_path_factory.mktemp("teacher-run")
    ResNetModel(ResNetConfig(**{**TEACHER, "num_channels": 1})).save_pretrained(run / "encoder")
    ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.3], image_std=[0.4]).save_pretrained(run / "encoder")
    (run / "config.json").write_text('{"model_type": "hfssl_simclr"}')
    return run


def test_a_resumed_run_ends_with_the_uninterrupted_runs_weights_and_refuses_a_changed_teacher(tmp_path, teacher_run):
    tiny = "{model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 8, hidden_sizes: [8, 16], depths: [1, 1]}"
    recipe = load_recipe(REPO / "recipes" / "feature_distill" / "digits.yaml", [
        f"model.backbone_config={tiny}", f"model.teacher_name_or_path={teacher_run}", "model.projection_hidden_dim=16",
        "train.batch_size=16", "train.max_steps=4", "train.checkpoint_every=2", "train.progress_bar=false",
        "train.knn_every=null", "train.mixed_precision=no", "eval.protocols=[]"])
    full = train(recipe, tmp_path / "full")
    assert full.model.config.teacher_config["hidden_sizes"] == [16, 24]  # read from the run's encoder/
    checkpoint = full.output_dir / "checkpoints" / "step-00000002"
    assert not any(name.startswith("teacher.") for name in load_file(checkpoint / "model.safetensors"))
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint, resumed_dir / "checkpoints" / checkpoint.name)
    resumed = train(recipe, resumed_dir, resume=True)
    assert resumed.resumed_from is not None and resumed.resumed_from.name == checkpoint.name
    expected, actual = load_file(full.output_dir / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    middle = load_file(checkpoint / "model.safetensors")
    assert expected.keys() == actual.keys() and not any(name.startswith("teacher.") for name in expected)
    assert any(not torch.equal(middle[name], expected[name]) for name in expected)
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    # The teacher's weights change at its path: continuing would not be exact, so it is refused.
    changed = ResNetModel(ResNetConfig(**{**TEACHER, "num_channels": 1}))
    changed.save_pretrained(teacher_run / "encoder")
    again = tmp_path / "again"
    (again / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint, again / "checkpoints" / checkpoint.name)
    with pytest.raises(ValueError, match="holds other weights than when the checkpoint was written"):
        train(recipe, again, resume=True)


def test_views_normalised_otherwise_than_the_teacher_are_refused(teacher_run):
    from hfssl.settings import RecipeError

    with pytest.raises(RecipeError, match=r"views.mean is \[0.5\] but the teacher .* set views.mean=\[0.3\]"):
        load_recipe(REPO / "recipes" / "feature_distill" / "digits.yaml",
                    [f"model.teacher_name_or_path={teacher_run}", "views.mean=[0.5]"])
