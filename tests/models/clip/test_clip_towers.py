"""CLIP's patch dropout (FLIP) and partial unlocking of locked towers: which tokens the image tower sees,
which parameters train and in which mode, and the errors that name the recipe key."""

from __future__ import annotations

import pytest
import torch

from hfssl.models.clip import CaptionInputs, HfsslCLIPConfig, HfsslCLIPForPreTraining, check_recipe
from hfssl.models.clip.towers import kept_patches
from hfssl.recipe import recipe_from_dict
from hfssl.settings import RecipeError
from hfssl.training.optim import build_optimizer
from hfssl.views import ViewInputs, build_views
from test_clip import TINY_CLIP_TEXT, TINY_CLIP_VISION
from tiny import TINY, TINY_CONVNEXT, TINY_TEXT_TOWER, TINY_VIT, tiny_inputs

TINY_DEIT = {**TINY_VIT, "model_type": "deit"}
#: 16 px images in 4 px patches.
PATCHES = 16


def _model(**kwargs: object) -> HfsslCLIPForPreTraining:
    torch.manual_seed(0)
    return HfsslCLIPForPreTraining(HfsslCLIPConfig(**{**TINY["clip"][0], **kwargs}))


# ---------------------------------------------------------------- patch dropout


@pytest.mark.parametrize(("towers", "first_layer", "prefix"), [
    ({"vision_config": TINY_VIT}, "layers.0", 1),
    ({"vision_config": TINY_DEIT}, "layers.0", 2),  # [CLS] and the distillation token are both kept
    ({"vision_config": TINY_CLIP_VISION, "text_config": TINY_CLIP_TEXT}, "encoder.layers.0", 1),  # a CLIPModel
])
def test_patch_dropout_cuts_the_tokens_in_training_and_keeps_the_prefix(towers: dict, first_layer: str,
                                                                        prefix: int) -> None:
    model = _model(**towers, patch_dropout=0.5)
    tower = model.backbone.vision_model
    hooks = len(tower.embeddings._forward_hooks)
    embedded, seen = [], []
    tower.embeddings.register_forward_hook(lambda module, args, output: embedded.append(output))
    tower.get_submodule(first_layer).register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True)
    inputs = tiny_inputs("clip")
    noise = torch.rand(4, PATCHES, generator=torch.Generator().manual_seed(5))
    model.train()(**inputs, patch_dropout_noise=noise)
    assert seen[-1].shape == (4, prefix + 8, 32)  # 1 (+1) + floor(0.5 * 16) tokens
    full = embedded[-1]  # (4, prefix + 16, 32), before the cut
    if hasattr(tower, "pre_layrnorm"):
        full = tower.pre_layrnorm(full)  # CLIP normalises each token between the embeddings and layer 0
    torch.testing.assert_close(seen[-1][:, :prefix], full[:, :prefix])
    for row in range(4):  # the kept patches are the eight of largest noise, each one an original token
        expected = full[row, prefix:][noise[row].topk(8).indices.sort().values]
        kept = seen[-1][row, prefix:]
        torch.testing.assert_close(kept[kept[:, 0].argsort()], expected[expected[:, 0].argsort()])
    model.eval()(**inputs, patch_dropout_noise=noise)
    assert seen[-1].shape == (4, prefix + PATCHES, 32)  # eval: every patch, the noise is ignored
    model.train()
    assert model.get_image_features(inputs["pixel_values"]).shape == (4, 16)  # without noise: every patch
    assert seen[-1].shape == (4, prefix + PATCHES, 32)
    assert len(tower.embeddings._forward_hooks) == hooks + 1  # the test's own: the model's hook is gone


def test_without_noise_training_draws_its_own_and_the_export_has_no_hook() -> None:
    model = _model(patch_dropout=0.75).train()
    seen = []
    model.backbone.vision_model.layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    model(**tiny_inputs("clip"))
    assert seen[-1] == (4, 1 + 4, 32)  # floor(0.25 * 16) patches
    dual, _ = model.get_dual_encoder(16, (0.5,) * 3, (0.25,) * 3, 3)
    assert not dual.vision_model.embeddings._forward_hooks
    assert dual.vision_model(pixel_values=tiny_inputs("clip")["pixel_values"]).last_hidden_state.shape == (4, 17, 32)


