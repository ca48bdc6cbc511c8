"""Timing shared by the side-by-side benchmark scripts (``bench_clm.py``, ``bench_mlm.py``, ``bench_simcse.py``):
each imports it from this folder (a script's own folder is first on ``sys.path``)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

from hfssl.training.trainer import TrainerCallback


class StepTimer(TrainerCallback):
    """Wall-clock and CPU time at the end of every optimiser step; what is reported is measured from the end of
    the first step to the end of the last (data preparation, compilation and the first step are not counted)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def tick(self) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def on_step_end(self, step: int, model: Any, data: Any, accelerator: Any) -> dict[str, float]:
        """As an hfssl training callback (``train(callbacks=[timer])``): one tick per optimiser step."""
        self.tick()
        return {}

    @property
    def steps(self) -> int:
        return len(self.wall)

    @property
    def timed_steps(self) -> int:
        return max(0, len(self.wall) - 1)

    @property
    def seconds(self) -> float:
        return self.wall[-1] - self.wall[0] if self.wall else 0.0

    @property
    def cpu_seconds(self) -> float:
        return self.cpu[-1] - self.cpu[0] if self.cpu else 0.0

    @property
    def cores(self) -> float:
        """CPU s / wall s over the timed steps (2.0: both cores of a 2-core machine busy)."""
        return self.cpu_seconds / max(self.seconds, 1e-9)

    @property
    def median_step_seconds(self) -> float:
        return statistics.median(b - a for a, b in zip(self.wall, self.wall[1:])) if self.timed_steps else 0.0

    def per_second(self, items_per_step: float) -> float:
        """Items (tokens, sentences) per second over the timed steps."""
        return items_per_step * self.timed_steps / max(self.seconds, 1e-9)


def interleaved_medians(steps: dict[str, Callable[[], None]], rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Run every callable once per round, round after round (so that the load of a shared machine hits all alike),
    after one warm-up round: each one's median seconds and its cores used (CPU s / wall s)."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu = {name: 0.0 for name in steps}
    for round_index in range(rounds + 1):
        for name, step in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            if round_index:
                times[name].append(time.perf_counter() - start)
                cpu[name] += time.process_time() - start_cpu
    medians = {name: statistics.median(values) for name, values in times.items()}
    return medians, {name: cpu[name] / max(sum(times[name]), 1e-9) for name in steps}


def train_language_model(recipe: Any, out: Path, method: str) -> dict[str, Any]:
    """Train ``recipe`` (a ``clm`` or ``mlm`` recipe) with hfssl's engine into ``out/run``, timed per step, and export
    ``out/encoder``: the timer, the mean real tokens per packed row, the row count and the final loss."""
    from hfssl.export import ExportContext
    from hfssl.registry import get_method
    from hfssl.training.trainer import train

    timer = StepTimer()
    result = train(recipe, out / "run", callbacks=[timer], overwrite=True)
    get_method(method).export(result.model, out / "encoder", ExportContext(recipe, out / "run", out / "run"))
    lengths = result.data.train_dataset["length"]
    return {"timer": timer, "row_tokens": float(sum(lengths) / len(lengths)), "rows": len(lengths),
            "final_loss": result.final_loss}
