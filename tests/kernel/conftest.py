"""Fixtures of the kernel-side tests: no server to find, or a real embedded one."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_tfserving.kernel import client as client_module
from jupyter_tfserving.kernel import serving as serve_module
from jupyter_tfserving.kernel.embedded import EmbeddedServer


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch):
    """No server to find: empty runtime dir, no extension variables, fresh data dir."""
    for name in ("RUNTIME", "DATA"):
        d = tmp_path / name.lower()
        d.mkdir()
        monkeypatch.setenv(f"JUPYTER_{name}_DIR", str(d))
    monkeypatch.delenv(client_module.ENV_URL, raising=False)
    monkeypatch.delenv(client_module.ENV_TOKEN, raising=False)
    serve_module.reset_connection()
    yield tmp_path
    serve_module.reset_connection()


@pytest.fixture
def server(isolated: Path, monkeypatch):
    """An EmbeddedServer (a real ModelService and the extension's routes on a thread) that
    ``connect()`` finds through the environment, as a kernel finds its Jupyter server."""
    srv = EmbeddedServer(str(isolated / "models"), file_system_poll_wait_seconds=0.1)
    srv.start()
    monkeypatch.setenv(client_module.ENV_URL, srv.url)
    monkeypatch.setenv(client_module.ENV_TOKEN, srv.token)
    yield srv
    srv.stop()


@pytest.fixture
def boards():
    """Dashboards made by a test, closed (threads stopped) whatever happens."""
    made: list = []
    yield made
    for board in made:
        board.close()
