"""Model cards: metadata checked with huggingface_hub's parsers, body contents, runnable snippets, pictures."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from PIL import Image
from transformers import AutoModel

import hfssl  # noqa: F401 - registers the Auto classes
from hfssl.hub import run as run_module
from hfssl.hub.card import build_card, describe_data_source, validate_card, write_model_card
from hfssl.plots import project_2d, save_projection_plot, save_reconstruction_plot
from hub_fixtures import (
    BLOCK_HFSSL,
    EVAL_RESULTS,
    make_run,
    python_blocks,
    run_python,
    snapshot,
    subprocess_env,
    write_text_encoder,
)


def _written_card(run: Path, tmp_path: Path, **kwargs) -> tuple[str, ModelCard]:
    path = write_model_card(run, output_path=tmp_path / "README.md", **kwargs)
    return path.read_text(), ModelCard.load(path)


def test_metadata_has_tags_license_pipeline_and_one_eval_result_per_metric(tiny_run, tmp_path):
    text, card = _written_card(tiny_run, tmp_path, repo_id="alice/simclr-digits")
    data = card.data
    assert data.library_name == "hfssl"
    assert {"hfssl", "simclr", "self-supervised-learning", "transformers"} <= set(data.tags)
    assert data.license == "mit"  # the recipe's hub.license
    assert data.pipeline_tag == "image-feature-extraction"
    assert data.datasets is None  # builtin:digits has no Hub copy
    assert data.base_model is None
    assert data.model_name == "simclr-digits"
    # One EvalResult per metric of each results entry, values exactly as in eval_results.json.
    expected = {(entry["protocol"], entry.get("k"), key): entry[key]
                for entry in EVAL_RESULTS["results"] for key in ("top1", "top5")}
    found = {(result.metric_config, (result.metric_args or {}).get("k"),
              "top1" if result.metric_type == "accuracy" else "top5"): result.metric_value
             for result in data.eval_results}
    assert found == expected
    for result in data.eval_results:
        assert result.task_type == "image-classification"
        assert result.dataset_split == "test"
        assert result.dataset_name == "scikit-learn digits"
        assert result.metric_type in ("accuracy", "top_5_accuracy")
    # Baselines are in the body's table only.
    baseline_values = {entry["top1"] for entry in EVAL_RESULTS["baselines"]}
    assert not baseline_values & {result.metric_value for result in data.eval_results}
    assert "| kNN (k=20, T=0.07) | 94.7 | 90.8 | 99.2 | 98.6 |" in text
    assert "| Linear probe (C=0.1) | 96.1 | 94.2 | 100.0 | 99.7 |" in text
    validate_card(card)


def test_body_describes_model_data_recipe_and_citation(tiny_run, tmp_path):
    text, _ = _written_card(tiny_run, tmp_path, repo_id="alice/simclr-digits")
    assert "# SimCLR ResNet on digits" in text
    assert "https://arxiv.org/abs/2002.05709" in text
    assert "@inproceedings{chen2020simclr" in text
    encoder_parameters = sum(p.numel() for p in hfssl.SimCLRForPreTraining.from_pretrained(tiny_run).backbone.parameters())
    assert f"{encoder_parameters:,} parameters" in text
    assert "20 optimisation steps" in text  # read from the checkpoint's trainer_state.json
    # ... and what it cost, from the run's training.json
    record = json.loads((tiny_run / "training.json").read_text())
    assert record["steps"] == 20 and record["seconds"] == 42.0
    assert (f"trained in {record['seconds'] / 60:.1f} minutes on 1 process on {record['cpu_cores']} cores of "
            f"{record['device_name']} "
            f"({record['cpu_capability']}), {record['examples_per_second']:,.0f} examples/s, float32") in text
    assert "trained in 0.7 minutes" in text and "30 examples/s" in text
    assert "1,797 grey 8x8 images" in text
    # The full recipe, in a collapsible block, parses back to recipe.yaml.
    block = re.search(r"<details>.*?```yaml\n(.*?)```.*?</details>", text, flags=re.DOTALL).group(1)
    assert yaml.safe_load(block) == yaml.safe_load((tiny_run / "recipe.yaml").read_text())
    assert "| optim.lr | 0.001 |" in text
    assert "![PCA of test-set embeddings coloured by label](images/embeddings_2d.png)" in text
    assert "50 test images" in text  # from the PNG's own description
    assert "reconstructions.png" not in text
    assert 'repo_id = "alice/simclr-digits"' in text
    assert 'subfolder="encoder"' in text


def test_recipe_table_names_the_speed_options_the_run_used(tiny_run, tmp_path):
    text, _ = _written_card(tiny_run, tmp_path)
    assert "| train.mixed_precision |" in text
    assert "train.channels_last" not in text and "train.compile" not in text  # off: no row
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["train"].update(channels_last=True, compile=True, compile_mode="max-autotune")
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    text, _ = _written_card(run, tmp_path)
    assert "| train.channels_last | true |" in text
    assert "| train.compile | true (max-autotune mode) |" in text


def test_write_model_card_defaults_to_run_readme_and_links_only_existing_images(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "images")
    path = write_model_card(run)
    assert path == run / "README.md"
    text = path.read_text()
    assert "images/" not in text
    assert f'repo_id = "{run}"' in text  # no Hub id yet: the snippets load the run directory itself
    assert not list(run.glob(".*partial"))


def test_card_without_recipe_or_evaluation_still_valid(tmp_path):
    run = make_run(tmp_path / "bare", evaluation=None, images=False, training_state=False)
    (run / "recipe.yaml").unlink()
    text, card = _written_card(run, tmp_path)
    assert card.data.eval_results is None and "model-index" not in text
    assert card.data.license is None
    assert "No evaluation has been recorded yet" in text
    assert "Training recipe" not in text
    validate_card(card)


def test_mae_card_has_reconstructions_and_vit_cls_snippet(tiny_mae_run, tmp_path):
    text, card = _written_card(tiny_mae_run, tmp_path, repo_id="alice/mae-tiny")
    assert "masked-image-modeling" in card.data.tags and "mae" in card.data.tags
    assert "![Masked inputs, reconstructions and originals](images/reconstructions.png)" in text
    assert "outputs.last_hidden_state[:, 0]" in text
    assert "`ViTModel`" in text and "encoder + decoder" in text
    assert "75 %" in text  # the config's mask ratio


def test_hub_and_local_sources_in_metadata_and_body(tmp_path):
    hub = make_run(tmp_path / "hub", source="someone/street-scenes", evaluation=None, images=False, training_state=False)
    _, card = _written_card(hub, tmp_path / "a")
    assert card.data.datasets == ["someone/street-scenes"]
    local_source = str(tmp_path / "private-user-folder" / "my_images")
    local = make_run(tmp_path / "local", source=local_source, evaluation=None, images=False, training_state=False)
    text, card = _written_card(local, tmp_path / "b")
    assert card.data.datasets is None
    # The body names a local source by its last part only; the full recipe (uploaded as recipe.yaml
    # anyway) is quoted verbatim in its collapsible block.
    body = re.sub(r"<details>.*?</details>", "", text, flags=re.DOTALL)
    assert "`my_images`" in body and "| data.source | my_images |" in body and "private-user-folder" not in body
    assert describe_data_source("builtin:fashion_mnist").hub_id == "zalando-datasets/fashion_mnist"


def test_base_model_when_training_started_from_a_hub_backbone(tmp_path):
    run = make_run(tmp_path / "run", evaluation=None, images=False, training_state=False,
                   model_overrides={"backbone_name_or_path": "microsoft/resnet-18"})
    _, card = _written_card(run, tmp_path)
    assert card.data.base_model == "microsoft/resnet-18"


def test_encoder_card_is_short_loads_at_root_and_points_back(tiny_run):
    card = build_card(tiny_run, repo_id="alice/simclr-digits", encoder_repo_id="alice/simclr-digits-encoder",
                      encoder_card=True)
    text = str(card)
    assert card.data.library_name == "transformers"
    assert len(card.data.eval_results) == 6
    assert 'repo_id = "alice/simclr-digits-encoder"' in text and "subfolder" not in text
    assert "/alice/simclr-digits)" in text
    assert "Training recipe" not in text
    run_card = str(build_card(tiny_run, repo_id="alice/simclr-digits", encoder_repo_id="alice/simclr-digits-encoder"))
    assert 'repo_id = "alice/simclr-digits-encoder"' in run_card  # the plain-transformers snippet uses the encoder repo


def test_validate_card_rejects_broken_metadata(tiny_run):
    text = str(build_card(tiny_run, repo_id="alice/x"))
    with pytest.raises(ValueError, match="tags lack"):
        validate_card(text.replace("- self-supervised-learning\n", ""))
    with pytest.raises(ValueError, match="does not load with huggingface_hub.*model_index"):
        validate_card(text.replace("  results:\n", "  resultz:\n"))
    with pytest.raises(ValueError, match="no YAML metadata"):
        validate_card("# no metadata")


def test_card_generation_does_not_modify_the_run(tiny_run, tmp_path):
    before = snapshot(tiny_run)
    write_model_card(tiny_run, output_path=tmp_path / "README.md", repo_id="alice/x")
    assert snapshot(tiny_run) == before


def test_plain_transformers_snippets_run_without_hfssl_and_match_hfssl_features(tiny_run, tiny_mae_run, tmp_path):
    """The card's transformers snippets, pointed at the local runs, run in a process that cannot import
    hfssl; their embeddings equal hfssl's get_embeddings, and the pipeline's equal the model's."""
    script = [BLOCK_HFSSL, "import numpy, torch", "torch.set_num_threads(1)"]
    for name, run in (("simclr", tiny_run), ("mae", tiny_mae_run)):
        text = str(build_card(run, repo_id="alice/card-test"))
        blocks = python_blocks(text, "### With plain transformers")
        snippet = "\n".join(blocks[:2]).replace('repo_id = "alice/card-test"', f'repo_id = "{run}"')
        assert f'repo_id = "{run}"' in snippet and "pipeline_features" in snippet
        script.append(textwrap.dedent(f"""
            namespace = {{}}
            exec(compile({snippet!r}, "card-{name}", "exec"), namespace)
            numpy.save("{tmp_path}/{name}-pixels.npy", namespace["inputs"]["pixel_values"].numpy())
            numpy.save("{tmp_path}/{name}-embeddings.npy", namespace["embeddings"].numpy())
            numpy.save("{tmp_path}/{name}-pipeline.npy", namespace["pipeline_features"].numpy())
        """))
    script.append('assert not any(name == "hfssl" or name.startswith("hfssl.") for name in sys.modules)')
    run_python("\n".join(script), subprocess_env("http://127.0.0.1:9", tmp_path / "hf_home"), tmp_path)
    torch.set_num_threads(1)
    for name, run in (("simclr", tiny_run), ("mae", tiny_mae_run)):
        model = AutoModel.from_pretrained(run).eval()
        pixels = torch.from_numpy(np.load(tmp_path / f"{name}-pixels.npy"))
        assert pixels.shape[-1] == (32 if name == "simclr" else 16)
        with torch.no_grad():
            expected = model.get_embeddings(pixels).numpy()
        embeddings = np.load(tmp_path / f"{name}-embeddings.npy")
        np.testing.assert_allclose(embeddings, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}-pipeline.npy").reshape(embeddings.shape), embeddings)


