"""Publishing against a local Hub server: round trips through transformers, failures, and token safety."""

from __future__ import annotations

import json
import logging
import shutil
import textwrap
import traceback
from pathlib import Path

import urllib.error
import urllib.request
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load as load_safetensors
from transformers import AutoModel

import hfssl  # noqa: F401 - registers the Auto classes
from hfssl.hub import push as push_module
from hfssl.hub.push import HubPushError, InvalidRepoIdError, MissingTokenError, push_model_to_hub, push_run
from hub_fixtures import BLOCK_HFSSL, TOKEN, USER, run_python, snapshot, subprocess_env

EXPECTED_RUN_FILES = {
    ".gitattributes", "README.md", "config.json", "model.safetensors", "recipe.yaml", "eval_results.json",
    "training.json", "images/embeddings_2d.png",
}
ENCODER_FILES = {"config.json", "model.safetensors", "preprocessor_config.json"}


def _fast(**kwargs):
    return {"retries": 2, "retry_wait": 0.01, **kwargs}


def test_round_trip_through_transformers_with_and_without_hfssl(hub_env, tiny_run, tmp_path):
    """Push the encoder in encoder/, and (to branch v1) as its own repo; load both without hfssl and the
    full model with hfssl in fresh processes; every output equals the local model's exactly."""
    before = snapshot(tiny_run)
    first = push_run(tiny_run, f"{USER}/simclr-tiny", **_fast())
    second = push_run(tiny_run, f"{USER}/simclr-tiny-b", encoder_repo_id=f"{USER}/simclr-tiny-encoder",
                      revision="v1", commit_message="first release", **_fast())
    assert snapshot(tiny_run) == before

    assert first["repo_url"] == f"{hub_env.endpoint}/{USER}/simclr-tiny" and first["revision"] == "main"
    assert first["commit_url"].endswith(first["commit_oid"])
    assert second["encoder_repo_url"] == f"{hub_env.endpoint}/{USER}/simclr-tiny-encoder"
    assert hub_env.unhandled == []

    # What went where: the run's files (never checkpoints/ or logs/), the encoder in encoder/ or at a repo root.
    files = hub_env.files(f"{USER}/simclr-tiny")
    assert set(files) == EXPECTED_RUN_FILES | {f"encoder/{name}" for name in ENCODER_FILES}
    for name in files.keys() - {".gitattributes", "README.md"}:
        assert files[name] == (tiny_run / name).read_bytes(), name
    assert set(hub_env.files(f"{USER}/simclr-tiny-b", "v1")) == EXPECTED_RUN_FILES
    encoder_repo = hub_env.files(f"{USER}/simclr-tiny-encoder", "v1")
    assert set(encoder_repo) == ENCODER_FILES | {".gitattributes", "README.md"}
    assert hub_env.files(f"{USER}/simclr-tiny-b", "main").keys() == {".gitattributes"}  # main untouched
    # One commit per repo per push (on top of the repo's initial commit).
    assert hub_env.repo(f"{USER}/simclr-tiny").commit_count() == 2
    assert hub_env.repo(f"{USER}/simclr-tiny-b").commit_count("v1") == 2
    assert hub_env.repo(f"{USER}/simclr-tiny-encoder").commit_count("v1") == 2
    assert hub_env.repo(f"{USER}/simclr-tiny-b").commits[second["commit_oid"]].title == "first release"

    # huggingface_hub's own listing endpoints see the same (tree listing, refs, model info).
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_env.endpoint)
    assert set(api.list_repo_files(f"{USER}/simclr-tiny")) == set(files)
    lfs_entries = {entry.path for entry in api.list_repo_tree(f"{USER}/simclr-tiny", recursive=True)
                   if getattr(entry, "lfs", None)}
    assert lfs_entries == {"model.safetensors", "encoder/model.safetensors", "images/embeddings_2d.png"}
    assert {branch.name for branch in api.list_repo_refs(f"{USER}/simclr-tiny-b").branches} == {"main", "v1"}
    assert api.model_info(f"{USER}/simclr-tiny-encoder", revision="v1").sha == second["encoder_commit_oid"]

    # The cards were rendered for these repos.
    card = ModelCard(files["README.md"].decode())
    assert card.data.library_name == "hfssl" and len(card.data.eval_results) == 6
    assert f'repo_id = "{USER}/simclr-tiny"' in files["README.md"].decode()
    encoder_card = ModelCard(encoder_repo["README.md"].decode())
    assert encoder_card.data.library_name == "transformers"
    assert f"/{USER}/simclr-tiny-b" in encoder_repo["README.md"].decode()
    assert f'repo_id = "{USER}/simclr-tiny-encoder"' in hub_env.files(f"{USER}/simclr-tiny-b", "v1")["README.md"].decode()

    # Loads in a fresh process: first plain transformers with any hfssl import blocked, then, with the
    # block lifted, the full model through hfssl (one interpreter start instead of two).
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 32, 32)
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    env = subprocess_env(hub_env.endpoint, tmp_path / "hf_home_load")
    run_python(BLOCK_HFSSL + textwrap.dedent(f"""
        import numpy, torch
        from transformers import AutoImageProcessor, AutoModel
        torch.set_num_threads(1)
        pixels = torch.from_numpy(numpy.load("{tmp_path}/pixels.npy"))
        sub = AutoModel.from_pretrained("{USER}/simclr-tiny", subfolder="encoder").eval()
        root = AutoModel.from_pretrained("{USER}/simclr-tiny-encoder", revision="v1").eval()
        assert type(sub).__name__ == type(root).__name__ == "ResNetModel"
        processor = AutoImageProcessor.from_pretrained("{USER}/simclr-tiny", subfolder="encoder")
        assert dict(processor.size) == {{"shortest_edge": 32}} and dict(processor.crop_size) == {{"height": 32, "width": 32}}
        assert list(processor.image_mean) == [0.5, 0.4, 0.3]
        with torch.no_grad():
            numpy.save("{tmp_path}/sub.npy", sub(pixel_values=pixels).pooler_output.numpy())
            numpy.save("{tmp_path}/root.npy", root(pixel_values=pixels).pooler_output.numpy())
        assert not any(name.startswith("hfssl") for name in sys.modules)

        sys.meta_path = [finder for finder in sys.meta_path if not isinstance(finder, _NoHfssl)]
        import hfssl
        model = AutoModel.from_pretrained("{USER}/simclr-tiny").eval()
        assert type(model).__name__ == "SimCLRForPreTraining", type(model)
        with torch.no_grad():
            numpy.save("{tmp_path}/full.npy", model.projector(model.get_embeddings(pixels)).numpy())
    """), env, tmp_path)

    torch.set_num_threads(1)
    local = AutoModel.from_pretrained(tiny_run).eval()
    with torch.no_grad():
        pooled = local.backbone(pixel_values=pixels).pooler_output.numpy()
        projected = local.projector(local.get_embeddings(pixels)).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "sub.npy"), pooled)
    np.testing.assert_array_equal(np.load(tmp_path / "root.npy"), pooled)
    np.testing.assert_array_equal(np.load(tmp_path / "full.npy"), projected)


