"""``hfssl wise-ft A B`` through the real CLI on two tiny CLIP emoji runs (two seeds): the report has one entry per
alpha for the reference (builtin:emoji) and shifted (builtin:emoji_twitter) data, alpha 0 scores A as the zero-shot
protocol did at the end of A's run, --save-alpha exports the mean of the two dual encoders as a plain transformers
folder, and exported dual encoders of different architectures are refused naming the tensor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfssl.models.clip import HfsslCLIPConfig, HfsslCLIPForPreTraining
from hfssl.models.clip.modeling_clip import transferable_dual_encoder
from hfssl.settings import RecipeError
from hfssl.wise_ft import scoring_recipe
from test_clip_run import ARGS, REPO, _cli, _cli_in_process, _env, write_tiny_recipe
from tiny import TINY

SOURCES = {"builtin:emoji", "builtin:emoji_twitter"}


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_recipe(tmp_path_factory.mktemp("recipe"))


@pytest.fixture(scope="module")
def runs(recipe_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Runs A and B, trained through ``hfssl train``'s code in this process (``hfssl wise-ft`` is what runs as the
    program here; training through it is tests/models/clip/test_clip_run.py's)."""
    root = tmp_path_factory.mktemp("wise_ft_runs")
    run_a, run_b = root / "a", root / "b"
    for run, extra in ((run_a, ["eval.protocols=[zero-shot]"]), (run_b, ["train.seed=1", "eval.protocols=[]"])):
        result = _cli_in_process("train", str(recipe_path), "--output-dir", str(run), *ARGS, *extra)
        assert result.returncode == 0, result.stderr[-4000:]
    return run_a, run_b


def test_wise_ft_writes_one_entry_per_alpha_and_exports_the_mean(runs: tuple[Path, Path], tmp_path: Path) -> None:
    run_a, run_b = runs
    output = tmp_path / "wise"
    result = _cli("wise-ft", str(run_a), str(run_b), "--alpha", "0,0.5,1", "--output", str(output),
                  "--save-alpha", "0.5")
    assert result.returncode == 0, result.stderr[-4000:]
    for name in ("wise_ft.json", "wise_ft.png", "wise_ft.md", "alpha-0.5/config.json", "alpha-0.5/model.safetensors",
                 "alpha-0.5/processor_config.json", "alpha-0.5/tokenizer.json"):
        assert (output / name).is_file(), name
    report = json.loads((output / "wise_ft.json").read_text())
    assert list(report["alphas"]) == ["0", "0.5", "1"]
    assert report["reference"] == "builtin:emoji" and report["shifted"] == ["builtin:emoji_twitter"]
    for values in report["alphas"].values():
        assert set(values) == SOURCES
        assert all(0 <= value["top1"] <= value["top5"] <= 1 for value in values.values())
    rows = json.loads((run_a / "eval_results.json").read_text())["results"]
    own = {row.get("dataset", "builtin:emoji"): row["top1"] for row in rows if row["protocol"] == "zero-shot"}
    assert {source: value["top1"] for source, value in report["alphas"]["0"].items()} == own
    markdown = (output / "wise_ft.md").read_text()
    assert markdown.count("\n| ") == 4 and "wise_ft.png" in markdown  # the header and one row per alpha
    # --save-alpha 0.5: the mean of the two exported dual encoders, loadable with plain transformers
    state_a = load_file(str(run_a / "encoder" / "model.safetensors"))
    state_b = load_file(str(run_b / "encoder" / "model.safetensors"))
    mixed = load_file(str(output / "alpha-0.5" / "model.safetensors"))
    assert mixed.keys() == state_b.keys()
    for name, tensor in mixed.items():
        assert torch.equal(tensor, ((state_a[name].double() + state_b[name].double()) / 2).to(tensor.dtype)), name
    check = ("from transformers import AutoModel, AutoProcessor\n"
             f"m = AutoModel.from_pretrained({str(output / 'alpha-0.5')!r}); "
             f"p = AutoProcessor.from_pretrained({str(output / 'alpha-0.5')!r})\n"
             "import sys; assert not any(n.startswith('hfssl') for n in sys.modules); print(type(m).__name__)")
    env = {key: value for key, value in _env().items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "VisionTextDualEncoderModel", done.stderr[-2000:]


def test_exported_dual_encoders_of_different_shapes_are_refused(recipe_path: Path, tmp_path: Path) -> None:
    folders = []
    for name, changes in (("a", {}), ("b", {"projection_dim": 8})):
        model = HfsslCLIPForPreTraining(HfsslCLIPConfig(**{**TINY["clip"][0], **changes}))
        dual, processor = transferable_dual_encoder(model, 16, (0.5,) * 3, (0.5,) * 3, 3)
        dual.save_pretrained(tmp_path / name)
        processor.save_pretrained(tmp_path / name)
        folders.append(str(tmp_path / name))
    with pytest.raises(RecipeError, match="give --recipe"):  # two exports: nothing says which data score them
        scoring_recipe(*folders, None)
    result = _cli_in_process("wise-ft", *folders, "--recipe", str(recipe_path), "--output", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "differ in architecture: visual_projection.weight has shape (16, 32) in A" in result.stderr
    assert not (tmp_path / "out" / "wise_ft.json").exists()
