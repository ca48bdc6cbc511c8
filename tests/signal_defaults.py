"""What the tests that send signals to a child process rely on: the signals' default handlers.

A process started with SIGINT ignored (``&`` in a non-interactive shell, as in ``nohup pytest &`` in a
script; some CI runners) passes the ignore on to every child through ``exec``; Python then installs no
Ctrl-C handler, and hfssl rightly leaves an ignored signal alone, so a test that sends SIGINT would see
nothing happen.
Such a test starts its child with ``preexec_fn=restore_default_signals``, or, in its own process,
holds :func:`default_signal_handlers` around what it does.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

#: The signals hfssl stops a training run on (hfssl.training.trainer.STOP_SIGNALS).
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def restore_default_signals() -> None:
    """``preexec_fn`` of a child process: every stop signal back to the system's default before
    ``exec``, so that the child's Python installs its own Ctrl-C handler as in a terminal."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


@contextmanager
def default_signal_handlers() -> Iterator[None]:
    """In this process: Python's Ctrl-C handler and the default SIGTERM/SIGUSR1 for the duration,
    whatever the test runner was started with; the previous handlers afterwards."""
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in SIGNALS[1:]:
        signal.signal(signum, signal.SIG_DFL)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
