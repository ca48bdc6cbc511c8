"""Every launch form (hfssl/training/launch.py's table), each through real processes on the CPU (gloo):
it trains on every process it asked for, or it is refused before any work, naming the forms to use.

Each run is a few steps of SimCLR on builtin:digits; the processes are what costs, so one test runs two
forms on one run folder (Accelerate's ``--multi_gpu`` starts it, plain ``torchrun`` continues it with
``--resume-or-start``, as a requeued job would) and the two refused forms run at the same time.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hfssl.pipeline import run
from hfssl.recipe import load_recipe
from hfssl.training.launch import LaunchError, check_launch, machine_count

REPO = Path(__file__).resolve().parents[2]
RECIPE = "recipes/simclr/digits.yaml"
QUICK = ["train.batch_size=32", "eval.protocols=[]", "train.progress_bar=false", "train.knn_every=null",
         "train.log_every=1", "train.checkpoint_every=2"]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               **extra)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # a launcher inside a launched test process must start from a clean slate
    return env


def _free_port() -> int:
    """A port no other test run on this machine holds (the launchers' default 29500 is shared)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(command: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _ranks_in(checkpoint: Path) -> list[str]:
    return sorted(path.name for path in checkpoint.glob("random_states_*.pkl"))


def _launch_comments(recipe_file: Path) -> str:
    return "".join(line for line in recipe_file.read_text().splitlines(keepends=True) if line.startswith("#"))


def test_multi_gpu_form_starts_and_plain_torchrun_continues_with_resume_or_start(tmp_path, caplog):
    """The issue-28 regression (rank 1: "Default process group has not been initialized" once the trackers
    had ended the group before the pipeline's last barrier), exactly as reported: ``accelerate launch
    --multi_gpu`` with ``ACCELERATE_USE_CPU=1`` and the recipe's TensorBoard tracker. Then a requeued job:
    plain ``torchrun -m hfssl.train ... --resume-or-start`` continues the same folder from its checkpoint,
    and one process continues it after that (the count changed: a warning, not a refusal)."""
    out = tmp_path / "run"
    started = _launch([*ACCELERATE, "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                       "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
                       "-m", "hfssl.train", RECIPE, "--output-dir", str(out), "--resume-or-start",
                       *QUICK, "train.max_steps=2", "train.sync_batchnorm=true"],
                      _env(ACCELERATE_USE_CPU="1"))
    assert started.returncode == 0, started.stderr[-4000:]
    assert "process group has not been initialized" not in started.stderr
    assert started.stdout.count("hfssl: trained 2 steps") == 1  # one summary, from the main process
    assert _ranks_in(out / "checkpoints" / "step-00000002") == ["random_states_0.pkl", "random_states_1.pkl"]
    assert list((out / "logs").rglob("events.out.tfevents.*")), "the TensorBoard tracker wrote nothing"
    comments = _launch_comments(out / "recipe.yaml")
    assert "# launch: 2 processes on 1 machine" in comments
    assert "global batch is 64 examples per optimiser step (32 x 2 processes x 1" in comments
    assert "optim.lr 0.002 is applied as written" in comments
    assert yaml.safe_load((out / "recipe.yaml").read_text())["train"]["batch_size"] == 32  # read back unchanged

    continued = _launch([*TORCHRUN, "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "hfssl.train",
                         RECIPE, "--output-dir", str(out), "--resume-or-start", *QUICK, "train.max_steps=3"], _env())
    assert continued.returncode == 0, continued.stderr[-4000:]
    assert f"resumed from       {out / 'checkpoints' / 'step-00000002'} (step 2)" in continued.stdout
    assert continued.stdout.count("hfssl: trained 3 steps") == 1
    state = json.loads((out / "checkpoints" / "step-00000003" / "trainer_state.json").read_text())["state"]
    assert state["global_step"] == 3
    assert _ranks_in(out / "checkpoints" / "step-00000003") == ["random_states_0.pkl", "random_states_1.pkl"]
    assert (out / "model.safetensors").is_file() and (out / "encoder" / "config.json").is_file()
    assert "3 steps in all" in _launch_comments(out / "recipe.yaml")

    # Requeued on one process: it goes on from the two processes' checkpoint and says it is not exact.
    with caplog.at_level(logging.WARNING, logger="hfssl.training.trainer"):
        result = run(load_recipe(REPO / RECIPE, [*QUICK, "train.max_steps=4", "train.trackers=[]"]), out, resume=True)
    assert result.steps == 4 and result.resumed_step == 3
    assert "was written by 2 processes and this run has 1: the global batch changes from 64 to 32" in caplog.text
    assert "# launch: 1 process on 1 machine" in _launch_comments(out / "recipe.yaml")


def test_config_files_start_every_process(tmp_path):
    """The shipped Accelerate config files: ``cpu_2proc.yaml`` (two processes on one machine), and the
    multi-node file through scripts/slurm_train.sh as a job of two "nodes" of one process each on this
    host (``srun`` and ``scontrol`` stand in for SLURM's: each node's task gets its ``SLURM_NODEID``)."""
    one_machine = tmp_path / "cpu_2proc"
    single = _launch([*ACCELERATE, "--config_file", "recipes/accelerate/cpu_2proc.yaml", "--main_process_port",
                      str(_free_port()), "-m", "hfssl.train", RECIPE, "--output-dir", str(one_machine), *QUICK,
                      "train.max_steps=2", "train.trackers=[]"], _env())
    assert single.returncode == 0, single.stderr[-4000:]
    assert single.stdout.count("hfssl: trained 2 steps") == 1
    assert _ranks_in(one_machine / "checkpoints" / "step-00000002") == ["random_states_0.pkl", "random_states_1.pkl"]

    two_machines, logs = tmp_path / "multi_node", tmp_path / "nodes"
    logs.mkdir()
    env = _env(RECIPE=RECIPE, OUTPUT_DIR=str(two_machines), GPUS_PER_NODE="1", MASTER_PORT=str(_free_port()),
               SLURM_JOB_NODELIST="node[0-1]", SLURM_NNODES="2", SLURM_JOB_ID="28", SRUN_LOG_DIR=str(logs),
               ACCELERATE_USE_CPU="1")
    env["PATH"] = os.pathsep.join([str(_fake_slurm(tmp_path / "bin")), str(Path(sys.executable).parent), env["PATH"]])
    job = _launch(["bash", "scripts/slurm_train.sh", *QUICK, "train.max_steps=2", "train.trackers=[]",
                   'train.mixed_precision="no"'], env)
    errors = "".join(path.read_text()[-3000:] for path in sorted(logs.glob("*.err")))
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:] + errors
    head, other = ((logs / f"node{node}.out").read_text() for node in (0, 1))
    assert head.count("hfssl: trained 2 steps") == 1 and "hfssl: trained" not in other
    assert _ranks_in(two_machines / "checkpoints" / "step-00000002") == ["random_states_0.pkl", "random_states_1.pkl"]
    assert "# launch: 2 processes on 2 machines" in _launch_comments(two_machines / "recipe.yaml")