def test_hfssl_snippet_runs(tiny_run):
    text = str(build_card(tiny_run, repo_id="alice/card-test"))
    block = python_blocks(text, "### With hfssl")[0].replace('"alice/card-test"', f'"{tiny_run}"')
    namespace: dict = {}
    exec(compile(block, "card-hfssl", "exec"), namespace)
    assert namespace["embeddings"].shape == (2, 32)


@pytest.mark.parametrize("family,pipeline_tag", [
    ("masked-language-modeling", "fill-mask"),
    ("causal-language-modeling", "text-generation"),
    ("word-embeddings", "feature-extraction"),
    ("image-text", "zero-shot-image-classification"),
])
def test_every_family_template_renders_valid_metadata(tiny_run, monkeypatch, family, pipeline_tag):
    spec = run_module.method_for_config(hfssl.SimCLRConfig())
    monkeypatch.setattr(run_module, "method_for_config", lambda config: dataclasses.replace(spec, family=family))
    for encoder_card in (False, True):
        card = build_card(tiny_run, repo_id="alice/x", encoder_repo_id="alice/x-encoder", encoder_card=encoder_card)
        validate_card(card)
        assert card.data.pipeline_tag == pipeline_tag
        text = str(card)
        assert "{{" not in text and "{%" not in text
        assert "## Citation" in text and "@inproceedings{chen2020simclr" in text
        assert ("## Training recipe" in text) != encoder_card
        assert "```python" in text


