"""Schedulers' signals (issue 28, item 5): SIGTERM and SIGUSR1, like Ctrl-C, save a checkpoint at the
end of the step in which they arrive, on every process, and the run exits with 128 + the signal's
number, no traceback, the message naming ``--resume``; ``--resume`` then continues exactly.

The signal is real (``os.kill`` of the process itself, from inside a given step's forward, so the step
it lands in is known and the test does not race the training): SIGTERM in one process through the real
command line; SIGTERM, then SIGUSR1 after a resume, in two gloo processes (``torch.distributed.run``)
where only one rank is signalled, as SLURM signals only the batch step.

The suite started with SIGINT ignored (``pytest &`` in a script, some CI runners): the Ctrl-C tests of
tests/test_bad_inputs.py restore the handlers they rely on (tests/signal_defaults.py); a test here runs
them in that state, cheaply (the in-process one, and the start of a child as the subprocess one starts it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfssl.cli import main as hfssl_main
from hfssl.errors import EXIT_TERMINATED, EXIT_USER_SIGNAL
from signal_defaults import default_signal_handlers, restore_default_signals

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
#: A tiny SimCLR on the digits: five steps of a ResNet of two 8/16-channel stages.
ARGS = ["recipes/simclr/digits.yaml",
        "model.backbone_config={model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 8, "
        "hidden_sizes: [8, 16], depths: [1, 1]}", "model.projection_hidden_dim=32", "model.projection_dim=16",
        "train.batch_size=16", "eval.protocols=[]", "train.trackers=[]", "train.progress_bar=false",
        "train.knn_every=null", "train.log_every=1", "train.max_steps=5", "train.checkpoint_every=100"]

#: Runs ``hfssl.cli.main`` on ``sys.argv[1:]`` (or ``{finish}``), sending each signal of ``{signals}``
#: (``{step: (rank, name)}``, the global step) once, from inside that step's forward on that process only.
SIGNAL_IN_STEP = """
import os, signal, sys
import hfssl.training.trainer as trainer
original = trainer._forward_backward
signals = {signals}
def forward_backward(run, batch, step):
    rank, name = signals.get(step, (None, None))
    if rank == run.accelerator.process_index:
        del signals[step]
        os.kill(os.getpid(), getattr(signal, name))
    return original(run, batch, step)
trainer._forward_backward = forward_backward
from hfssl.cli import main
{finish}
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _checkpoints(run: Path) -> list[str]:
    return sorted(path.name for path in (run / "checkpoints").iterdir())


def _step_of(checkpoint: Path) -> int:
    return json.loads((checkpoint / "trainer_state.json").read_text())["state"]["global_step"]


