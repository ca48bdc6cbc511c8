"""Checkpoints mirrored to a Hub branch (``--hub-checkpoints``) and a run continued from it in another
folder (``--resume-from hf://...``), against the local Hub server: a real SimCLR run on builtin:digits."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants

from hub_fixtures import USER
from hfssl.cli import main
from hfssl.errors import ResumeError, UsageError
from hfssl.hub import MissingTokenError
from hfssl.hub.checkpoints import CheckpointMirror, download_checkpoint, parse_hub_checkpoint
from hfssl.pipeline import run
from hfssl.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "simclr" / "digits.yaml"
QUICK = ["train.batch_size=32", "eval.protocols=[]", "train.progress_bar=false", "train.knn_every=null",
         "train.trackers=[]", "train.checkpoint_every=1", "train.keep_checkpoints=5"]
REPO_ID = f"{USER}/simclr-digits-checkpoints"


def _digests(folder: Path) -> dict[str, str]:
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_checkpoints_mirrored_to_a_branch_and_a_run_continued_from_it(hub_env, tmp_path, caplog, monkeypatch):
    """Step 1's upload fails on every retry: a warning, training goes on, step 2 is mirrored (deleting
    nothing on disk). The branch then holds exactly step-00000002, byte for byte, and main is untouched;
    a new folder continues from the branch and mirrors its own step 3 there."""
    monkeypatch.setattr(CheckpointMirror, "wait", 0.0)
    hub_env.fail("POST", rf"^/api/models/{REPO_ID}/commit/", times=CheckpointMirror.retries + 1, status=500)
    first = tmp_path / "first"
    with caplog.at_level(logging.WARNING, logger="hfssl.hub.checkpoints"):
        result = run(load_recipe(RECIPE, [*QUICK, "train.max_steps=2"]), first,
                     hub_checkpoints=f"hf://{REPO_ID}@ckpt")
    assert result.steps == 2
    assert "mirroring checkpoint" in caplog.text and "step-00000001" in caplog.text
    assert "The checkpoint on disk is intact and training goes on" in caplog.text
    assert (first / "checkpoints" / "step-00000001").is_dir()  # the failed mirror touched nothing local
    repo = hub_env.repo(REPO_ID)
    assert repo.private and set(repo.branches) == {"main", "ckpt"}
    assert list(hub_env.files(REPO_ID, "main")) == [".gitattributes"]  # the published model's branch untouched
    branch = hub_env.files(REPO_ID, "ckpt")
    local = _digests(first / "checkpoints" / "step-00000002")
    mirrored = {path.removeprefix("step-00000002/"): hashlib.sha256(content).hexdigest()
                for path, content in branch.items() if path.startswith("step-")}
    assert mirrored == local and "trainer_state.json" in local and "random_states_0.pkl" in local

    # Elsewhere (a new folder, the same Hub branch): the command line continues from the branch.
    second = tmp_path / "second"
    code = main(["train", str(RECIPE), "--output-dir", str(second), "--resume-from", f"hf://{REPO_ID}@ckpt",
                 "--hub-checkpoints", f"hf://{REPO_ID}@ckpt", *QUICK, "train.max_steps=3"])
    assert code == 0
    assert sorted(path.name for path in (second / "checkpoints").iterdir()) == ["step-00000003"]
    steps_on_branch = {path.split("/", 1)[0] for path in hub_env.files(REPO_ID, "ckpt") if path.startswith("step-")}
    assert steps_on_branch == {"step-00000003"}  # the older step folder deleted in the same commit
    assert _digests(download_checkpoint(f"hf://{REPO_ID}@ckpt")) == _digests(second / "checkpoints" / "step-00000003")
    assert repo.commit_count("ckpt") == 3  # the branch start, step 2, step 3 (step 1's commit failed)


def test_bad_hub_checkpoint_values_are_refused_before_any_work(hub_env, tmp_path, monkeypatch):
    for value, message in (("alice/repo", "must be hf://OWNER/NAME"), ("hf://repo", "OWNER/NAME"),
                           ("hf://alice/repo@main", "other than 'main'")):
        with pytest.raises(ValueError, match=message):
            parse_hub_checkpoint(value)
    api = HfApi()
    api.create_repo(f"{USER}/empty", private=True)
    api.create_branch(f"{USER}/empty", branch="ckpt")
    with pytest.raises(ResumeError, match="holds no checkpoint folder"):
        run(load_recipe(RECIPE, [*QUICK, "train.max_steps=1"]), tmp_path / "new", resume=f"hf://{USER}/empty@ckpt")
    with pytest.raises(ResumeError, match="Check the repo id and branch"):
        run(load_recipe(RECIPE, [*QUICK, "train.max_steps=1"]), tmp_path / "new", resume=f"hf://{USER}/missing@ckpt")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(MissingTokenError, match="no Hugging Face token found"):
        run(load_recipe(RECIPE, [*QUICK, "train.max_steps=1"]), tmp_path / "new", hub_checkpoints=f"hf://{REPO_ID}")
    assert hub_env.repo(REPO_ID) is None
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for where in ({"hub_checkpoints": f"hf://{REPO_ID}"}, {"resume": f"hf://{REPO_ID}"}):
        with pytest.raises(UsageError, match="needs the Hub, but HF_HUB_OFFLINE is set"):
            run(load_recipe(RECIPE, [*QUICK, "train.max_steps=1"]), tmp_path / "new", **where)
    assert not (tmp_path / "new").exists()

