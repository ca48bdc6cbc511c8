"""``hfssl sweep`` through the real CLI on digits: a grid of two points trained and compared, a re-run
that skips them, a changed plan and a typo refused before anything trains, and a sweep stopped by SIGTERM
that the same command continues from the run's checkpoint (its training.json then counts two segments)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hfssl.settings import RecipeError
from hfssl.sweep import parse_grid, parse_variants, plan_runs, split_values

REPO = Path(__file__).resolve().parents[1]
FAST = ["train.batch_size=64", "train.progress_bar=false", "eval.protocols=[knn]", "eval.projections=[]",
        "eval.max_train_samples=300", "eval.max_test_samples=100"]
GRID = ["--grid", "views.crop_scale=[0.3,1.0],[0.7,1.0]"]


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hfssl.cli", *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """``hfssl ARGS`` through :func:`hfssl.cli.main` in this process (run from the repository root, as ``_cli``),
    for the calls that train nothing themselves (a re-run that skips every run, a refused plan, ``hfssl
    compare``): the same code without a fresh interpreter's imports. The sweeps that train or are stopped
    stay real programs (``_cli``, ``subprocess.Popen``)."""
    import contextlib
    import io

    from hfssl.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.chdir(REPO), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(list(args))
    return subprocess.CompletedProcess(["hfssl", *args], code, stdout.getvalue(), stderr.getvalue())


def test_grid_values_variants_and_names():
    assert split_values("[0.3,1.0],[0.7, 1.0]") == ["[0.3,1.0]", "[0.7, 1.0]"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]
    with pytest.raises(RecipeError, match="comma-separated"):
        split_values("1,,2")
    with pytest.raises(RecipeError, match="section.key=value1,value2"):
        parse_grid(["lr=0.1,0.2"])
    with pytest.raises(RecipeError, match="twice"):
        parse_grid(["optim.lr=0.1", "optim.lr=0.2"])
    with pytest.raises(RecipeError, match="not an override"):
        parse_variants([["crop", "views.color_jitter_prob"]])
    runs = plan_runs(parse_variants([["crop", "views.color_jitter_prob=0"], ["full"]]),
                     parse_grid(["optim.lr=0.1,0.2"]), [0, 1])
    assert [run.name for run in runs] == [
        "crop_optim.lr=0.1_seed=0", "crop_optim.lr=0.1_seed=1", "crop_optim.lr=0.2_seed=0", "crop_optim.lr=0.2_seed=1",
        "full_optim.lr=0.1_seed=0", "full_optim.lr=0.1_seed=1", "full_optim.lr=0.2_seed=0", "full_optim.lr=0.2_seed=1"]
    assert runs[2].overrides == ["views.color_jitter_prob=0", "optim.lr=0.2", "train.seed=0"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep") / "crop"
    result = _cli("sweep", "recipes/simclr/digits.yaml", "train.max_steps=4", "train.knn_every=2", *FAST, *GRID,
                  "--output-dir", str(folder))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder, result


def test_sweep_trains_every_point_and_writes_the_report(sweep):
    folder, result = sweep
    plan = json.loads((folder / "sweep.json").read_text())
    names = ["views.crop_scale=0.3-1.0", "views.crop_scale=0.7-1.0"]
    assert [run["name"] for run in plan["runs"]] == names
    assert [run["status"] for run in plan["runs"]] == ["done", "done"]
    for name, scale in zip(names, ([0.3, 1.0], [0.7, 1.0])):
        run = folder / name
        assert "crop_scale:\n  - " + str(scale[0]) in (run / "recipe.yaml").read_text()
        record = json.loads((run / "training.json").read_text())
        assert record["steps"] == 4 and record["examples"] == 4 * 64 and record["segments"] == 1
        assert record["seconds"] > 0 and record["device"] == "cpu"
        assert (folder / "sweep-logs" / f"{name}.log").read_text().startswith("$ ")
    report = (folder / "report" / "compare.md").read_text()
    assert "`views.crop_scale`" in report
    assert "| views.crop_scale=0.3-1.0 | simclr | [0.3, 1] |" in report
    assert "kNN k=20" in report and "baseline: raw_pixels" in report
    assert (folder / "report" / "images" / "accuracy_vs_steps.png").is_file()  # online kNN curves
    assert "report: " in result.stdout

    again = _cli_in_process("sweep", "recipes/simclr/digits.yaml", "train.max_steps=4", "train.knn_every=2", *FAST,
                            *GRID, "--output-dir", str(folder))
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("done earlier, skipped") == 2

    # `hfssl compare` on the runs themselves.
    compared = _cli_in_process("compare", *(str(folder / name) for name in names), "--output",
                               str(folder.parent / "cmp"))
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert "compared 2 runs" in compared.stdout


def test_a_changed_plan_and_a_typo_are_refused_before_training(sweep, tmp_path):
    folder, _ = sweep
    changed = _cli_in_process("sweep", "recipes/simclr/digits.yaml", "train.max_steps=4", *FAST,
                              "--grid", "views.crop_scale=[0.5,1.0]", "--output-dir", str(folder))
    assert changed.returncode == 2
    assert "holds another sweep" in changed.stderr and "grid" in changed.stderr and "overrides" in changed.stderr

    typo = _cli_in_process("sweep", "recipes/simclr/digits.yaml", *FAST, "--grid", "train.bach_size=32,64",
                           "--output-dir", str(tmp_path / "typo"))
    assert typo.returncode == 2
    assert "bach_size" in typo.stderr
    assert not (tmp_path / "typo").exists()


def test_a_stopped_sweep_continues_from_the_checkpoint(tmp_path):
    folder = tmp_path / "stopped"
    args = ["sweep", "recipes/simclr/digits.yaml", "train.max_steps=20", "train.checkpoint_every=2",
            "train.knn_every=null", *FAST, "eval.protocols=[]", "eval.baselines=false", "--seeds", "1",
            "--output-dir", str(folder)]
    process = subprocess.Popen([sys.executable, "-m", "hfssl.cli", *args], cwd=REPO, env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = folder / "seed=0"
    deadline = time.time() + 300
    while time.time() < deadline and not list((run / "checkpoints").glob("step-*")):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # to the sweep only: it forwards the signal to the run
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert not (run / "model.safetensors").exists(), "the run finished before it could be stopped"
    plan = json.loads((folder / "sweep.json").read_text())
    assert plan["runs"][0]["status"] == "interrupted" and plan["runs"][0]["exit_code"] == 128 + signal.SIGTERM
    assert "run the same command to continue" in output

    resumed = _cli(*args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "seed=0: resuming" in resumed.stdout
    record = json.loads((run / "training.json").read_text())
    assert record["steps"] == 20 and record["segments"] == 2
    assert json.loads((folder / "sweep.json").read_text())["runs"][0]["status"] == "done"


def test_two_processes_per_run_through_accelerates_launcher(tmp_path):
    """``--num-processes 2`` starts each run under Accelerate's launcher as two CPU processes (DDP on gloo):
    the run's record counts both and their examples."""
    folder = tmp_path / "ddp"
    result = _cli("sweep", "recipes/simclr/digits.yaml", "train.max_steps=3", "train.batch_size=16",
                  "train.progress_bar=false", "eval.protocols=[]", "eval.projections=[]", "eval.baselines=false",
                  "--seeds", "1", "--num-processes", "2", "--output-dir", str(folder))
    assert result.returncode == 0, result.stdout[-2000:] + (folder / "sweep-logs" / "seed=0.log").read_text()[-3000:]
    log = (folder / "sweep-logs" / "seed=0.log").read_text()
    assert "accelerate.commands.launch --num_machines 1 --num_processes 2 --multi_gpu -m hfssl.train" in log
    record = json.loads((folder / "seed=0" / "training.json").read_text())
    assert record["processes"] == 2 and record["examples"] == 3 * 16 * 2


def test_a_run_that_misses_its_milestone_is_stopped_early_and_not_retried(tmp_path):
    folder = tmp_path / "pruned"
    args = ["sweep", "recipes/simclr/digits.yaml", "train.max_steps=4", "train.online_linear=true",
            "train.knn_every=null", *FAST, "eval.protocols=[]", "eval.baselines=false",
            "--grid", "train.early_stop={metric: online_linear/train_loss, max: 0.0001, step: 2}",
            "--output-dir", str(folder)]
    first = _cli(*args)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "stopped early: it missed train.early_stop's milestone" in first.stdout
    plan = json.loads((folder / "sweep.json").read_text())
    assert plan["runs"][0]["status"] == "stopped-early" and plan["runs"][0]["exit_code"] == 5
    assert not (folder / "report").exists()  # nothing finished, nothing to compare
    again = _cli_in_process(*args)
    assert again.returncode == 0 and "stopped-early earlier, skipped" in again.stdout
