"""DINO: what the model computes from its crops, its training-only centre, schedules and the last-layer
freeze, exact resume through the real engine, the card's attention maps, and a short digits run that does
not collapse. SwAV, the other multi-crop method, is in tests/models/swav/.

The two-process checks (centre, loss and gradients against one process on the concatenated batch) are in
tests/models/test_multicrop_distributed.py, with SwAV's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import hfssl  # noqa: F401 - registers the methods
from hfssl.losses import DINOLoss
from hfssl.recipe import load_recipe
from hfssl.views import build_eval_transform
from collapse import assert_short_digits_run_does_not_collapse
from resume_check import resume_matches
from tiny import TINY_RESNET, TINY_VIT, tiny_inputs, tiny_model

REPO = Path(__file__).resolve().parents[3]
FAST = ["train.progress_bar=false", "train.trackers=[]", "train.knn_every=null", "eval.protocols=[]"]
TINY_DIGITS_RESNET = "{model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 8, " \
                     "hidden_sizes: [8, 16], depths: [1, 1]}"
TINY_DIGITS_VIT = "{model_type: vit, num_channels: 1, image_size: 16, patch_size: 4, hidden_size: 32, " \
                  "num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64}"


# ---------------------------------------------------------------- DINO


@pytest.mark.parametrize("backbone", ["vit", "resnet"])
def test_dino_teacher_sees_global_crops_only_and_the_loss_is_dino_loss(backbone):
    overrides = {} if backbone == "vit" else {"backbone_config": TINY_RESNET, "head_batch_norm": True}
    model = tiny_model("dino", **overrides).train()
    model.center.copy_(torch.linspace(-1, 1, 64))
    seen = []
    model.teacher_backbone.register_forward_hook(lambda module, args, kwargs, out: seen.append(kwargs["pixel_values"].shape),
                                                 with_kwargs=True)
    inputs = tiny_inputs("dino", batch_size=4)
    outputs = model(**inputs)
    assert seen == [torch.Size([8, 3, 16, 16])]  # 2 global crops x 4 images, never the 8 px local crops
    assert outputs.student_logits.shape == (4, 4, 64) and outputs.teacher_logits.shape == (2, 4, 64)
    expected = DINOLoss()(outputs.student_logits, outputs.teacher_logits, model.center, 0.1, model.teacher_temperature)
    torch.testing.assert_close(outputs.loss, expected)
    # The student's first rows are its global crops in the teacher's order: a fresh model (teacher =
    # student) in evaluation mode gives equal logits for them. (After a training pass the BatchNorm
    # running statistics differ: the student's also saw the local crops.)
    fresh = tiny_model("dino", **overrides).eval()
    outputs = fresh(**inputs)
    torch.testing.assert_close(outputs.student_logits[:2], outputs.teacher_logits, rtol=1e-5, atol=1e-5)


def test_dino_centre_moves_after_the_step_with_the_mean_of_every_micro_batch():
    model = tiny_model("dino").train()
    start = torch.randn(64, generator=torch.Generator().manual_seed(3))
    model.center.copy_(start)
    first = model(**tiny_inputs("dino", batch_size=4, seed=1))
    assert torch.equal(model.center, start)  # the loss of a step uses the centre from before the step
    second = model(**tiny_inputs("dino", batch_size=2, seed=2))  # a second micro-batch, of another size
    model.on_train_step_end(1, {"teacher_momentum": 0.99})
    teacher_rows = torch.cat([first.teacher_logits.reshape(-1, 64), second.teacher_logits.reshape(-1, 64)])
    torch.testing.assert_close(model.center, 0.9 * start + 0.1 * teacher_rows.mean(dim=0))
    # Evaluation passes leave it alone.
    model.eval()
    center = model.center.clone()
    model(**tiny_inputs("dino"))
    model.on_train_step_end(2, {"teacher_momentum": 0.99})
    assert torch.equal(model.center, center)


def test_dino_schedules_temperature_and_freezes_the_last_layer():
    model = tiny_model("dino")
    schedules = model.schedules()
    assert set(schedules) == {"teacher_momentum", "teacher_temperature", "weight_decay"}
    temperature = schedules["teacher_temperature"]
    assert temperature(0, 100) == pytest.approx(0.04)
    assert temperature(15, 100) == pytest.approx(0.055)
    assert temperature(30, 100) == temperature(100, 100) == pytest.approx(0.07)
    assert schedules["weight_decay"](0, 100) == pytest.approx(0.04)
    assert schedules["weight_decay"](100, 100) == pytest.approx(0.4)
    assert schedules["teacher_momentum"](0, 100) == pytest.approx(0.996)
    assert schedules["teacher_momentum"](100, 100) == pytest.approx(1.0)
    # The scheduled temperature reaches the loss through on_train_step_start.
    model.train()
    inputs = tiny_inputs("dino")
    model.on_train_step_start(1, {"teacher_temperature": 0.04})
    sharp = model(**inputs)
    torch.testing.assert_close(sharp.loss, DINOLoss()(sharp.student_logits, sharp.teacher_logits, model.center, 0.1, 0.04))
    (freeze,) = model.parameter_freezes()
    assert freeze.epochs == 1.0
    assert [name for name, _ in model.named_parameters() if freeze.matches(name)] == ["head.last_layer.weight"]
    assert tiny_model("dino", freeze_last_layer_epochs=0).parameter_freezes() == []


def test_dino_last_layer_is_weight_normalised_with_norm_one():
    model = tiny_model("dino")
    with torch.no_grad():
        model.head.last_layer.weight.mul_(torch.rand(64, 1) * 10 + 0.1)  # any row norms
    features = torch.randn(5, 16)
    expected = features @ F.normalize(model.head.last_layer.weight, dim=1).t()
    torch.testing.assert_close(model.head.last_layer(features), expected)
    unnormalised = tiny_model("dino", normalize_last_layer=False)
    assert isinstance(unnormalised.head.last_layer, torch.nn.Linear)


def test_dino_centre_is_training_state_only(tmp_path):
    model = tiny_model("dino")
    model.center.fill_(0.5)
    assert set(model.training_state_dict()) == {"center"}
    model.save_pretrained(tmp_path)
    assert not any("center" in name for name in load_file(tmp_path / "model.safetensors"))
    from transformers import AutoModel

    loaded = AutoModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.center, torch.zeros(64))  # reset to its starting value, not uninitialised memory


def test_dino_rejects_inputs_without_two_crops():
    model = tiny_model("dino")
    with pytest.raises(ValueError, match="num_local_views"):
        model(pixel_values=torch.randn(2, 1, 3, 16, 16))
    with pytest.raises(ValueError, match="local_pixel_values"):
        model(pixel_values=torch.randn(2, 2, 3, 16, 16), local_pixel_values=torch.randn(3, 2, 3, 8, 8))


# ---------------------------------------------------------------- exact resume through the engine


def test_dino_resume_is_bit_exact_with_centre_schedules_and_last_layer_freeze(tmp_path):
    """6 steps of 32 digits (44 steps an epoch), the last layer frozen for 0.1 epoch (4 steps), the
    teacher temperature warming up over half the run; resuming at step 3 gives the same weights and centre."""
    overrides = [*FAST, f"model.backbone_config={TINY_DIGITS_RESNET}", "model.head_hidden_dim=32",
                 "model.head_bottleneck_dim=16", "model.head_output_dim=64", "model.freeze_last_layer_epochs=0.1",
                 "model.teacher_temperature_warmup_fraction=0.5", "train.batch_size=32", "train.max_steps=6",
                 "train.checkpoint_every=3", "train.log_every=1", "train.monitor_every=2"]
    recipe = load_recipe(REPO / "recipes" / "dino" / "digits.yaml", overrides)
    full, middle = resume_matches(recipe, tmp_path, ("center",))
    assert not torch.equal(middle["center"], full.model.center)  # the centre moved: the comparison has teeth
    # Frozen at step 3: the student's last layer is still its starting value, which the teacher shares
    # exactly (EMA of a constant); after step 4 it moves.
    at_three = load_file(full.output_dir / "checkpoints" / "step-00000003" / "model.safetensors")
    assert torch.equal(at_three["head.last_layer.weight"], at_three["teacher_head.last_layer.weight"])
    assert not torch.equal(at_three["head.mlp.0.weight"], at_three["teacher_head.mlp.0.weight"])
    final = full.model.state_dict()
    assert not torch.equal(final["head.last_layer.weight"], at_three["head.last_layer.weight"])


# ---------------------------------------------------------------- the card shows DINO's attention maps


def test_dino_with_a_vit_writes_attention_maps_into_its_card(tmp_path):
    from hfssl.pipeline import run

    overrides = [*FAST, f"model.backbone_config={TINY_DIGITS_VIT}", "model.head_hidden_dim=32",
                 "model.head_bottleneck_dim=16", "model.head_output_dim=64", "model.head_batch_norm=false",
                 "model.freeze_last_layer_epochs=0", "train.batch_size=32", "train.max_steps=2", "eval.protocols=[knn]", "eval.max_train_samples=200",
                 "eval.max_test_samples=50"]
    recipe = load_recipe(REPO / "recipes" / "dino" / "digits.yaml", overrides)
    run(recipe, tmp_path / "run")
    picture = tmp_path / "run" / "images" / "attention_maps.png"
    assert picture.is_file()
    card = (tmp_path / "run" / "README.md").read_text()
    assert "## Attention maps" in card and "images/attention_maps.png" in card
    assert (tmp_path / "run" / "encoder" / "config.json").is_file()


def test_attention_maps_are_the_cls_rows_of_the_last_layer():
    import datasets

    from hfssl.models.dino.pictures import cls_attention_maps

    recipe = load_recipe(REPO / "recipes" / "dino" / "digits.yaml")
    pixels = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    dataset = datasets.Dataset.from_dict({"pixels": pixels.numpy(), "label": [0, 1, 2]},
                                         features=datasets.Features({"pixels": datasets.Array3D((1, 16, 16), "uint8"),
                                                                     "label": datasets.Value("int64")}))
    model = tiny_model("dino", backbone_config={**TINY_VIT, "num_channels": 1}).eval()
    implementation = model.backbone.config._attn_implementation
    originals, attentions = cls_attention_maps(model.backbone, recipe, dataset, count=3)
    assert originals.shape == (3, 16, 16, 1) and attentions.shape == (2, 3, 16, 16)
    assert model.backbone.config._attn_implementation == implementation  # eager only for the picture
    # The reference: eager attention probabilities of the last layer, [CLS] row, patch columns.
    transform = build_eval_transform(recipe.views, 16, 1)
    model.backbone.set_attn_implementation("eager")
    with torch.no_grad():
        reference = model.backbone(pixel_values=transform(pixels), output_attentions=True).attentions[-1][:, :, 0, 1:]
    expected = reference.reshape(3, 2, 4, 4).repeat_interleave(4, dim=2).repeat_interleave(4, dim=3).transpose(0, 1)
    torch.testing.assert_close(torch.from_numpy(attentions), expected)
    # Each head's map is a distribution over the 16 patches, less the [CLS] token's attention to itself.
    sums = attentions.sum(axis=(2, 3)) / 16
    assert ((sums > 0) & (sums < 1)).all()


# ---------------------------------------------------------------- a short digits run does not collapse


#: The digits recipe freezes the last layer for one epoch (22 steps here), longer than the 12-step run, which
#: is refused: half an epoch keeps the run as it was (the frozen part trains in the last step only).
SHORT_FREEZE = {"dino": ["model.freeze_last_layer_epochs=0.5"]}


@pytest.mark.parametrize("method", ["dino"])
def test_short_digits_run_does_not_collapse(method, tmp_path):
    assert_short_digits_run_does_not_collapse(method, tmp_path, SHORT_FREEZE[method])