def _fake_slurm(folder: Path) -> Path:
    """``srun`` and ``scontrol`` for a job of ``SLURM_NNODES`` nodes that all run on this host: srun starts
    its command once per node with that node's ``SLURM_NODEID`` (output in ``SRUN_LOG_DIR/node<N>.*``)."""
    folder.mkdir()
    (folder / "srun").write_text(
        "#!/usr/bin/env bash\n"
        "while [[ \"$1\" == --* ]]; do shift; done\n"
        "pids=()\n"
        "for ((node = 0; node < SLURM_NNODES; node++)); do\n"
        "  SLURM_NODEID=$node SLURM_PROCID=$node \"$@\" > \"$SRUN_LOG_DIR/node$node.out\" "
        "2> \"$SRUN_LOG_DIR/node$node.err\" &\n"
        "  pids+=($!)\n"
        "done\n"
        "status=0\n"
        "for pid in \"${pids[@]}\"; do wait \"$pid\" || status=$?; done\n"
        "exit $status\n")
    (folder / "scontrol").write_text(
        "#!/usr/bin/env bash\nfor ((node = 0; node < SLURM_NNODES; node++)); do echo 127.0.0.1; done\n")
    for tool in ("srun", "scontrol"):
        (folder / tool).chmod(0o755)
    return folder


def test_launches_that_would_start_one_process_are_refused(tmp_path):
    """Without GPUs, Accelerate's simple launcher starts ONE process for ``accelerate launch --num_processes
    2`` (the form README showed) and for a ``distributed_type: MULTI_CPU`` config without mpirun. That
    process used to train alone on the whole data; it is refused before anything is written, naming the
    forms that start several processes."""
    multi_cpu = tmp_path / "multi_cpu.yaml"
    multi_cpu.write_text(yaml.safe_dump({
        "compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_CPU", "num_machines": 1,
        "num_processes": 2, "machine_rank": 0, "mixed_precision": "no", "use_cpu": True}))
    forms = {
        "num_processes": ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                          "--dynamo_backend", "no"],
        "multi_cpu_config": ["--config_file", str(multi_cpu)],
    }
    launched = {name: subprocess.Popen(
        [*ACCELERATE, *options, "--main_process_port", str(_free_port()), "-m", "hfssl.train", RECIPE,
         "--output-dir", str(tmp_path / name), *QUICK, "train.max_steps=2"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name, options in forms.items()}
    for name, process in launched.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode != 0, f"{name}: trained one process\n{stdout[-2000:]}"
        assert "hfssl train: error: accelerate launch started this process alone" in stderr, stderr[-3000:]
        assert "accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml" in stderr
        assert "torchrun --nproc_per_node N -m hfssl.train" in stderr
        assert "[rank" not in stderr and "hfssl: trained" not in stdout
        assert not (tmp_path / name).exists(), f"{name}: the refused launch wrote its folder"


@pytest.mark.parametrize("environ, refused", [
    ({}, False),  # hfssl train, python -m hfssl.train
    ({"ACCELERATE_MIXED_PRECISION": "no"}, False),  # accelerate launch of one process
    ({"ACCELERATE_MIXED_PRECISION": "no", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}, True),
    ({"ACCELERATE_MIXED_PRECISION": "no", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "2"},
     False),  # its torchrun launcher
    ({"ACCELERATE_MIXED_PRECISION": "no", "MASTER_ADDR": "h", "MASTER_PORT": "1", "PMI_SIZE": "4"}, False),  # mpirun
    ({"ACCELERATE_MIXED_PRECISION": "no", "MASTER_ADDR": "h", "MASTER_PORT": "1", "OMPI_COMM_WORLD_SIZE": "4"}, False),
    ({"MASTER_ADDR": "h", "MASTER_PORT": "1"}, False),  # a job script's own variables, no accelerate launch
])
def test_check_launch_reads_the_launchers_variables(environ, refused):
    """The signature of a lone process from Accelerate's simple launcher, and the variables that clear it."""
    if refused:
        with pytest.raises(LaunchError, match="started this process alone"):
            check_launch(environ)
    else:
        check_launch(environ)


def test_machine_count_from_torchrun_variables():
    assert machine_count(4, {"LOCAL_WORLD_SIZE": "2"}) == 2
    assert machine_count(2, {"LOCAL_WORLD_SIZE": "2"}) == 1
    assert machine_count(1, {}) == 1