def _assert_same_weights(expected_run: Path, actual_run: Path) -> None:
    expected, actual = load_file(str(expected_run / "model.safetensors")), load_file(str(actual_run / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"{name} differs after the resume"


def test_sigterm_saves_the_step_exits_143_and_resume_continues_exactly(tmp_path: Path) -> None:
    run = tmp_path / "stopped"
    code = SIGNAL_IN_STEP.format(signals={3: (0, "SIGTERM")}, finish="sys.exit(main(sys.argv[1:]))")
    stopped = subprocess.run([sys.executable, "-c", code, "train", *ARGS, "--output-dir", str(run)], cwd=REPO,
                             env=_env(), capture_output=True, text=True, timeout=300, preexec_fn=restore_default_signals)
    assert stopped.returncode == EXIT_TERMINATED == 143, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    assert "interrupted (SIGTERM) at step 3 of 5" in stopped.stderr and "--resume" in stopped.stderr
    assert _checkpoints(run) == ["step-00000003"] and _step_of(run / "checkpoints" / "step-00000003") == 3
    assert not (run / "model.safetensors").exists()

    torch.set_num_threads(1)  # as the stopped process (OMP_NUM_THREADS=1): the same rounding, step for step
    with default_signal_handlers():  # in-process: the trainer installs its handlers in this process too
        assert hfssl_main(["train", *ARGS, "--output-dir", str(run), "--resume"]) == 0
        assert hfssl_main(["train", *ARGS, "--output-dir", str(tmp_path / "uninterrupted")]) == 0
    _assert_same_weights(tmp_path / "uninterrupted", run)


TWO_RANKS = """
import json
from accelerate import PartialState
checkpoints = lambda: sorted(os.listdir(OUT + "/stopped/checkpoints"))
codes, saved = [], []
for extra in ([], ["--resume"], ["--resume"]):  # SIGTERM on rank 1 in step 2, SIGUSR1 on rank 0 in step 4, the rest
    codes.append(main(["train", *ARGS, "--output-dir", OUT + "/stopped", *extra]))
    saved.append(checkpoints())
codes.append(main(["train", *ARGS, "--output-dir", OUT + "/uninterrupted"]))
rank = PartialState().process_index
open(f"{OUT}/codes{rank}.json", "w").write(json.dumps({"codes": codes, "checkpoints": saved}))
"""


def test_sigterm_and_sigusr1_on_one_of_two_processes_stop_both_at_the_same_step(tmp_path: Path) -> None:
    """SIGTERM reaches rank 1 only in step 2, then (resumed) SIGUSR1 rank 0 only in step 4: each time both
    ranks save that step together and return 143, then 138; the run resumed once more ends with the
    uninterrupted two-process run's weights. One launch of two processes runs all four commands."""
    finish = f"ARGS = {ARGS!r}\nOUT = {str(tmp_path)!r}\n" + TWO_RANKS
    code = SIGNAL_IN_STEP.format(signals={2: (1, "SIGTERM"), 4: (0, "SIGUSR1")}, finish=finish)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--no-python", sys.executable, "-c", code]
    result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
                            preexec_fn=restore_default_signals)
    assert result.returncode == 0, result.stderr[-6000:]
    ranks = [json.loads((tmp_path / f"codes{rank}.json").read_text()) for rank in range(2)]
    assert ranks[0] == ranks[1], ranks
    assert ranks[0]["codes"] == [EXIT_TERMINATED, EXIT_USER_SIGNAL, 0, 0], ranks
    assert ranks[0]["checkpoints"] == [["step-00000002"], ["step-00000002", "step-00000004"],
                                       ["step-00000004", "step-00000005"]]  # train.keep_checkpoints: 2
    for stop in ("SIGTERM) at step 2 of 5", "SIGUSR1) at step 4 of 5"):
        assert result.stderr.count(f"interrupted ({stop}") == 2, result.stderr[-6000:]  # one message per rank
    assert "Traceback" not in result.stderr
    _assert_same_weights(tmp_path / "uninterrupted", tmp_path / "stopped")


HAS_CTRL_C_HANDLER = "import signal, sys; sys.exit(0 if signal.getsignal(signal.SIGINT) is signal.default_int_handler else 1)"


def test_the_ctrl_c_tests_pass_when_the_suite_starts_with_sigint_ignored() -> None:
    """``pytest &`` (or ``nohup pytest &``) in a script: SIGINT is ignored in the runner and in every child it
    starts. Here this process takes that state, and the Ctrl-C tests' two parts are checked under it: the
    in-process test passes, and a child started as the subprocess test starts its child has Python's
    Ctrl-C handler (a child started plainly has none: the fact behind the failures of issue 28)."""
    sys.path.insert(0, str(TESTS))
    from test_bad_inputs import test_a_second_ctrl_c_stops_at_once

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        test_a_second_ctrl_c_stops_at_once()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the test put the runner's state back
        plain = subprocess.run([sys.executable, "-c", HAS_CTRL_C_HANDLER], timeout=60)
        restored = subprocess.run([sys.executable, "-c", HAS_CTRL_C_HANDLER], timeout=60,
                                  preexec_fn=restore_default_signals)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert plain.returncode == 1 and restored.returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_is_handled_only_where_it_has_its_default(signum: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first SIGTERM/SIGUSR1 asks for a stop; the same signal again, or a Ctrl-C at once after it, is the
    stop delivered twice (a scheduler signals every process and the launcher passes it on too) and changes
    nothing; a Ctrl-C later stops at once (exit code 130). An ignored signal (``nohup`` ignores SIGHUP, a
    user may ignore SIGTERM) or another program's handler is kept."""
    import hfssl.training.trainer as trainer
    from hfssl.errors import InterruptedAtOnce

    with default_signal_handlers():
        with trainer._InterruptRequest() as interrupt:
            os.kill(os.getpid(), signum)
            assert interrupt.signum == signum  # the handler runs before os.kill returns to this thread
            os.kill(os.getpid(), signum)
            os.kill(os.getpid(), signal.SIGINT)
            assert interrupt.signum == signum
            monkeypatch.setattr(trainer, "AT_ONCE_AFTER_S", 0.0)  # "a second later", without the wait
            with pytest.raises(InterruptedAtOnce) as stopped:
                os.kill(os.getpid(), signal.SIGINT)
            assert stopped.value.signum == signal.SIGINT
        assert signal.getsignal(signum) is signal.SIG_DFL

        def other(number: int, frame: object) -> None: ...

        for kept in (signal.SIG_IGN, other):
            signal.signal(signum, kept)
            with trainer._InterruptRequest() as interrupt:
                assert signal.getsignal(signum) is kept
            assert signal.getsignal(signum) is kept and not interrupt.requested