def test_patch_dropout_trains_every_parameter_and_the_loss_falls() -> None:
    model = _model(patch_dropout=0.5).train()
    inputs = tiny_inputs("clip", batch_size=8)
    model(**inputs).loss.backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.requires_grad and parameter.grad is None]
    assert not missing
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    fixed = torch.rand(8, PATCHES, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(**inputs, patch_dropout_noise=fixed).loss.item()
    for _ in range(8):
        optimizer.zero_grad()
        model(**inputs, patch_dropout_noise=torch.rand(8, PATCHES, generator=generator)).loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = model(**inputs, patch_dropout_noise=fixed).loss.item()
    assert after < 0.85 * before  # deterministic: 2.77 -> 1.98


def test_the_input_builder_draws_the_noise_from_the_steps_generator() -> None:
    """Same generator state -> same noise -> the same patches and features; another seed -> other patches."""
    from hfssl.models.clip import load_tokenizer
    from hfssl.views.config import ViewsConfig

    config = HfsslCLIPConfig(**TINY["clip"][0], patch_dropout=0.5)
    views = ViewInputs(build_views("single_view", ViewsConfig(num_views=1), 16, 3))
    builder = CaptionInputs(views, load_tokenizer(config), 8, config.vision_config)
    batch = {"pixels": torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8), "labels": torch.zeros(4),
             "texts": ["a cat", "a dog", "a red car", "flags"]}
    first, again, other = (builder(batch, torch.Generator().manual_seed(seed)) for seed in (7, 7, 8))
    assert first["patch_dropout_noise"].shape == (4, PATCHES)
    assert torch.equal(first["patch_dropout_noise"], again["patch_dropout_noise"])
    assert not torch.equal(first["patch_dropout_noise"], other["patch_dropout_noise"])
    model = HfsslCLIPForPreTraining(config).train()  # the ViT tower has no dropout: only the patches vary
    features = [model.get_image_features(inputs["pixel_values"], model.training_patch_noise(
        inputs["pixel_values"], inputs["patch_dropout_noise"])) for inputs in (first, again, other)]
    assert torch.equal(features[0], features[1]) and not torch.allclose(features[0], features[2])
    off = CaptionInputs(views, load_tokenizer(config), 8)
    assert "patch_dropout_noise" not in off(batch, torch.Generator().manual_seed(7))


@pytest.mark.parametrize(("total", "ratio", "expected"), [(16, 0.5, 8), (64, 0.75, 16), (10, 0.7, 3), (4, 0.9, 1),
                                                          (16, 0.0, 16)])
def test_kept_patches_follow_open_clips_rule(total: int, ratio: float, expected: int) -> None:
    assert kept_patches(total, ratio) == expected


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"vision_config": TINY_CONVNEXT, "patch_dropout": 0.5}, r"model\.patch_dropout=0\.5 .*'convnext', a convolutional"),
    ({"patch_dropout": 1.0}, r"model\.patch_dropout must be .* \[0, 1\)"),
    ({"patch_dropout": -0.1}, r"model\.patch_dropout must be"),
    ({"unlock_last_layers_text": 1}, r"model\.unlock_last_layers_text=1 .* model\.lock_text_tower is false"),
    ({"lock_image_tower": True, "unlock_last_layers_image": 3}, r"model\.unlock_last_layers_image=3 .* has 2 layers"),
    ({"lock_text_tower": True, "unlock_last_layers_text": -1}, r"model\.unlock_last_layers_text must be a whole"),
    ({"lock_text_tower": True, "unlock_last_layers_text": 1.5}, r"model\.unlock_last_layers_text must be a whole"),
])
def test_bad_values_name_the_key_and_the_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HfsslCLIPConfig(**{**TINY["clip"][0], **kwargs})


# ---------------------------------------------------------------- partial unlocking

#: (towers, which tower is locked, N, the parameter-name prefixes of that tower that train), written out by hand.
UNLOCK_CASES = [
    ({}, "text", 1, ("encoder.layer.1.", "pooler.")),  # BERT
    ({}, "text", 2, ("encoder.layer.", "pooler.")),  # every layer; the embeddings stay frozen
    ({}, "image", 1, ("layers.1.", "layernorm.", "pooler.")),  # ViT
    ({"vision_config": TINY_CONVNEXT}, "image", 1, ("encoder.stages.1.", "layernorm.")),  # ConvNeXt: the last stage
    ({"vision_config": TINY_CLIP_VISION, "text_config": TINY_CLIP_TEXT}, "image", 1,
     ("encoder.layers.1.", "post_layernorm.")),
    ({"vision_config": TINY_CLIP_VISION, "text_config": TINY_CLIP_TEXT}, "text", 1,
     ("encoder.layers.1.", "final_layer_norm.")),
]


def _unlocked(towers: dict, side: str, count: int) -> tuple[HfsslCLIPForPreTraining, torch.nn.Module]:
    model = _model(**towers, **{f"lock_{side}_tower": True, f"unlock_last_layers_{side}": count})
    return model, (model.backbone.vision_model if side == "image" else model.backbone.text_model)


