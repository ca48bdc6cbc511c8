from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from hfssl.errors import ResumeError, RunDirectoryError
from hfssl.files import DIR, FILE, MANIFEST_FILE, TREE, update_manifest
from hfssl.training.checkpoint import (
    STATE_FILE,
    check_new_run_directory,
    checkpoint_problems,
    clear_previous_run,
    find_resume_checkpoint,
    latest_checkpoint,
    prune_checkpoints,
    remove_stale_staging,
    resolve_resume,
)


def _make(root, step, complete=True, run_id=None):
    """A checkpoint folder with the files resume verifies (tiny weights, optimizer and RNG states)."""
    path = root / "checkpoints" / f"step-{step:08d}"
    path.mkdir(parents=True)
    save_file({"weight": torch.zeros(2)}, str(path / "model.safetensors"))
    torch.save({"state": {}}, path / "optimizer.bin")
    torch.save({"seed": step}, path / "random_states_0.pkl")
    (path / "recipe.yaml").write_text("method: simclr\n")
    if complete:
        state = {"state": {"global_step": step}}
        if run_id is not None:
            state["run_id"] = run_id
        (path / STATE_FILE).write_text(json.dumps(state))
    return path


def test_latest_ignores_incomplete_and_staging(tmp_path):
    _make(tmp_path, 10)
    good = _make(tmp_path, 20)
    _make(tmp_path, 30, complete=False)
    (tmp_path / "checkpoints" / ".tmp-step-00000040-123-abc").mkdir()
    (tmp_path / "checkpoints" / ".tmp-step-00000050-mine").mkdir()  # named like one, but not recorded
    assert latest_checkpoint(tmp_path) == good
    update_manifest(tmp_path, add={"checkpoints/.tmp-step-00000040-123-abc": TREE})
    assert remove_stale_staging(tmp_path / "checkpoints") == ["checkpoints/.tmp-step-00000040-123-abc"]
    assert not (tmp_path / "checkpoints" / ".tmp-step-00000040-123-abc").exists()
    assert (tmp_path / "checkpoints" / ".tmp-step-00000050-mine").exists()  # only what the manifest records
    assert (tmp_path / "checkpoints" / "step-00000020").exists()


def test_prune_keeps_the_newest(tmp_path):
    for step in (100, 200, 300, 1000):
        _make(tmp_path, step)
    prune_checkpoints(tmp_path / "checkpoints", keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000300", "step-00001000"]


def test_resume_arguments(tmp_path):
    assert resolve_resume(tmp_path, False) is None
    assert resolve_resume(tmp_path, "latest") is None  # nothing yet: start from scratch
    path = _make(tmp_path, 5)
    assert resolve_resume(tmp_path, "latest") == path
    assert resolve_resume(tmp_path, str(path)) == path
    with pytest.raises(FileNotFoundError, match="not a complete hfssl checkpoint"):
        resolve_resume(tmp_path, str(tmp_path / "checkpoints" / "step-00000099"))


def test_pruning_only_removes_this_runs_older_checkpoints(tmp_path):
    for step in (100, 200, 300):
        _make(tmp_path, step, run_id="other")
    for step in (10, 20, 30):
        _make(tmp_path, step, run_id="mine")
    damaged = _make(tmp_path, 5, run_id="mine")
    (damaged / STATE_FILE).write_text("{not json")
    prune_checkpoints(tmp_path / "checkpoints", keep=1, run_id="mine")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-00000005", "step-00000030", "step-00000100", "step-00000200", "step-00000300"]


def test_resume_skips_damaged_checkpoints_and_names_why(tmp_path):
    older = _make(tmp_path, 1)
    truncated = _make(tmp_path, 2)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    no_optimizer = _make(tmp_path, 3)
    (no_optimizer / "optimizer.bin").unlink()
    path, skipped = find_resume_checkpoint(tmp_path, True)
    assert path == older
    assert [entry.split(" (")[0] for entry in skipped] == [str(no_optimizer), str(truncated)]
    assert "optimizer.bin is missing" in skipped[0] and "model.safetensors is truncated" in skipped[1]
    assert checkpoint_problems(older) == []
    (older / "optimizer.bin").write_bytes((older / "optimizer.bin").read_bytes()[:20])  # a cut zip archive
    assert checkpoint_problems(older) == ["optimizer.bin is empty or truncated"]
    with pytest.raises(ResumeError, match="no intact checkpoint"):
        find_resume_checkpoint(tmp_path, True)


def test_a_new_run_needs_a_new_or_empty_folder(tmp_path):
    assert check_new_run_directory(tmp_path / "new", overwrite=False) is False
    assert check_new_run_directory(tmp_path, overwrite=False) is False  # empty
    (tmp_path / "README.md").write_text("mine")
    with pytest.raises(RunDirectoryError, match="already holds files that hfssl did not write \\(README.md\\)"):
        check_new_run_directory(tmp_path, overwrite=False)
    with pytest.raises(RunDirectoryError, match="--overwrite does not delete them"):
        check_new_run_directory(tmp_path, overwrite=True)  # no manifest: foreign, also with --overwrite
    _make(tmp_path, 4)
    with pytest.raises(RunDirectoryError, match="earlier hfssl version.*--resume.*rm -r"):
        check_new_run_directory(tmp_path, overwrite=True)  # a run without a manifest is never cleared
    update_manifest(tmp_path, add={"README.md": FILE, "checkpoints": DIR, "checkpoints/step-00000004": TREE})
    with pytest.raises(RunDirectoryError, match="already holds another run.*--resume"):
        check_new_run_directory(tmp_path, overwrite=False)
    assert check_new_run_directory(tmp_path, overwrite=True) is True
    (tmp_path / "notes.txt").write_text("mine too")
    (tmp_path / "checkpoints" / "keep.txt").write_text("mine, in hfssl's folder")
    assert sorted(clear_previous_run(tmp_path)) == ["README.md", "checkpoints/step-00000004"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_FILE, "checkpoints", "notes.txt"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["keep.txt"]
