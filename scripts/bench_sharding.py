#!/usr/bin/env python
"""Sharding benchmark: DINO on a ViT, two CPU processes, DDP against FSDP2 (issue 28's BENCHMARKS.md rows).

For each strategy the script runs itself as the training script of a launcher (DDP: ``torchrun
--nproc_per_node 2``; FSDP2: ``accelerate launch --config_file recipes/accelerate/fsdp2_cpu_2proc.yaml``), so
each strategy runs as a user's launch would, in fresh processes. Each process trains DINO on the digits
(16 px, 2 global + 4 local crops) with a ViT encoder (``--width``/``--depth``; the defaults are a ViT-Tiny:
192 wide, 12 blocks, 3 heads) through the real engine and reports:

* images/s: optimiser steps after the first ``--warmup`` ones, times the global batch (dataset images, not
  crops), over their wall time, measured on the main process;
* the cores each process used over the timed steps (its CPU seconds, every thread, / wall seconds);
* the peak RSS of each process (``ru_maxrss``);
* the parameter memory each process holds (its local shards under FSDP2: about half of DDP's) and the
  optimiser state it holds (AdamW's moments, sharded likewise), read from the prepared model and optimiser.

Usage (on a quiet machine; the lead records the row in BENCHMARKS.md with the command)::

    python scripts/bench_sharding.py --steps 30 --warmup 5 --batch-size 64 --threads 1 --output bench_sharding.json
    python scripts/bench_sharding.py --quick      # a few steps of a tiny ViT: a smoke test of the script
    python scripts/bench_sharding.py --precision bf16 ...  # both in bf16 autocast (CPUs with native bf16)

Results are printed as a Markdown table, and written as JSON with ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: How each strategy is launched: DDP with plain torchrun (at this commit ``accelerate launch`` with
#: ``cpu_2proc.yaml`` or ``--num_processes 2`` starts one CPU process only: issue 28 item 0), FSDP2 with its
#: Accelerate config.
LAUNCH = {"DDP": ["torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
          "FSDP2": ["accelerate.commands.launch", "--config_file",
                    str(REPO / "recipes" / "accelerate" / "fsdp2_cpu_2proc.yaml")]}

#: The Accelerate ``distributed_type`` each launch must give (FSDP2 on CPUs: hfssl.training.sharding.enable_cpu_fsdp).
EXPECTED = {"DDP": "MULTI_CPU", "FSDP2": "FSDP"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per strategy")
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of images/s")
    parser.add_argument("--batch-size", type=int, default=64, help="images per process and step")
    parser.add_argument("--width", type=int, default=192, help="ViT hidden size")
    parser.add_argument("--depth", type=int, default=12, help="ViT blocks")
    parser.add_argument("--heads", type=int, default=3, help="ViT attention heads")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (OMP_NUM_THREADS)")
    parser.add_argument("--precision", default="no", choices=("no", "bf16"),
                        help="train.mixed_precision, the same for both strategies (default: float32)")
    parser.add_argument("--strategies", nargs="+", default=list(LAUNCH), choices=list(LAUNCH))
    parser.add_argument("--quick", action="store_true", help="4 steps of a 32-wide, 2-block ViT, batch 8")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a launched process: its result file
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.batch_size, args.width, args.depth, args.heads = 4, 1, 8, 32, 2, 2
    if args.warmup >= args.steps:
        parser.error(f"--warmup ({args.warmup}) must be below --steps ({args.steps})")
    return args


def overrides(args: argparse.Namespace) -> list[str]:
    backbone = (f"{{model_type: vit, image_size: 16, patch_size: 4, num_channels: 1, hidden_size: {args.width}, "
                f"num_hidden_layers: {args.depth}, num_attention_heads: {args.heads}, "
                f"intermediate_size: {4 * args.width}}}")
    # The precision quoted: YAML reads a bare no as false.
    return [f"model.backbone_config={backbone}", f"train.mixed_precision='{args.precision}'",
            f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}",
            "train.sync_batchnorm=false", "model.freeze_last_layer_epochs=0", "train.checkpoint_every=100000",
            "train.progress_bar=false", "train.trackers=[]", "train.knn_every=null", "eval.protocols=[]",
            "train.log_every=100000", "train.monitor_every=100000"]


class StepClock(logging.Handler):
    """The wall time at the end of each optimiser step, from the engine's per-step debug record ("step %d: %s",
    written after the step's scheduled values are set). Not a training callback: under FSDP2 the engine
    all-gathers the parameters around callbacks, which would add a gather per step to FSDP2's time only."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.times: dict[int, float] = {}
        self.cpu: dict[int, float] = {}  # this process's CPU seconds (every thread) at the same moments

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "step %d: %s":
            self.times[int(record.args[0])] = time.perf_counter()
            self.cpu[int(record.args[0])] = time.process_time()


