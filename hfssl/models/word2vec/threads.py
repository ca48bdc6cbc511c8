"""Threading for word2vec's small per-step tensors: one OpenMP thread per op, parallel blocks on threads."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def single_threaded_ops() -> Iterator[None]:
    """Run torch ops with one intra-op (OpenMP) thread inside the block, restoring the setting after.

    word2vec's per-step tensors are small: OpenMP gains little on them, and when the cores are
    shared with other processes every parallel region waits for a descheduled thread (measured:
    0.7 ms -> 32 ms for one batch's inputs on two busy cores). Parallelism comes from worker
    threads over blocks instead (:func:`run_parallel`).
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_parallel(function: Any, count: int) -> list[Any]:
    """Run ``function(0..count-1)`` on ``count`` threads (``torch.get_num_interop_threads()`` at most).

    Torch ops release the GIL, so runs of blocks proceed in parallel. Called inside
    :func:`single_threaded_ops`: worker threads start with the process-wide setting of one thread.
    """
    if count == 1:
        return function(0)
    with ThreadPoolExecutor(max_workers=count) as pool:
        return [result for part in pool.map(function, range(count)) for result in part]
