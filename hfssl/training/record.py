"""What a run cost: the training loop's wall and CPU time, the examples it saw and where it ran.

:class:`TrainingClock` runs beside the loop. Its totals travel in every checkpoint's
``trainer_state.json`` (``"clock"``), so a resumed run adds its own time to the time before the stop
(the steps after the last checkpoint of a killed run are trained again, and their time is counted
again: that is what the run cost). :func:`training_record` is written beside the final model as
``DIR/training.json``, which ``hfssl compare`` reads for each run's cost columns:

``{"steps", "examples", "seconds", "examples_per_second", "cpu_seconds", "cores_used", "processes",
"device", "device_name", "cpu_capability", "cpu_cores", "mixed_precision", "torch", "segments"}``

``seconds`` is the wall time of the loop (steps, callbacks, checkpoints; not the data set-up, export or
evaluation); ``cpu_seconds`` the main process's CPU time over the same span (all its threads), so
``cores_used = cpu_seconds / seconds`` says how many cores the main process kept busy.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import torch

TRAINING_RECORD_FILE = "training.json"


@dataclass
class TrainingClock:
    """Totals before this process's segment of the run, plus the segment since :meth:`start`."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    examples: int = 0
    segments: int = 0
    _wall_start: float | None = field(default=None, repr=False)
    _cpu_start: float = field(default=0.0, repr=False)

    @classmethod
    def from_saved(cls, saved: dict[str, Any] | None) -> TrainingClock:
        """The totals a checkpoint holds (none in a checkpoint of an hfssl version before the clock)."""
        saved = saved or {}
        return cls(seconds=float(saved.get("seconds", 0.0)), cpu_seconds=float(saved.get("cpu_seconds", 0.0)),
                   examples=int(saved.get("examples", 0)), segments=int(saved.get("segments", 0)))

    def start(self) -> None:
        self._wall_start, self._cpu_start = time.perf_counter(), time.process_time()
        self.segments += 1

    def totals(self) -> dict[str, Any]:
        """The totals up to now, as a checkpoint saves them."""
        wall = cpu = 0.0
        if self._wall_start is not None:
            wall, cpu = time.perf_counter() - self._wall_start, time.process_time() - self._cpu_start
        return {"seconds": self.seconds + wall, "cpu_seconds": self.cpu_seconds + cpu, "examples": self.examples,
                "segments": self.segments}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux: ``AMD EPYC``), else the architecture (``x86_64``)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: torch.device) -> tuple[str, str]:
    """``(kind, name)`` of the device a run trained on: ``("cuda", "NVIDIA H100 80GB HBM3")``, ``("cpu", "AMD EPYC")``."""
    if device.type == "cuda":
        return "cuda", torch.cuda.get_device_name(device)
    return device.type, cpu_model()


def training_record(clock: TrainingClock, steps: int, processes: int, device: torch.device,
                    mixed_precision: str | None) -> dict[str, Any]:
    """``DIR/training.json``'s content (see the module docstring)."""
    totals = clock.totals()
    seconds = totals["seconds"]
    kind, name = device_description(device)
    return {
        "steps": steps,
        "examples": totals["examples"],
        "seconds": round(seconds, 3),
        "examples_per_second": round(totals["examples"] / seconds, 3) if seconds > 0 else None,
        "cpu_seconds": round(totals["cpu_seconds"], 3),
        "cores_used": round(totals["cpu_seconds"] / seconds, 3) if seconds > 0 else None,
        "processes": processes,
        "device": kind,
        "device_name": name,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mixed_precision": mixed_precision or "no",
        "torch": torch.__version__,
        "segments": totals["segments"],
    }


def record_text(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2) + "\n"


__all__ = ["TRAINING_RECORD_FILE", "TrainingClock", "device_description", "record_text", "training_record"]
