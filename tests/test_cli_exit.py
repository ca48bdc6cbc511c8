"""The ``hfssl`` program ends through :func:`hfssl.process_exit.exit_now` (``hfssl.cli.main`` without
``argv``): what a normal exit does still happens (other threads finish, exit handlers run, buffered
output reaches the pipe), and the exit code is the command's. The module is loaded from its file alone,
so the test costs no torch import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_exit_now_finishes_threads_handlers_and_output(tmp_path):
    marker = tmp_path / "written-by-thread"
    script = (
        "import atexit, importlib.util, sys, threading, time\n"
        f"spec = importlib.util.spec_from_file_location('process_exit', {str(REPO / 'hfssl' / 'process_exit.py')!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "def slow():\n"
        "    time.sleep(0.5)\n"
        f"    open({str(marker)!r}, 'w').write('done')\n"
        "threading.Thread(target=slow).start()\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "sys.stdout.write('buffered, ')\n"  # no newline, stdout a pipe: still in the buffer
        "module.exit_now(3)\n"
        "print('not reached')\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 3, completed.stderr[-2000:]
    assert completed.stdout == "buffered, handler ran\n"
    assert marker.read_text() == "done"
