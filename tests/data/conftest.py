"""Fixtures of the image data tests: an isolated datasets cache and a folder of tiny real image files."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from image_files import write_image_folder


@pytest.fixture(autouse=True)
def _isolated_datasets_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Builders write their Arrow caches under the test's own folder, not ~/.cache/huggingface."""
    cache = tmp_path_factory.mktemp("hf_datasets_cache")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    datasets.disable_progress_bars()
    return cache


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "pets")
