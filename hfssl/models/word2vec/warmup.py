"""word2vec's numba kernels, loaded (or compiled) on a background thread while the run reads its data.

The first training step used to pay for importing numba (~0.4 s of CPU), loading the two kernels from
numba's disk cache (~0.2-0.3 s) or, on the first run after an install, compiling them (~5 s), while the
second core waited. :func:`load_kernels_in_background`, called by word2vec's data hook before it reads
the corpus, starts a thread that does all of it with ``Dispatcher.compile`` (no kernel runs, so numba's
workqueue thread pool, which must not be entered by two threads at once, is not started there). Much of
that time is spent without the GIL (LLVM, reading the cache), so it overlaps the corpus, vocabulary and
model set-up of the main thread. Nothing waits for the thread: numba's compiler lock makes a step that
comes first wait for the compilation in progress, then find it done. Any failure is logged at DEBUG and
left to the step, which compiles and reports as it always did.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

_threads: dict[tuple[str, str, Any, Any, Any, Any], threading.Thread] = {}
_lock = threading.Lock()


def load_kernels_in_background(config: Any) -> threading.Thread | None:
    """Start loading (or compiling) the numba kernels a step with ``config`` (a ``Word2VecConfig``) calls,
    once per process and set of argument types; returns the thread (``None`` when nothing is to load:
    another kernel, or already started)."""
    if config.kernel != "numba":
        return None
    key = (config.architecture, "float32", config.window, config.negative_block_size, config.shared_negatives,
           config.cbow_mean)
    with _lock:
        if key in _threads:
            return None
        thread = threading.Thread(target=_load, args=(config,), name="hfssl-word2vec-kernels", daemon=True)
        _threads[key] = thread
    thread.start()
    return thread


def _load(config: Any) -> None:
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        from hfssl.models.word2vec import kernels  # noqa: PLC0415 - numba's import is part of what moves here

        compiled, loaded = [], []
        for function, signature in kernels.step_signatures(config):
            hits, misses = sum(function.stats.cache_hits.values()), sum(function.stats.cache_misses.values())
            function.compile(signature)
            if sum(function.stats.cache_misses.values()) > misses:
                compiled.append(function.__name__)
            elif sum(function.stats.cache_hits.values()) > hits:
                loaded.append(function.__name__)
    except Exception:  # noqa: BLE001 - the training step compiles (and reports) as it always did
        logger.debug("loading word2vec's kernels in the background failed; the first step will", exc_info=True)
        return
    parts = ([f"compiled {' and '.join(compiled)}" + (", cached on disk for later runs" if kernels.CACHED
                                                       else ", not cached: see the warning above")]
             if compiled else []) + ([f"loaded {' and '.join(loaded)} from numba's disk cache"] if loaded else [])
    how = "; ".join(parts) or "already loaded in this process"
    logger.info("word2vec's %s kernels ready in %.1f s (%s; %.1f s of this thread's CPU), beside the data set-up",
                config.architecture, time.perf_counter() - start, how, time.thread_time() - cpu)