def test_every_family_has_a_card_module_and_a_template():
    """A family of the registry has its card part in hfssl.hub.cards and its template in hfssl/model_cards."""
    from hfssl.hub.cards import FAMILY_CARDS
    from hfssl.hub.card import template_path
    from hfssl.registry import FAMILIES

    assert set(FAMILY_CARDS) == set(FAMILIES)
    for family in FAMILIES:
        assert template_path(family).is_file()


def test_text_and_image_text_family_snippets_run_without_hfssl(tiny_run, tmp_path, monkeypatch):
    """The fill-mask, word-vector and zero-shot snippets of the text families run against real tiny
    transformers models (BertForMaskedLM, VisionTextDualEncoderModel; a mean-pooled text tower through its
    exported code, loaded from the ``encoder`` subfolder with ``trust_remote_code=True``) in a process
    without hfssl."""
    spec = run_module.method_for_config(hfssl.SimCLRConfig())
    script = [BLOCK_HFSSL, "import json"]
    checks = {
        "masked-language-modeling": "assert len(predictions) == 5 and embeddings.shape == (2, 32)",
        "causal-language-modeling": "assert isinstance(completion, str) and embeddings.shape == (2, 32)",
        "word-embeddings": "assert vectors.shape == (26, 32) and -1 <= float(similarity) <= 1 and len(neighbours) == 5",
        "image-text": ("assert probabilities.shape == (1, 2) and abs(float(probabilities.sum()) - 1) < 1e-5\n"
                       "assert image_embeddings.shape == (1, 16) and len(scores) == 2"),
        "image-text/mean": ("assert type(model).__name__ == 'PooledVisionTextDualEncoderModel'\n"
                            "assert probabilities.shape == (1, 2) and len(scores) == 2"),
    }
    for key, check in checks.items():
        family, _, pooling = key.partition("/")
        run = tmp_path / key.replace("/", "-")
        shutil.copytree(tiny_run, run)
        write_text_encoder(run / "encoder", family, pooling or "pooler")
        monkeypatch.setattr(run_module, "method_for_config", lambda config, f=family: dataclasses.replace(spec, family=f))
        text = str(build_card(run, repo_id="alice/text"))
        snippet = python_blocks(text, "### With plain transformers")[0].replace('"alice/text"', f'"{run}"')
        assert f'"{run}"' in snippet
        assert ("trust_remote_code=True" in snippet) == bool(pooling)
        script.append(f"namespace = {{}}\nexec(compile({snippet!r}, {key!r}, 'exec'), namespace)\n"
                      f"exec({check!r}, namespace)")
    script.append('assert not any(name.startswith("hfssl") for name in sys.modules)\nprint("ok")')
    result = run_python("\n".join(script), subprocess_env("http://127.0.0.1:9", tmp_path / "hf_home"), tmp_path)
    assert result.stdout.strip().endswith("ok")


