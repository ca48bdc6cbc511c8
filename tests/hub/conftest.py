"""Fixtures for the publishing tests: a local Hub server, an online-to-it environment, tiny runs.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_HUB_DISABLE_XET`` into
``huggingface_hub.constants`` at import time, and the project's conftest makes the whole suite
offline. ``hub_env`` therefore sets the environment *and* patches those constants (monkeypatch
restores both); fresh processes get the environment from ``hub_fixtures.subprocess_env``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_fixtures import TOKEN, USER, make_run
from hub_server import HubServer


@pytest.fixture
def hub_server() -> Iterator[HubServer]:
    server = HubServer(tokens={TOKEN: USER}).start()
    yield server
    server.stop()


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch, hub_server: HubServer, tmp_path: Path) -> HubServer:
    """Point huggingface_hub (in this process) at the local server, online, with the test token."""
    from huggingface_hub import constants

    hf_home = tmp_path / "hf_home"
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "ENDPOINT", hub_server.endpoint)
    # Downloads in this process (hf_hub_download, snapshot_download) build their URLs from this template.
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub_server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    # No token saved by `hf auth login` on this machine may take part in the tests.
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(hf_home / ".agent_harnesses.json"))
    return hub_server


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete SimCLR run directory (model, recipe, eval, encoder, picture, checkpoints, logs). Read-only."""
    return make_run(tmp_path_factory.mktemp("simclr") / "run")


@pytest.fixture(scope="session")
def tiny_mae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete MAE run directory (ViT encoder, reconstructions picture). Read-only."""
    return make_run(tmp_path_factory.mktemp("mae") / "run", "mae")
