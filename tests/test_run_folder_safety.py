"""Files are sacred (issue 27): hfssl deletes only what it recorded, one process per run folder, a run
killed before its first checkpoint restarts, a full disk is exit 4 with every earlier file consistent,
and what hfssl writes follows the umask.

Each refusal asserts the exit code, one message naming the input (no traceback) and the sha256 of every
file under the test folder unchanged. The lock, the concurrent starts, the overwrite during training and
the concurrent resumes run the real CLI in real processes; a full disk is injected in a real process
at the write itself by ``tests/full_disk/sitecustomize.py`` (``HFSSL_TEST_FULL_DISK``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfssl.cli import main as hfssl_main
from hfssl.errors import EXIT_STORAGE, EXIT_USAGE
from hfssl.files import LOCK_FILE, MANIFEST_FILE, current_umask, read_manifest
from tests.test_bad_inputs import FAST, RECIPE, REPO, TINY, call, snapshot

FULL_DISK_HOOK = REPO / "tests" / "full_disk"
#: Long enough to be stopped from outside before its first checkpoint.
LONG = ["train.max_steps=100000", "train.checkpoint_every=50000"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run with checkpoints at steps 1 and 2 and its encoder (trained once for the module)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert hfssl_main(["--log-level", "WARNING", "train", RECIPE, "--output-dir", str(run), *FAST]) == 0
    return run


@pytest.fixture()
def run(tmp_path: Path, finished_run: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra.pop("PYTHONPATH", ""), str(REPO),
                                                      env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hfssl.cli", "--log-level", "WARNING", *args], cwd=REPO,
                          env=_env(**env), capture_output=True, text=True, timeout=300)


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hfssl.cli", "--log-level", "WARNING", *args], cwd=REPO,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _train(output: Path, *extra: str, flags: tuple[str, ...] = ()) -> list[str]:
    return ["train", RECIPE, "--output-dir", str(output), *flags, *TINY, *extra]


def _wait_for_lock(folder: Path, process: subprocess.Popen, timeout: float = 240) -> dict:
    """The lock file's record once ``process`` holds ``folder``'s lock and has started training."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        try:
            holder = json.loads((folder / LOCK_FILE).read_text())
            if holder["pid"] == process.pid and (folder / "recipe.yaml").is_file():
                return holder
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{folder} was never locked by {process.pid}")


def _refused(result: subprocess.CompletedProcess | tuple[int, str], code: int, *fragments: str) -> None:
    returncode, output = (result.returncode, result.stderr) if isinstance(result, subprocess.CompletedProcess) \
        else result
    assert returncode == code, output[-3000:]
    assert "Traceback" not in output and output.count("error:") == 1, output[-3000:]
    for fragment in fragments:
        assert fragment in output, (fragment, output[-3000:])


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


# ---------------------------------------------------------------- hfssl deletes only what it wrote


def test_overwrite_refuses_a_folder_hfssl_did_not_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    for name in ("images/x.png", "logs/events.out", "checkpoints/notes.txt"):
        (mine / name).parent.mkdir(parents=True, exist_ok=True)
        (mine / name).write_bytes(b"user data " + name.encode())
    (mine / "README.md").write_text("mine")
    (mine / "config.json").write_text("{}")
    before = snapshot(tmp_path)
    _refused(call(_train(mine, "train.max_steps=1", flags=("--overwrite",)), capsys), EXIT_USAGE,
             str(mine), "hfssl did not write", "--overwrite does not delete them")
    assert snapshot(tmp_path) == before and not (mine / LOCK_FILE).exists()


def test_overwrite_removes_exactly_the_recorded_files_and_keeps_the_users(
        run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run / "notes.txt").write_text("mine")
    (run / "images").mkdir()  # a folder of the user's, beside hfssl's files
    (run / "images" / "mine.png").write_bytes(b"my picture")
    (run / "checkpoints" / "keep.txt").write_text("mine, in hfssl's folder")
    old = read_manifest(run)
    code, output = call(["--log-level", "WARNING", *_train(run, "train.max_steps=1", flags=("--overwrite",))], capsys)
    assert code == 0, output[-3000:]
    assert (run / "notes.txt").read_text() == "mine" and (run / "images" / "mine.png").read_bytes() == b"my picture"
    assert (run / "checkpoints" / "keep.txt").is_file()
    assert sorted(path.name for path in (run / "checkpoints").glob("step-*")) == ["step-00000001"]
    new = read_manifest(run)
    assert new.run_id != old.run_id and "notes.txt" not in new.entries and "images/mine.png" not in new.entries
    assert not (run / LOCK_FILE).exists()


