"""Launch a function of a tests/ worker module on two real gloo processes (``torch.distributed.run``).

Each rank saves ``{prefix}rank{r}.pt`` (a dict with at least ``"rank"``) into ``out_dir``; the
results come back in rank order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

TESTS = Path(__file__).resolve().parent


def run_two_ranks(module: str, function: str, out_dir: Path, prefix: str, timeout: int = 300) -> list[dict[str, Any]]:
    """Run ``module.function(out_dir)`` on 2 processes (one thread each) and load every rank's results."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import {module}; {module}.{function}({str(out_dir)!r})"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--no-python", sys.executable, "-c", code]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, f"torchrun failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    results = [torch.load(Path(out_dir) / f"{prefix}rank{rank}.pt", weights_only=False) for rank in range(2)]
    assert [result["rank"] for result in results] == [0, 1]
    return results
