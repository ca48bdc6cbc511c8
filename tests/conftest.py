"""Shared test settings: offline Hub, quiet progress bars, small thread counts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# train.mixed_precision: auto (the default) would train in bf16 on a CPU with AMX or AVX512-BF16 and in
# float32 elsewhere: the suite's expectations (float32 references, exact equalities) must not depend on the
# CPU it runs on, so auto means float32 here (hfssl.training.precision); tests/training/test_precision.py
# checks auto itself, with the capability mocked. HFSSL_AUTO_MIXED_PRECISION= (empty) lets the hardware decide.
os.environ.setdefault("HFSSL_AUTO_MIXED_PRECISION", "no")

import pytest  # noqa: E402
import torch  # noqa: E402

# Under pytest-xdist (scripts/test.sh runs two workers on CI's two cores) each worker computes on one thread,
# so the two workers together use the cores once instead of oversubscribing them.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test that sets torch's thread count (tests/hub: one thread, for bit-equal comparisons) does not
    leave it set for the tests that run after it in the same process."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    yield


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Accelerate keeps one process-wide AcceleratorState; a test that trains with other settings
    (mixed precision) needs a fresh one, as in accelerate's own AccelerateTestCase.tearDown."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
