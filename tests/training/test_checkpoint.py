from __future__ import annotations

import json

import pytest

from hfssl.training.checkpoint import (
    STATE_FILE,
    latest_checkpoint,
    prune_checkpoints,
    remove_stale_staging,
    resolve_resume,
)


def _make(root, step, complete=True):
    path = root / "checkpoints" / f"step-{step:08d}"
    path.mkdir(parents=True)
    if complete:
        (path / STATE_FILE).write_text(json.dumps({"state": {"global_step": step}}))
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
