"""Evaluation tests: one BLAS thread.

The test machine has two cores shared by several processes; OpenBLAS's default of one thread per
core then spends most of its time waiting (the L-BFGS fits of the linear probe ran ~15x slower
than single-threaded). The results do not depend on the thread count.
"""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _single_blas_thread():
    with threadpool_limits(limits=1, user_api="blas"):
        yield
