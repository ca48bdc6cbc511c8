"""The errors hfssl raises for what a user can fix, each with the exit code the command line returns.

Every error here is a *user* error: its message names the input (a recipe key, a path, a
checkpoint, a step) and the fix, and ``hfssl`` prints that one message without a traceback
(``hfssl --debug ...`` shows it). Anything else that escapes is a bug and keeps its traceback.

| code | meaning |
|---|---|
| 0 | success |
| 1 | an unexpected internal error (a bug: the traceback is printed) |
| 2 | usage, recipe, data, path or run-directory error: nothing was trained or written |
| 3 | a non-finite loss, weights, features or results: training stopped (the newest checkpoint is the last good one), or a diverged model was not scored, described or published |
| 4 | a file could not be written (a full disk, no permission); the previous checkpoint is intact |
| 5 | stopped early: a metric missed the milestone of ``train.early_stop``; a checkpoint of that step was saved |
| 130 | interrupted (Ctrl-C); a checkpoint was saved at the step boundary when possible |
| 143 | stopped by SIGTERM (a scheduler's stop, ``kill``); a checkpoint was saved at the step boundary |
| 138 | stopped by SIGUSR1 (SLURM's ``--signal=USR1@SECONDS`` warning); a checkpoint was saved at the step boundary |

A stop by a signal exits with 128 + the signal's number, the shell's convention (SIGUSR1 is 10 on
Linux; on macOS it is 30, so 158 there).

Plain ``ValueError``, ``FileNotFoundError`` and ``KeyError`` raised while reading inputs (recipes
raise :class:`hfssl.settings.RecipeError`, a ``ValueError``) are usage errors too (code 2).
"""

from __future__ import annotations

import signal
from pathlib import Path

__all__ = [
    "EXIT_OK", "EXIT_INTERNAL", "EXIT_USAGE", "EXIT_NONFINITE", "EXIT_STORAGE", "EXIT_INTERRUPTED", "EXIT_CODES",
    "HfsslError", "UsageError", "RunDirectoryError", "ResumeError", "NonFiniteError", "StorageError",
    "TrainingInterrupted", "InterruptedAtOnce", "EXIT_TERMINATED", "EXIT_USER_SIGNAL", "EXIT_EARLY_STOP", "EarlyStopped",
]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NONFINITE = 3
EXIT_STORAGE = 4
EXIT_EARLY_STOP = 5
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
EXIT_USER_SIGNAL = 128 + getattr(signal, "SIGUSR1", 10)  # 138 on Linux

#: Exit code -> one line, shown by ``hfssl --help`` and in README.md ("Exit codes").
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "unexpected internal error (a bug; the traceback is printed)",
    EXIT_USAGE: "usage, recipe, data, path or run-directory error (nothing was trained)",
    EXIT_NONFINITE: "a non-finite loss, weights, features or results: training stopped (the newest checkpoint is the "
                    "last good one), or a diverged model was not scored, described or published",
    EXIT_STORAGE: "a file could not be written: full disk or no permission (the previous checkpoint is intact)",
    EXIT_EARLY_STOP: "stopped early: a metric missed the milestone of train.early_stop (a checkpoint of that step was "
                     "saved; --resume trains on past it)",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (a checkpoint was saved at the step boundary; continue with --resume)",
    EXIT_USER_SIGNAL: "stopped by SIGUSR1, e.g. SLURM's --signal=USR1@SECONDS (a checkpoint was saved at the step "
                      "boundary; continue with --resume)",
    EXIT_TERMINATED: "stopped by SIGTERM, e.g. a scheduler's time limit or scancel (a checkpoint was saved at the step "
                     "boundary; continue with --resume)",
}


class HfsslError(Exception):
    """Base of hfssl's user errors; ``exit_code`` is what ``hfssl`` returns for it."""

    exit_code: int = EXIT_USAGE


class UsageError(HfsslError, ValueError):
    """An input that cannot be used as given (exit code 2)."""

    exit_code = EXIT_USAGE


class RunDirectoryError(UsageError):
    """An output folder that holds files this run did not write (exit code 2)."""


class ResumeError(UsageError):
    """``--resume`` that cannot continue: nothing to resume, no intact checkpoint, a changed recipe."""


class NonFiniteError(HfsslError, FloatingPointError):
    """A non-finite loss, weights, features or results; nothing was saved, scored, described or
    published from them (exit code 3). ``step`` is the training step, when training found it."""

    exit_code = EXIT_NONFINITE

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


class StorageError(HfsslError, OSError):
    """A file that could not be written (full disk, permissions), with its path (exit code 4)."""

    exit_code = EXIT_STORAGE


class TrainingInterrupted(HfsslError):
    """Training stopped by a signal at a step boundary, after saving a checkpoint: exit code
    128 + ``signum`` (130 for Ctrl-C, 143 for SIGTERM, 138 for SIGUSR1 on Linux)."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str, step: int, checkpoint: Path | None, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


class EarlyStopped(HfsslError):
    """Training stopped at the milestone step of ``train.early_stop`` because the metric missed it, after saving a
    checkpoint of that step (exit code 5). Nothing is exported, evaluated or described: the run is not finished,
    and ``--resume`` continues it past the milestone (which is not checked again)."""

    exit_code = EXIT_EARLY_STOP

    def __init__(self, message: str, step: int, checkpoint: Path, metric: str, value: float) -> None:
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint
        self.metric = metric
        self.value = value


class InterruptedAtOnce(KeyboardInterrupt):
    """A second Ctrl-C during training, a second or more after the first stop signal: the run stops at
    once, without a checkpoint (exit code 128 + ``signum``, 130). A ``KeyboardInterrupt``, so that code which cleans up after Ctrl-C does it here too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)
