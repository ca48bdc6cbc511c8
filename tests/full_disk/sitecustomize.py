"""Test hook (tests only): a full disk at chosen writes of a real ``hfssl`` process.

With ``HFSSL_TEST_FULL_DISK`` set to an ``fnmatch`` pattern of absolute paths, a write to a matching
path fails as a full disk does: ``OSError(ENOSPC)``, after half of the data for safetensors files.
Python loads this module at start-up when its folder is on ``PYTHONPATH``
(``tests/test_run_folder_safety.py`` puts it there), before hfssl, transformers or accelerate import
the functions it wraps: ``open`` / ``io.open`` for writing, ``tempfile.mkstemp`` (the atomic writes'
temporary files) and ``safetensors.torch.save_file`` (model weights, written from Rust). A real
full disk needs root or a small file system, neither of which a test may count on.
"""

import errno
import fnmatch
import os

_PATTERN = os.environ.get("HFSSL_TEST_FULL_DISK")


def _full(path: object) -> bool:
    return isinstance(path, (str, os.PathLike)) and fnmatch.fnmatch(os.path.abspath(os.fspath(path)), _PATTERN)


def _enospc(path: object) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", os.fspath(path))


if _PATTERN:
    import builtins
    import io
    import tempfile

    _open = io.open

    def _open_for_writing(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if any(flag in mode for flag in "wax+") and _full(file):
            raise _enospc(file)
        return _open(file, mode, *args, **kwargs)

    builtins.open = io.open = _open_for_writing

    _mkstemp = tempfile.mkstemp

    def _mkstemp_full(suffix=None, prefix=None, dir=None, text=False):  # noqa: ANN001, ANN202, A002
        if _full(os.path.join(dir or tempfile.gettempdir(), f"{prefix or ''}XXXXXXXX{suffix or ''}")):
            raise _enospc(os.path.join(dir or "", f"{prefix or ''}XXXXXXXX{suffix or ''}"))
        return _mkstemp(suffix, prefix, dir, text)

    tempfile.mkstemp = _mkstemp_full

    import safetensors.torch

    _save_file = safetensors.torch.save_file

    def _save_file_full(tensors, filename, metadata=None):  # noqa: ANN001, ANN202
        if _full(filename):
            _save_file(tensors, filename, metadata)
            with _open(filename, "r+b") as handle:  # half of it reached the disk
                handle.truncate(os.path.getsize(filename) // 2)
            raise _enospc(filename)
        return _save_file(tensors, filename, metadata)

    safetensors.torch.save_file = _save_file_full
