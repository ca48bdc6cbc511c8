from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from hfssl.training.checkpoint import (
    STATE_FILE,
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
    (tmp_path / "checkpoints" / ".tmp-step-00000040").mkdir()
    assert latest_checkpoint(tmp_path) == good
    remove_stale_staging(tmp_path / "checkpoints")
    assert not (tmp_path / "checkpoints" / ".tmp-step-00000040").exists()
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