def test_projection_matches_a_naive_pca_and_the_plot_is_a_png(tmp_path):
    generator = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 20)
    features = generator.normal(size=(60, 5)) + 4 * np.eye(5)[labels]
    points = project_2d(features, "pca")
    centred = features - features.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    naive = centred @ components[:2].T
    np.testing.assert_allclose(np.abs(points), np.abs(naive), atol=1e-8)  # equal up to the sign of each axis
    path = save_projection_plot(features, np.where(labels == 2, -1, labels), ["a", "b"], tmp_path / "x" / "p.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 200
        assert image.info["Description"] == "hfssl projection=pca count=60"
    tsne = project_2d(features, "tsne")
    assert tsne.shape == (60, 2) and np.isfinite(tsne).all()
    np.testing.assert_allclose(project_2d(features, "tsne"), tsne)  # seeded


def test_projection_plot_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="labels has 3 entries"):
        save_projection_plot(np.zeros((4, 2)), np.zeros(3), None, tmp_path / "p.png")
    with pytest.raises(ValueError, match="NaN"):
        save_projection_plot(np.full((4, 2), np.nan), np.zeros(4), None, tmp_path / "p.png")
    with pytest.raises(ValueError, match="must be one of pca, tsne, umap"):
        save_projection_plot(np.zeros((4, 2)), np.zeros(4), None, tmp_path / "p.png", method="isomap")
    assert not (tmp_path / "p.png").exists()


def test_reconstruction_plot(tmp_path):
    generator = np.random.default_rng(0)
    grey = generator.uniform(size=(3, 2, 8, 8, 1))
    path = save_reconstruction_plot(*grey, tmp_path / "r.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        save_reconstruction_plot(grey[0] * 255, grey[1], grey[2], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="but originals has"):
        save_reconstruction_plot(grey[0], grey[1][:1], grey[2], tmp_path / "bad.png")


def test_malformed_eval_results_is_named(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "eval_results.json").write_text(json.dumps({"results": [{"top1": 0.5}]}))
    with pytest.raises(ValueError, match=r"eval_results.json: results\[0\] must be an object with a 'protocol'"):
        write_model_card(run)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        write_model_card(tmp_path)
