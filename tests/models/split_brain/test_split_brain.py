"""Split-brain: the one block-diagonal ResNet equals two separate half-width ResNets on L and ab, concatenated (the
paper's representation); its block structure survives training steps exactly; the two losses against the l2
formula on Lab computed by the CIE formulas; refused configs; and a short real emoji run whose export, fed as the
card says in a process without hfssl, gives hfssl's own features."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import ResNetConfig, ResNetModel

from hfssl.data.images import read_pixels
from hfssl.models.split_brain import SplitBrainConfig, block_mask
from hfssl.pipeline import run
from hfssl.recipe import load_recipe
from hfssl.training.trainer import train
from hfssl.views import build_eval_transform
from lab_card import FAST, REPO, card_snippet_features
from lab_reference import naive_normalised_lab
from tiny import TINY_RESNET, tiny_model

RECIPE = REPO / "recipes" / "split_brain" / "emoji.yaml"


def _half(model: torch.nn.Module, which: int) -> ResNetModel:
    """Half ``which`` (0: the L network, 1: the ab network) of the merged backbone as a ResNet of its own."""
    merged = model.backbone.config
    config = ResNetConfig(**{**merged.to_dict(), "num_channels": 1 if which == 0 else 2,
                             "embedding_size": merged.embedding_size // 2,
                             "hidden_sizes": [size // 2 for size in merged.hidden_sizes]})
    half = ResNetModel(config).eval()
    state = {}
    for name, value in model.backbone.state_dict().items():
        if value.ndim == 0:
            state[name] = value
            continue
        rows = slice(0, value.shape[0] // 2) if which == 0 else slice(value.shape[0] // 2, None)
        if value.ndim == 4:
            split = 1 if name.startswith("embedder.") else value.shape[1] // 2
            columns = slice(0, split) if which == 0 else slice(split, None)
            value = value[rows, columns]
        else:
            value = value[rows]
        state[name] = value
    half.load_state_dict(state)
    return half


def test_the_backbone_is_two_separate_half_networks_on_l_and_ab_concatenated():
    model = tiny_model("split_brain")
    with torch.no_grad():  # BatchNorm statistics that are not the initial ones, so the check covers them too
        for module in model.backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(0))
                module.running_var.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(1))
    model.eval()
    lab = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        merged = model.backbone(pixel_values=lab, output_hidden_states=True)
        left = _half(model, 0)(pixel_values=lab[:, :1], output_hidden_states=True)
        right = _half(model, 1)(pixel_values=lab[:, 1:], output_hidden_states=True)
        masked = model.encode(lab)
    for stage, (both, l_net, ab_net) in enumerate(zip(merged.hidden_states, left.hidden_states, right.hidden_states)):
        torch.testing.assert_close(both, torch.cat([l_net, ab_net], dim=1), atol=1e-5, rtol=0, msg=f"stage {stage}")
    torch.testing.assert_close(merged.pooler_output, torch.cat([left.pooler_output, right.pooler_output], dim=1),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(masked.last_hidden_state, merged.last_hidden_state)


def test_the_block_structure_survives_adamw_steps_with_weight_decay_exactly():
    model = tiny_model("split_brain").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    for step in range(2):
        optimizer.zero_grad()
        model(pixel_values=images).loss.backward()
        for name, parameter in model.backbone.named_parameters():
            if parameter.ndim == 4:
                mask = block_mask(parameter.shape, 1 if name.startswith("embedder.") else parameter.shape[1] // 2)
                assert not (parameter.grad * (1 - mask)).any(), f"{name} got an off-block gradient"
        optimizer.step()
        for name, parameter in model.backbone.named_parameters():
            if parameter.ndim == 4:
                mask = block_mask(parameter.shape, 1 if name.startswith("embedder.") else parameter.shape[1] // 2)
                assert not (parameter.detach() * (1 - mask)).any(), f"{name} left its blocks at step {step}"
                assert (parameter.detach() * mask).any()


def test_losses_are_the_mean_squared_errors_of_both_cross_channel_predictions():
    model = tiny_model("split_brain").eval()
    rgb = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    lab = naive_normalised_lab(rgb)
    with torch.no_grad():
        outputs = model(pixel_values=(rgb - 0.5) / 0.5)
        result = model.get_reconstructions((rgb - 0.5) / 0.5, torch.Generator())
    color, lightness = outputs.predicted_color.double(), outputs.predicted_lightness.double()
    color_squares = [(color[n, c, i, j] - lab[n, 1 + c, i, j]) ** 2
                     for n in range(2) for c in range(2) for i in range(16) for j in range(16)]
    lightness_squares = [(lightness[n, 0, i, j] - lab[n, 0, i, j]) ** 2
                         for n in range(2) for i in range(16) for j in range(16)]
    assert float(outputs.color_loss) == pytest.approx(float(sum(color_squares) / len(color_squares)), rel=1e-4)
    assert float(outputs.lightness_loss) == pytest.approx(float(sum(lightness_squares) / len(lightness_squares)),
                                                          rel=1e-4)
    assert float(outputs.loss) == pytest.approx(float(outputs.color_loss + outputs.lightness_loss))
    # The reconstruction: the whole Lab image, predicted channel group by channel group.
    torch.testing.assert_close(result.original.double(), lab, atol=1e-4, rtol=0)
    torch.testing.assert_close(result.reconstructed, torch.cat([outputs.predicted_lightness, outputs.predicted_color], 1))
    torch.testing.assert_close(result.images("original", (0.5,) * 3, (0.5,) * 3), rgb, atol=1e-4, rtol=0)


def test_backbones_that_cannot_split_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"needs a 'resnet' backbone_config.*LayerNorm over channels"):
        SplitBrainConfig(backbone_config={"model_type": "convnext", "hidden_sizes": [16, 32], "depths": [1, 1]})
    with pytest.raises(ValueError, match=r"hidden_sizes \[16, 33\] must be multiples of 2"):
        SplitBrainConfig(backbone_config=dict(TINY_RESNET, hidden_sizes=[16, 33]))
    with pytest.raises(ValueError, match=r"multiples of 8 \(bottleneck"):
        SplitBrainConfig(backbone_config=dict(TINY_RESNET, layer_type="bottleneck", hidden_sizes=[16, 36]))
    with pytest.raises(ValueError, match=r"from scratch"):
        SplitBrainConfig(backbone_config=TINY_RESNET, backbone_name_or_path="some/resnet")


def test_emoji_run_resumes_exactly_evaluates_and_its_export_fed_as_the_card_says_gives_hfssls_features(tmp_path):
    """4 steps on builtin:emoji through the whole pipeline, and again from the step-2 checkpoint (the same final
    weights, off-block zeros included); the reconstruction protocol, the Lab card; the card's snippet on 4 real
    test images in a process without hfssl gives the model's own (concatenated) features."""
    recipe = load_recipe(RECIPE, [*FAST, "train.max_steps=4", "train.checkpoint_every=2",
                                  "eval.protocols=[reconstruction]"])
    result = run(recipe, tmp_path / "run")
    run_dir = tmp_path / "run"
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(run_dir / "checkpoints" / "step-00000002", resumed_dir / "checkpoints" / "step-00000002")
    train(recipe, resumed_dir, resume=True)
    expected, actual = load_file(run_dir / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    rows = json.loads((run_dir / "eval_results.json").read_text())["results"]
    assert next(row for row in rows if row["protocol"] == "reconstruction")["mse"] > 0
    card = (run_dir / "README.md").read_text()
    assert "Warning: this encoder does not take RGB" in card and "trained on CIE Lab," in card
    assert json.loads((run_dir / "encoder" / "config.json").read_text())["hidden_sizes"] == [8, 16]
    model = result.model.eval()
    pixels = read_pixels(result.data.eval_test_dataset, 0, 4)
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    with torch.no_grad():
        expected = model.get_embeddings(transform(torch.from_numpy(pixels)))
    report = card_snippet_features(run_dir, pixels.transpose(0, 2, 3, 1), tmp_path)
    assert report["hfssl_imported"] is False
    torch.testing.assert_close(report["embeddings"], expected, atol=1e-4, rtol=1e-4)