def test_a_run_of_an_earlier_version_is_resumed_but_never_overwritten(
        run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Compatibility: a run folder without a manifest (hfssl before issue 27) is recognised by its model
    and checkpoints; --overwrite refuses it naming the fix, --resume continues it and records its checkpoints."""
    (run / MANIFEST_FILE).unlink()
    (run / "encoder" / MANIFEST_FILE).unlink()
    before = snapshot(run)
    _refused(call(_train(run, "train.max_steps=1", flags=("--overwrite",)), capsys), EXIT_USAGE,
             str(run), "earlier hfssl version", "rm -r", "--resume")
    assert snapshot(run) == before
    code, output = call(["--log-level", "WARNING", *_train(run, "train.max_steps=3", "train.checkpoint_every=1",
                                                           flags=("--resume",))], capsys)
    assert code == 0, output[-3000:]
    entries = read_manifest(run).entries
    assert entries["checkpoints/step-00000003"] == "tree" and entries["model.safetensors"] == "file"
    assert entries["encoder"] == "tree"  # its old encoder/ was replaced by a recorded export


@pytest.mark.parametrize("inside", ["encoder", "checkpoints/step-00000002", "encoder/sub"])
def test_a_run_never_trains_into_a_part_of_another_run(inside: str, tmp_path: Path, run: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(tmp_path)
    _refused(call(_train(run / inside, "train.max_steps=1", flags=("--overwrite",)), capsys), EXIT_USAGE,
             str(run / inside), "Train into")
    assert snapshot(tmp_path) == before and not (run / inside / LOCK_FILE).exists()


def test_export_into_another_run_or_a_user_folder_is_refused(
        tmp_path: Path, run: Path, finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other-run"
    shutil.copytree(finished_run, other)
    user = tmp_path / "user"
    user.mkdir()
    (user / "config.json").write_text('{"mine": true}')
    (user / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    _refused(call(["export", str(run), "--output", str(other)], capsys), EXIT_USAGE, str(other), "hfssl run")
    _refused(call(["export", str(run), "--output", str(other / "encoder")], capsys), EXIT_USAGE,
             str(other / "encoder"), "inside the hfssl run")
    _refused(call(["export", str(run), "--output", str(user)], capsys), EXIT_USAGE, str(user),
             "hfssl did not write", "config.json")
    assert snapshot(tmp_path) == before


def test_an_export_is_replaced_only_when_it_holds_nothing_else(
        tmp_path: Path, run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert call(["export", str(run), "--output", str(out)], capsys)[0] == 0
    manifest = read_manifest(out)
    assert manifest.kind == "export" and manifest.run_id == read_manifest(run).run_id
    assert call(["export", str(run), "--output", str(out)], capsys)[0] == 0  # an earlier export: replaced
    (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    _refused(call(["export", str(run), "--output", str(out)], capsys), EXIT_USAGE, str(out), "notes.txt",
             "did not write")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["model.safetensors", "config.json", "recipe.yaml",
                                    "checkpoints/step-00000002/trainer_state.json", "checkpoints/new.json",
                                    "encoder/model.safetensors", "encoder", MANIFEST_FILE])
def test_eval_never_writes_over_a_file_of_the_run(target: str, tmp_path: Path, run: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(tmp_path)
    _refused(call(["eval", str(run), "--output", str(run / target), "--protocol", "knn"], capsys), EXIT_USAGE,
             str(run / target))
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- one process per run folder


def test_a_killed_run_keeps_its_folder_locked_only_while_alive_and_restarts_bit_exact(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run in training (a real process) holds its folder: --overwrite and --resume-or-start from this
    process are refused naming its pid and command, and it trains on. SIGKILL before the first checkpoint
    leaves no stale lock; --resume then says the run stopped before its first checkpoint and names
    --resume-or-start, which starts it again and ends bit-exact with an uninterrupted run."""
    folder = tmp_path / "job"
    training = _start(*_train(folder, *LONG))
    try:
        holder = _wait_for_lock(folder, training)
        assert holder["command"][0] == "hfssl" and "train" in holder["command"]
        for flag in ("--overwrite", "--resume-or-start"):
            before = snapshot(folder)
            _refused(call(_train(folder, "train.max_steps=1", flags=(flag,)), capsys), EXIT_USAGE, str(folder),
                     f"in use by another hfssl process, pid {training.pid}", "train")
            assert snapshot(folder) == before
        assert training.poll() is None, "the running training was disturbed"
        assert not list((folder / "checkpoints").glob("step-*")), "the run reached its first checkpoint too soon"
    finally:
        training.send_signal(signal.SIGKILL)
        training.communicate(timeout=60)
    assert sorted(read_manifest(folder).entries) == ["recipe.yaml"]  # only its start files

    resume = call(_train(folder, "train.max_steps=3", flags=("--resume",)), capsys)
    _refused(resume, EXIT_USAGE, str(folder), "stopped before its first checkpoint", "--resume-or-start")
    code, output = call(["--log-level", "WARNING", *_train(folder, "train.max_steps=3", flags=("--resume-or-start",))],
                        capsys)
    assert code == 0 and "resumed from" not in output, output[-3000:]
    code, output = call(["--log-level", "WARNING", *_train(tmp_path / "uninterrupted", "train.max_steps=3")], capsys)
    assert code == 0, output[-3000:]
    expected, actual = _weights(tmp_path / "uninterrupted"), _weights(folder)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"{name} differs after the restart"
    assert not (folder / LOCK_FILE).exists()


def test_two_runs_started_at_once_into_one_folder(tmp_path: Path) -> None:
    """Exactly one trains; the other is refused and leaves no trace in the winner's recipe or checkpoints."""
    folder = tmp_path / "shared"
    processes = {seed: _start(*_train(folder, "train.max_steps=3", f"train.seed={seed}")) for seed in (11, 22)}
    results = {seed: process.communicate(timeout=300) + (process.returncode,) for seed, process in processes.items()}
    winners = [seed for seed, (_, _, code) in results.items() if code == 0]
    assert len(winners) == 1, {seed: (code, err[-2000:]) for seed, (_, err, code) in results.items()}
    (loser,) = set(results) - set(winners)
    _, error, code = results[loser]
    assert code == EXIT_USAGE and "Traceback" not in error, error[-3000:]
    assert "in use by another hfssl process" in error or "already holds another run" in error, error[-3000:]
    assert f"seed: {winners[0]}" in (folder / "recipe.yaml").read_text()
    for checkpoint in (folder / "checkpoints").glob("step-*"):
        assert f"seed: {winners[0]}" in (checkpoint / "recipe.yaml").read_text()


def test_two_resumes_at_once_one_is_refused_and_the_checkpoints_stay_whole(
        run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed run (a real process) holds the folder: a second --resume, an export into it and a push
    (from this process) are refused naming its pid; after a SIGKILL of the holder the checkpoints are
    whole and recorded, and the next --resume is not blocked by a stale lock."""
    first = _start(*_train(run, *LONG, flags=("--resume",)))
    try:
        _wait_for_lock(run, first)
        before = snapshot(run)
        _refused(call(_train(run, "train.max_steps=4", "train.checkpoint_every=1", flags=("--resume",)), capsys),
                 EXIT_USAGE, str(run), f"pid {first.pid}")
        _refused(call(["export", str(run)], capsys), EXIT_USAGE, str(run), f"pid {first.pid}")  # into RUN/encoder
        monkeypatch.setenv("HF_TOKEN", "hf_dummy")
        _refused(call(["push", str(run), "--repo-id", "me/x"], capsys), EXIT_USAGE, str(run), f"pid {first.pid}")
        assert {name: digest for name, digest in snapshot(run).items() if not name.startswith("checkpoints")} == \
            {name: digest for name, digest in before.items() if not name.startswith("checkpoints")}
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the kernel ends its lock, the lock file stays behind
        first.communicate(timeout=120)
    assert first.returncode == -signal.SIGKILL
    checkpoints = sorted((run / "checkpoints").iterdir())
    assert [path.name for path in checkpoints] == ["step-00000001", "step-00000002"]  # no mixed or staged one
    entries = read_manifest(run).entries
    assert all(entries.get(f"checkpoints/{path.name}") == "tree" for path in checkpoints)
    assert (run / LOCK_FILE).is_file()  # stale file, no stale lock:
    code, output = call(_train(run, "train.max_steps=3", flags=("--resume",)), capsys)
    assert code == 0 and "(step 2)" in output, output[-3000:]
    assert not (run / LOCK_FILE).exists()


# ---------------------------------------------------------------- a full disk


def test_a_full_disk_during_the_final_save_keeps_the_model_and_its_recipe(run: Path) -> None:
    """Resumed from 2 to 3 steps, the final save fails: exit 4 naming the path and the space needed; the
    2-step model and the recipe that describes it are unchanged (before issue 27 the recipe said 3)."""
    top = {name: (run / name).read_bytes() for name in ("config.json", "model.safetensors", "recipe.yaml")}
    result = _cli(*_train(run, "train.max_steps=3", flags=("--resume",)), PYTHONPATH=str(FULL_DISK_HOOK),
                  HFSSL_TEST_FULL_DISK="*/.tmp-final-*/model.safetensors")
    _refused(result, EXIT_STORAGE, "the disk is full", str(run / "model.safetensors"), "MiB needed", "--resume")
    assert {name: (run / name).read_bytes() for name in top} == top
    assert "max_steps: 2" in (run / "recipe.yaml").read_text()
    assert not list(run.glob(".tmp-*")) and not any(name.startswith(".tmp-") for name in read_manifest(run).entries)
    assert (run / "checkpoints" / "step-00000003" / "trainer_state.json").is_file()  # the work is kept


def test_a_full_disk_during_an_export_the_card_or_the_results_changes_nothing(tmp_path: Path, run: Path) -> None:
    before = snapshot(tmp_path)
    result = _cli("export", str(run), PYTHONPATH=str(FULL_DISK_HOOK),
                  HFSSL_TEST_FULL_DISK=str(run / ".encoder.tmp-*" / "model.safetensors"))
    _refused(result, EXIT_STORAGE, "the disk is full", str(run / "encoder"), "MiB needed")
    result = _cli("export", str(run), "--output", str(tmp_path / "out"), PYTHONPATH=str(FULL_DISK_HOOK),
                  HFSSL_TEST_FULL_DISK="*/.out.tmp-*/model.safetensors")
    _refused(result, EXIT_STORAGE, "the disk is full", str(tmp_path / "out"), "MiB needed")
    result = _cli("card", str(run), PYTHONPATH=str(FULL_DISK_HOOK), HFSSL_TEST_FULL_DISK="*/.README.md.*")
    _refused(result, EXIT_STORAGE, "the disk is full", str(run / "README.md"), "needed")
    result = _cli("eval", str(run), "--protocol", "knn", PYTHONPATH=str(FULL_DISK_HOOK),
                  HFSSL_TEST_FULL_DISK="*/.eval_results.json.*")
    _refused(result, EXIT_STORAGE, "the disk is full", str(run / "eval_results.json"), "needed")
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- modes


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_exported_weights_and_results_follow_the_umask(umask: int, tmp_path: Path, run: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from hfssl.evaluation.runner import write_eval_results

    previous = os.umask(umask)
    try:
        assert call(["export", str(run), "--output", str(tmp_path / "out")], capsys)[0] == 0
        assert call(["export", str(run)], capsys)[0] == 0
        write_eval_results({"results": []}, tmp_path / "eval_results.json", merge=False)
    finally:
        os.umask(previous)
    files, folders = 0o666 & ~umask, 0o777 & ~umask
    for path in [tmp_path / "out", run / "encoder"]:
        assert stat.S_IMODE(path.stat().st_mode) == folders, path
        for item in path.iterdir():
            assert stat.S_IMODE(item.stat().st_mode) == files, item
    assert stat.S_IMODE((tmp_path / "eval_results.json").stat().st_mode) == files
    trained = 0o666 & ~current_umask()  # the run was trained under this process's own umask
    for path in (run / "model.safetensors", run / "checkpoints" / "step-00000002" / "model.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) == trained, path  # safetensors alone would make it 0600


def test_only_the_main_process_of_a_launch_takes_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the Accelerator exists the launchers' rank decides (torchrun's RANK, an MPI rank); the DDP
    end-to-end test (tests/training/test_train_e2e.py) trains two real processes in one folder."""
    from accelerate import PartialState

    from hfssl.files import folder_lock, holds_lock
    from hfssl.training.run_directory import is_main_process

    monkeypatch.setattr(PartialState, "_shared_state", {})
    for name, value, main in (("RANK", "1", False), ("RANK", "0", True), ("PMI_RANK", "3", False)):
        with monkeypatch.context() as patch:
            patch.delenv("RANK", raising=False)
            patch.setenv(name, value)
            assert is_main_process() is main
    with folder_lock(tmp_path / "f", "a test"), folder_lock(tmp_path / "f", "a test"):  # re-entrant
        assert holds_lock(tmp_path / "f") and json.loads((tmp_path / "f" / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / "f").exists()  # created for the lock, removed again: nothing was written there
