"""A Jupyter server with the extension as a child process, for the tests that need a real one
(kernels started through its API, restarts, notebooks)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]


def child_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_TFSERVING_")}
    for name in ("runtime", "data", "config"):
        d = tmp_path / f"jupyter-{name}"
        d.mkdir(exist_ok=True)
        env[f"JUPYTER_{name.upper()}_DIR"] = str(d)
    env.update(TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0", PYTHONPATH=str(REPO),
               PYTHONUNBUFFERED="1")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """``jupyter server`` with the extension, as a child process."""

    def __init__(self, root: Path, env: dict[str, str], log: Path, *,
                 app: str = "jupyter_server", root_dir: Path | None = None) -> None:
        """``app``: the module run with ``python -m`` (``jupyterlab`` for JupyterLab);
        ``root_dir``: the server's notebook directory."""
        self.root, self.env, self.log = root, env, log
        self.app, self.root_dir = app, root_dir
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", self.app, "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.open_browser=False",
               f"--IdentityProvider.token={self.token}",
               "--ServerApp.jpserver_extensions={'jupyter_tfserving': True}",
               f"--TFServingApp.model_root={self.root}",
               "--TFServingApp.file_system_poll_wait_seconds=0.2"]
        if self.root_dir is not None:
            cmd.append(f"--ServerApp.root_dir={self.root_dir}")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if self.get("/tfserving/api/models").status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, headers={"Authorization": f"token {self.token}"},
                            timeout=30)

    def post(self, path: str, body: Any = None) -> requests.Response:
        return requests.post(self.url + path, json=body,
                             headers={"Authorization": f"token {self.token}"}, timeout=30)