def _local_bytes(tensors) -> int:  # noqa: ANN001
    from hfssl.training.sharding import local_tensor

    return sum(local_tensor(t).numel() * local_tensor(t).element_size() for t in tensors if hasattr(t, "numel"))


def worker(args: argparse.Namespace) -> None:
    """One launched process: train, then write this process's figures to ``args.worker`` + rank."""
    import torch

    from hfssl.recipe import load_recipe
    from hfssl.training.trainer import train

    torch.set_num_threads(args.threads)
    clock = StepClock()
    out = Path(args.worker)
    recipe = load_recipe(REPO / "recipes" / "dino" / "digits.yaml", overrides(args))
    trainer_logger = logging.getLogger("hfssl.training.trainer")
    trainer_logger.addHandler(clock)
    trainer_logger.setLevel(logging.DEBUG)
    result = train(recipe, out / "run")
    missing = [step for step in (args.warmup, args.steps) if step not in clock.times]
    if missing:
        raise SystemExit(f"no end time recorded for step(s) {missing}: the engine's per-step record changed")
    accelerator = result.accelerator
    model, optimizer = accelerator._models[0], accelerator._optimizers[0].optimizer  # as prepared: sharded or not
    timed = args.steps - args.warmup
    seconds = clock.times[args.steps] - clock.times[args.warmup]
    figures = {
        "strategy": accelerator.distributed_type.value, "processes": accelerator.num_processes,
        "images_per_second": timed * args.batch_size * accelerator.num_processes / seconds,
        "cores_used": (clock.cpu[args.steps] - clock.cpu[args.warmup]) / seconds,  # CPU s / wall s, timed steps
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameter_mib": _local_bytes(model.parameters()) / 2**20,
        "optimizer_state_mib": _local_bytes(value for state in optimizer.state.values() for value in state.values()
                                            if torch.is_tensor(value) and value.dim() > 0) / 2**20,
        "full_parameter_mib": sum(p.numel() * p.element_size() for p in result.model.parameters()) / 2**20
        if accelerator.is_main_process else None,
    }
    (out / f"rank{accelerator.process_index}.json").write_text(json.dumps(figures))


def launch(args: argparse.Namespace, name: str, folder: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", *LAUNCH[name], str(Path(__file__).resolve()),
               "--worker", str(folder), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--batch-size", str(args.batch_size), "--width", str(args.width), "--depth", str(args.depth),
               "--heads", str(args.heads), "--threads", str(args.threads), "--precision", args.precision]
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"{name} failed:\n{completed.stderr[-4000:]}")
    missing = [rank for rank in range(2) if not (folder / f"rank{rank}.json").is_file()]
    if missing:
        raise SystemExit(f"{name}: process(es) {missing} reported nothing: the launch did not start two ranks")
    ranks = [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(2)]
    trained = {(rank["strategy"], rank["processes"]) for rank in ranks}
    if trained != {(EXPECTED[name], 2)}:
        raise SystemExit(f"{name}: the processes trained as {sorted(trained)}, not ({EXPECTED[name]!r}, 2)")
    return ranks


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-sharding-") as temporary:
        for name in args.strategies:
            results[name] = launch(args, name, Path(temporary) / name)
    size = f"ViT {args.width}x{args.depth} (DINO, digits 16 px, 2+4 crops)"
    print(f"\n{size}, {'float32' if args.precision == 'no' else args.precision}, "
          f"2 CPU processes x {args.threads} thread(s), batch {args.batch_size}/process, "
          f"{args.steps} steps ({args.warmup} warm-up)\n")
    print("| strategy | images/s | cores used per process (CPU s / wall s) | peak RSS per process (MiB) | "
          "parameters per process (MiB) | optimiser state per process (MiB) | full model parameters (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, ranks in results.items():
        def per_process(key: str, digits: int, ranks: list[dict] = ranks) -> str:
            return " / ".join(f"{rank[key]:.{digits}f}" for rank in ranks)

        print(f"| {name} | {ranks[0]['images_per_second']:.1f} | {per_process('cores_used', 2)} | "
              f"{per_process('peak_rss_mib', 0)} | "
              f"{per_process('parameter_mib', 2)} | {per_process('optimizer_state_mib', 2)} | "
              f"{ranks[0]['full_parameter_mib']:.2f} |")
    if args.output:
        Path(args.output).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