@pytest.mark.parametrize(("towers", "side", "count", "prefixes"), UNLOCK_CASES)
def test_exactly_the_last_layers_and_what_follows_them_train(towers: dict, side: str, count: int,
                                                             prefixes: tuple[str, ...]) -> None:
    model, tower = _unlocked(towers, side, count)
    trainable = {name for name, parameter in tower.named_parameters() if parameter.requires_grad}
    expected = {name for name, _ in tower.named_parameters() if name.startswith(prefixes)}
    assert trainable == expected and expected
    model.train()
    for name, module in tower.named_modules():
        if name and any(param.requires_grad for param in module.parameters(recurse=False)):
            assert module.training, name
        elif name and next(module.parameters(recurse=False), None) is not None:
            assert not module.training, name  # frozen modules stay in inference mode
    assert not tower.training  # the tower itself (and its frozen stem) in eval mode
    model.eval()
    assert not any(module.training for module in model.modules())
    model.train()
    model(**tiny_inputs("clip") if "text_config" not in towers else _clip_inputs()).loss.backward()
    assert all(parameter.grad is not None for name, parameter in tower.named_parameters() if name in expected)
    assert all(parameter.grad is None for name, parameter in tower.named_parameters() if name not in expected)


def _clip_inputs() -> dict[str, torch.Tensor]:
    inputs = tiny_inputs("clip")
    inputs["input_ids"] = inputs["input_ids"] % 1000 + 200  # CLIP's text tower: no 102 (its eos) inside
    return inputs


def test_the_engines_optimiser_updates_only_the_unlocked_layers() -> None:
    """``build_optimizer`` (the engine's) over the model: the unlocked layers and the trained parts change, the
    frozen part of the locked tower stays bit-identical; the declared ``unlocked_layers`` group is the unlocked set."""
    model, tower = _unlocked({}, "text", 1)
    recipe = recipe_from_dict({"method": "clip", "model": TINY["clip"][0], "data": {"source": "captions"},
                               "optim": {"name": "adamw", "lr": 0.01, "parameter_groups": {
                                   "unlocked_layers": {"lr_scale": 0.5}}}}, check_model=False)
    optimizer = build_optimizer(model, recipe.optim)
    rates = {(group["group"], group["lr"]) for group in optimizer.param_groups}
    assert ("unlocked_layers", 0.005) in rates and ("default", 0.01) in rates, rates
    (group,) = model.parameter_groups()
    assert set(group.parameters) == {f"backbone.text_model.{name}" for name, parameter in tower.named_parameters()
                                     if parameter.requires_grad}
    before = {name: value.clone() for name, value in model.state_dict().items()}
    model.train()(**tiny_inputs("clip")).loss.backward()
    optimizer.step()
    after = model.state_dict()
    for name, value in before.items():
        changed = not torch.equal(value, after[name])
        if name.startswith("backbone.text_model."):
            assert changed == name.startswith(("backbone.text_model.encoder.layer.1.", "backbone.text_model.pooler.")), name
        elif name.endswith(("weight", "bias")) and "vision_model" in name:
            assert changed, name


def test_a_saved_model_keeps_its_unlocked_layers_trainable(tmp_path) -> None:  # noqa: ANN001
    model, _ = _unlocked({}, "text", 1)
    model.save_pretrained(tmp_path)
    loaded = HfsslCLIPForPreTraining.from_pretrained(tmp_path)
    assert loaded.config.unlock_last_layers_text == 1
    assert ({name for name, p in loaded.named_parameters() if p.requires_grad}
            == {name for name, p in model.named_parameters() if p.requires_grad})


def test_a_pretrained_towers_depth_is_checked_when_its_folder_is_read() -> None:
    """MiniLM has 6 layers; the recipe check (no folder read) lets 5 through, the real config refuses 7."""
    recipe = recipe_from_dict({"method": "clip", "model": {
        "vision_config": TINY_VIT, "text_name_or_path": "builtin:all-MiniLM-L6-v2", "lock_text_tower": True,
        "unlock_last_layers_text": 5, "projection_dim": 8}, "data": {"source": "captions", "image_size": 16}},
        check_model=False)
    check_recipe(recipe)
    assert HfsslCLIPConfig(**recipe.model).unlock_last_layers_text == 5
    with pytest.raises(ValueError, match=r"unlock_last_layers_text=7 .* has 6 layers"):
        HfsslCLIPConfig(**{**recipe.model, "unlock_last_layers_text": 7})
    recipe.model["lock_text_tower"] = False
    with pytest.raises(RecipeError, match="lock_text_tower is false"):
        check_recipe(recipe)
