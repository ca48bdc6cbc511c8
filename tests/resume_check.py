"""Does a run resumed from a checkpoint end where the uninterrupted run did? Shared by the method tests
(DINO's centre, SwAV's queue)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from hfssl.training.trainer import train


def resume_matches(recipe, tmp_path: Path, state_names: tuple[str, ...]) -> tuple:  # noqa: ANN001 - a Recipe
    """Train ``recipe`` uninterrupted in ``tmp_path/full`` and again from its step-3 checkpoint in
    ``tmp_path/resumed``: the resumed run ends with the same weights and the same training-only state
    (``state_names``, the buffers in the checkpoint). Returns the full run and its step-3 training state."""
    full = train(recipe, tmp_path / "full")
    checkpoint = full.output_dir / "checkpoints" / "step-00000003"
    middle = load_file(checkpoint / "training_state_0.safetensors")
    assert set(middle) == set(state_names)
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint, resumed_dir / "checkpoints" / "step-00000003")
    resumed = train(recipe, resumed_dir, resume=True)
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step-00000003"
    expected, actual = load_file(full.output_dir / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    for name in state_names:
        assert torch.equal(getattr(full.model, name), getattr(resumed.model, name)), name
    return full, middle