def test_a_second_push_is_one_more_commit_and_an_unchanged_one_none(hub_env, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    repo_id = f"{USER}/again"
    push_run(run, repo_id, **_fast())
    push_run(run, repo_id, **_fast())  # nothing changed: huggingface_hub skips the empty commit
    assert hub_env.repo(repo_id).commit_count() == 2
    results = json.loads((run / "eval_results.json").read_text())
    results["results"][0]["top1"] = 0.9722
    (run / "eval_results.json").write_text(json.dumps(results))
    push_run(run, repo_id, **_fast())
    assert hub_env.repo(repo_id).commit_count() == 3
    files = hub_env.files(repo_id)
    assert json.loads(files["eval_results.json"])["results"][0]["top1"] == 0.9722
    assert "| kNN (k=20, T=0.07) | 97.2 |" in files["README.md"].decode()


def test_no_token_is_a_clear_error_before_any_request(hub_env, tiny_run, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(MissingTokenError, match="HF_TOKEN.*nothing was uploaded|nothing was uploaded.*HF_TOKEN"):
        push_run(tiny_run, f"{USER}/no-token", **_fast())
    with pytest.raises(MissingTokenError):
        push_model_to_hub(AutoModel.from_pretrained(tiny_run), f"{USER}/no-token")
    assert hub_env.requests == []


@pytest.mark.parametrize("repo_id,encoder_repo_id", [
    ("no-owner", None), ("a/b/c", None), ("alice/bad name", None), ("alice/", None), ("/name", None),
    ("alice/name--x", None), ("", None), ("alice/ok", "alice/ok"), ("alice/ok", "alice/x y"),
])
def test_invalid_repo_id_is_a_clear_error_before_any_request(hub_env, tiny_run, repo_id, encoder_repo_id):
    with pytest.raises(InvalidRepoIdError) as caught:
        push_run(tiny_run, repo_id, encoder_repo_id=encoder_repo_id, **_fast())
    assert repr(encoder_repo_id if encoder_repo_id and repo_id == "alice/ok" and encoder_repo_id != repo_id
                else repo_id) in str(caught.value)
    assert hub_env.requests == []


def test_offline_mode_is_a_clear_error_before_any_request(hub_env, tiny_run, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubPushError, match="HF_HUB_OFFLINE is set"):
        push_run(tiny_run, f"{USER}/offline", **_fast())
    assert hub_env.requests == []


def test_not_a_run_directory_is_named(hub_env, tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        push_run(tmp_path, f"{USER}/x", **_fast())
    assert hub_env.requests == []


def test_server_errors_on_the_commit_are_retried(hub_env, tiny_run, caplog):
    hub_env.fail("POST", r"/commit/", times=2, status=503)
    with caplog.at_level(logging.WARNING, logger="hfssl.hub.push"):
        result = push_run(tiny_run, f"{USER}/flaky", **_fast())
    assert hub_env.repo(f"{USER}/flaky").commit_count() == 2
    assert hub_env.repo(f"{USER}/flaky").branches["main"] == result["commit_oid"]
    commits = [r for r in hub_env.requests if r.method == "POST" and "/commit/" in r.path]
    assert [r.status for r in commits] == [503, 503, 200]
    assert caplog.text.count("retry") == 2


def test_persistent_server_errors_give_a_clear_error_no_commit_and_dir_unchanged(hub_env, tiny_run):
    before = snapshot(tiny_run)
    hub_env.fail("POST", r"/commit/", times=100, status=500)
    with pytest.raises(HubPushError, match=r"(?s)the commit to alice/down failed after 3 attempts: HTTP 500 from POST .*/commit/main: injected server error.*nothing was committed"):
        push_run(tiny_run, f"{USER}/down", **_fast())
    repo = hub_env.repo(f"{USER}/down")
    assert repo.commit_count() == 1 and hub_env.files(f"{USER}/down").keys() == {".gitattributes"}
    assert snapshot(tiny_run) == before
    assert sum(1 for r in hub_env.requests if "/commit/" in r.path) == 3


def test_lfs_upload_errors_are_retried_then_fail_cleanly(hub_env, tiny_run, monkeypatch):
    # huggingface_hub retries each LFS PUT itself (5 times, 1-8 s apart): skip its sleeps here.
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda seconds: None)
    before = snapshot(tiny_run)
    hub_env.fail("PUT", r"^/lfs-upload/", times=3, status=502)
    push_run(tiny_run, f"{USER}/lfs-flaky", **_fast())
    assert set(hub_env.files(f"{USER}/lfs-flaky")) >= {"model.safetensors", "encoder/model.safetensors"}

    hub_env.fail("PUT", r"^/lfs-upload/", times=10_000, status=500)
    with pytest.raises(HubPushError, match="the commit to alice/lfs-down failed after 3 attempts"):
        push_run(tiny_run, f"{USER}/lfs-down", **_fast())
    assert hub_env.repo(f"{USER}/lfs-down").commit_count() == 1
    assert not any("/commit/" in r.path and "lfs-down" in r.path for r in hub_env.requests)
    assert snapshot(tiny_run) == before


def test_other_client_errors_are_not_retried_and_say_why(hub_env, tiny_run, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_known_token_0000000000")
    with pytest.raises(HubPushError, match="creating the repo alice/x failed: .*401.*rejected the token"):
        push_run(tiny_run, f"{USER}/x", **_fast())
    assert [r.path for r in hub_env.requests].count("/api/repos/create") == 1  # a 401 is not retried
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(HubPushError, match="403.*no write access"):
        push_run(tiny_run, "bob/not-mine", **_fast())


def test_private_repo_is_not_readable_anonymously(hub_env, tiny_run):
    push_run(tiny_run, f"{USER}/secret", private=True, **_fast())
    assert hub_env.repo(f"{USER}/secret").private
    url = f"{hub_env.endpoint}/{USER}/secret/resolve/main/config.json"
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"))
    assert anonymous.value.code == 404 and anonymous.value.headers["X-Error-Code"] == "RepoNotFound"
    request = urllib.request.Request(url, method="HEAD", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request) as authorised:
        assert authorised.status == 200


def test_push_model_to_hub_publishes_the_model_object_with_its_run(hub_env, tiny_run):
    model = AutoModel.from_pretrained(tiny_run)
    before = snapshot(tiny_run)
    result = model.push_to_hub(f"{USER}/from-object", **_fast())  # delegates to push_model_to_hub
    assert snapshot(tiny_run) == before
    files = hub_env.files(f"{USER}/from-object")
    assert set(files) == EXPECTED_RUN_FILES | {f"encoder/{name}" for name in ENCODER_FILES}
    assert files["recipe.yaml"] == (tiny_run / "recipe.yaml").read_bytes()
    assert files["eval_results.json"] == (tiny_run / "eval_results.json").read_bytes()
    processor = json.loads(files["encoder/preprocessor_config.json"])
    assert processor["size"] == {"shortest_edge": 32} and processor["crop_size"] == {"height": 32, "width": 32}
    assert processor["image_std"] == [0.25, 0.2, 0.3]
    pushed = load_safetensors(files["encoder/model.safetensors"])
    for name, tensor in model.get_backbone().state_dict().items():
        assert torch.equal(pushed[name], tensor), name
    full = load_safetensors(files["model.safetensors"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(full[name], tensor), name
    assert result["commit_oid"] == hub_env.repo(f"{USER}/from-object").branches["main"]


def test_push_model_to_hub_without_a_run_says_how_to_fix_it(hub_env):
    from hfssl import SimCLRConfig, SimCLRForPreTraining
    from hub_fixtures import TINY_RESNET

    model = SimCLRForPreTraining(SimCLRConfig(backbone_config=TINY_RESNET, projection_hidden_dim=32, projection_dim=16))
    with pytest.raises(ValueError, match="cannot tell the input size of SimCLRForPreTraining.*hfssl push RUN_DIR"):
        push_model_to_hub(model, f"{USER}/orphan")
    assert hub_env.requests == []


def test_the_token_never_appears_in_files_logs_errors_or_request_bodies(hub_env, tiny_run, tmp_path, monkeypatch,
                                                                        caplog, capfd):
    """Successful and failing pushes at DEBUG level (with huggingface_hub's own request logging), one
    failure from a server that echoes the Authorization header into its error body."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_DEBUG", True)
    staging: list[Path] = []
    real_rmtree = shutil.rmtree

    def keep_staging(path, *args, **kwargs):  # keep the staging folders so that they can be searched
        if Path(path).name.startswith("hfssl-push-"):
            staging.append(Path(path))
            return None
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(push_module.shutil, "rmtree", keep_staging)
    hub_env.fail("POST", r"/commit/", times=100, status=500, echo_authorization=True)
    errors = []
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")  # its library logger defaults to WARNING
    with caplog.at_level(logging.DEBUG):
        try:
            push_run(tiny_run, f"{USER}/token-b", **_fast())
        except HubPushError as error:
            errors.append(error)
        hub_env.state.failures.clear()
        push_run(tiny_run, f"{USER}/token-a", encoder_repo_id=f"{USER}/token-a-encoder", revision="dev", **_fast())
    assert len(errors) == 1
    error_text = "".join(traceback.format_exception(errors[0])) + repr(errors[0])
    assert "500" in error_text and "hf_***" in error_text  # the echoed header was scrubbed
    assert errors[0].__cause__ is None and errors[0].__suppress_context__

    captured = capfd.readouterr()
    assert "(authenticated: True)" in caplog.text  # huggingface_hub's per-request DEBUG lines were captured
    assert "Send: curl" in caplog.text  # and, with HF_DEBUG, its curl-style dump of every request
    searched = {"exception": error_text, "caplog": caplog.text, "stdout": captured.out, "stderr": captured.err}
    assert staging and all(folder.is_dir() for folder in staging)
    for folder in (tiny_run, *staging):
        for path in folder.rglob("*"):
            if path.is_file():
                searched[str(path)] = path.read_bytes().decode("latin-1")
    for request in hub_env.requests:
        searched[f"{request.method} {request.path} body"] = request.body.decode("latin-1")
        searched[f"{request.method} {request.path} headers"] = json.dumps(
            {key: value for key, value in request.headers.items() if key.lower() != "authorization"})
    leaks = [name for name, text in searched.items() if TOKEN in text]
    assert leaks == []
    assert any({key.lower(): value for key, value in request.headers.items()}.get("authorization") == f"Bearer {TOKEN}"
               for request in hub_env.requests)  # the token did reach the server, in the header only


def test_a_token_inside_a_run_file_refuses_the_upload(hub_env, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "notes.txt").write_text(f"my token is {TOKEN}\n")
    with pytest.raises(HubPushError, match="refusing to upload notes.txt: it contains your Hugging Face token") as caught:
        push_run(run, f"{USER}/leaky", **_fast())
    assert TOKEN not in str(caught.value)
    assert hub_env.requests == []
