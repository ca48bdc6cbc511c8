"""What a word2vec process does before its first step: the numba kernels are loaded (or compiled) on a
background thread with exactly the argument types a step then calls them with, and a process with no
writable cache folder still imports and compiles them."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

from hfssl.models.word2vec import Word2VecConfig, Word2VecModel, kernels
from hfssl.models.word2vec.data import InputBuilder, collate_token_rows
from hfssl.models.word2vec.warmup import load_kernels_in_background


@pytest.mark.parametrize("architecture", ["skip-gram", "cbow"])
def test_background_load_has_the_types_of_a_real_step(monkeypatch, caplog, architecture):
    config = Word2VecConfig(vocab_size=60, vector_size=8, architecture=architecture, window=3, workers=1,
                            word_counts=[0] + [500 // rank for rank in range(1, 60)])
    with caplog.at_level(logging.INFO, logger="hfssl.models.word2vec.warmup"):
        thread = load_kernels_in_background(config)
        thread.join(timeout=600)
    assert f"word2vec's {architecture} kernels ready" in caplog.text
    assert load_kernels_in_background(config) is None  # once per process
    expected = {function.__name__: signature for function, signature in kernels.step_signatures(config)}

    called = {}
    for name in expected:  # record the types of the real calls, then run them
        function = getattr(kernels, name)

        def recording(*args, _function=function, _name=name):  # noqa: ANN002, ANN202
            called[_name] = tuple(numba.typeof(value) for value in args)
            return _function(*args)

        monkeypatch.setattr(kernels, name, recording)
    builder = InputBuilder(np.asarray(config.word_counts), config)
    rows = [{"input_ids": np.random.default_rng(0).integers(1, 60, 300).astype(np.int32)} for _ in range(2)]
    model = Word2VecModel(config)
    model.on_train_step_start(1, {"lr": 0.025})
    model(**builder(collate_token_rows(rows), torch.Generator().manual_seed(0)))
    assert called == expected


def test_kernels_import_and_compile_where_no_cache_folder_is_writable(tmp_path):
    """A read-only install and home: numba refuses ``cache=True`` at import ("no locator available"); the
    kernels then compile uncached, with one warning naming NUMBA_CACHE_DIR."""
    package = tmp_path / "install"
    package.mkdir()
    shutil.copy(kernels.__file__, package / "kernels.py")
    (package / "__pycache__").write_text("a file where numba wants its cache folder")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    script = ("import logging; logging.basicConfig(level=logging.WARNING)\n"
              "import kernels\n"
              "assert kernels.CACHED is False\n"
              "print(kernels.stream_key(7, 1) == kernels.stream_key(7, 1), kernels.stream_key.stats.cache_path)\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(blocker / "numba"), "HOME": str(blocker),
           "XDG_CACHE_HOME": str(blocker / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    completed = subprocess.run([sys.executable, "-c", script], cwd=package, env=env, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split() == ["True", "None"]  # compiled, no cache file
    assert completed.stderr.count("cannot be cached on disk") == 1 and "set NUMBA_CACHE_DIR" in completed.stderr
    assert not list(Path(tmp_path).rglob("*.nbi"))
