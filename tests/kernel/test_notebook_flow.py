"""The notebook flow end to end (issue: "From a notebook").

A real Jupyter server with the extension (a child process), a kernel started through the
server's own REST API and driven over its websocket: ``%load_ext jupyter_tfserving``, train a
tiny Keras model, ``serve`` it, check the REST answer against the model, serve v2 as a 25%
canary and measure the split, promote, roll back, unload; the model keeps serving after the
kernel is shut down and after the server restarts. Then the same flow in a plain IPython
process, where ``serve`` falls back to the embedded server.
"""

from __future__ import annotations

import collections
import datetime
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from ..jupyter_process import REPO, JupyterServer, child_env

CELL_TIMEOUT = 300.0

SETUP = """
%load_ext jupyter_tfserving
import json, numpy as np, keras
def make(seed, scale):
    keras.utils.set_random_seed(seed)
    x = np.random.rand(64, 3).astype("float32")
    y = x @ np.array([[1.0], [2.0], [3.0]], "float32") * scale
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=3, verbose=0)
    return model
probe = np.array([[0.1, 0.2, 0.3], [1.0, -1.0, 2.0]], "float32")
"""
SERVE_V1 = """
model1 = make(1, 1.0)
m1 = serve(model1, name="demo", quiet=True)
print(json.dumps({"version": m1.version, "url": m1.model_url, "token": m1.client.token,
                  "own": model1(probe).numpy().tolist(), "rest": m1.predict(probe).tolist(),
                  "curl": m1.curl()}))
"""
SERVE_V2 = """
model2 = make(2, 5.0)
m2 = serve(model2, name="demo", canary=0.25, quiet=True)
print(json.dumps({"version": m2.version, "own": model2(probe).numpy().tolist(),
                  "status": m2.status()}))
"""
PROMOTE = 'print(json.dumps(m2.promote()["labels"]))'
ROLLBACK = 'print(json.dumps(m2.rollback()["labels"]))'
UNLOAD = 'print(json.dumps(m2.unload()["unloaded"]))'
MAGIC_LIST = "%tfserving list"


class KernelRunner:
    """A kernel started through the server's REST API, driven over its websocket channels."""

    def __init__(self, server: JupyterServer) -> None:
        import websocket

        self.server = server
        response = server.post("/api/kernels", {"name": "python3"})
        assert response.status_code == 201, response.text
        self.kernel_id = response.json()["id"]
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{server.port}/api/kernels/{self.kernel_id}/channels"
            f"?token={server.token}", timeout=CELL_TIMEOUT)

    def execute(self, code: str) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": self.session,
                       "msg_type": "execute_request", "version": "5.3",
                       "date": datetime.datetime.now(datetime.timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        out: list[str] = []
        error = None
        replied = idle = False
        deadline = time.monotonic() + CELL_TIMEOUT
        while not (replied and idle):
            assert time.monotonic() < deadline, f"cell timed out:\n{code}"
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])
            elif kind == "error":
                error = "\n".join(msg["content"]["traceback"])
            elif kind == "execute_reply":
                replied = True
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        if error is not None:
            raise AssertionError(f"cell failed:\n{code}\n{error}")
        return "".join(out)

    def shutdown(self) -> None:
        self.ws.close()
        response = requests.delete(
            f"{self.server.url}/api/kernels/{self.kernel_id}",
            headers={"Authorization": f"token {self.server.token}"}, timeout=60)
        assert response.status_code == 204, response.text


class IPythonRunner:
    """A plain IPython shell in a child process (tests/kernel/ipython_driver.py)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.kernel.ipython_driver"], cwd=REPO, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def execute(self, code: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"code": code}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the IPython process died running:\n{code}"
        answer = json.loads(line)
        if answer["error"]:
            raise AssertionError(f"cell failed:\n{code}\n{answer['error']}")
        return answer["stdout"]

    def shutdown(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def last_json(text: str) -> Any:
    return json.loads(text.strip().splitlines()[-1])


class Api:
    """Calls the model's routes from outside, as any client."""

    def __init__(self, predict_url: str, token: str) -> None:
        self.predict_url = predict_url
        self.prefix = predict_url.split("/v1/models/")[0]
        self.headers = {"Authorization": f"token {token}"}

    def predict(self, instances: Any) -> tuple[np.ndarray, int]:
        r = requests.post(self.predict_url, json={"instances": instances}, headers=self.headers,
                          timeout=30)
        assert r.status_code == 200, r.text
        return np.asarray(r.json()["predictions"]), int(r.headers["X-Model-Version"])

    def model(self) -> dict[str, Any]:
        r = requests.get(f"{self.prefix}/api/models/demo", headers=self.headers, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def versions_of(self, n: int, probe: list) -> collections.Counter:
        return collections.Counter(self.predict(probe)[1] for _ in range(n))

    def wait_state(self, version: int, states: tuple[str, ...], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.model()["versions"]:
                if entry["version"] == version and entry["state"] in states:
                    return
            time.sleep(0.1)
        raise AssertionError(f"version {version} never reached {states}: {self.model()}")


PROBE = [[0.1, 0.2, 0.3], [1.0, -1.0, 2.0]]


def run_flow(runner: Any) -> tuple[Api, list]:
    """The flow up to the unload; returns the API client and version 1's expected answer."""
    runner.execute(SETUP)
    v1 = last_json(runner.execute(SERVE_V1))
    assert v1["version"] == 1
    np.testing.assert_allclose(v1["rest"], v1["own"], rtol=1e-5, atol=1e-6)
    api = Api(v1["url"], v1["token"])
    answer, version = api.predict(PROBE)
    assert version == 1
    np.testing.assert_allclose(answer, v1["own"], rtol=1e-5, atol=1e-6)
    assert v1["curl"].startswith("curl ") and v1["url"] in v1["curl"]

    v2 = last_json(runner.execute(SERVE_V2))
    assert v2["version"] == 2 and v2["status"]["state"] == "AVAILABLE"
    assert v2["status"]["traffic"] == pytest.approx(0.25)
    seen: collections.Counter = collections.Counter()
    for _ in range(400):
        answer, version = api.predict(PROBE)
        seen[version] += 1
        np.testing.assert_allclose(answer, v1["own"] if version == 1 else v2["own"],
                                   rtol=1e-5, atol=1e-6)
    assert set(seen) == {1, 2}
    assert 0.17 <= seen[2] / 400 <= 0.33, seen  # 25% +- 3.7 standard deviations

    assert "demo" in runner.execute(MAGIC_LIST)
    assert json.loads(runner.execute(PROMOTE)) == {"stable": 2}
    assert api.versions_of(30, PROBE) == {2: 30}
    assert json.loads(runner.execute(ROLLBACK)) == {"stable": 1}
    assert api.versions_of(30, PROBE) == {1: 30}
    assert json.loads(runner.execute(UNLOAD)) == [2]
    api.wait_state(2, ("END",))
    assert api.versions_of(10, PROBE) == {1: 10}
    return api, v1["own"]


def check_came_back(api: Api, own_v1: list) -> None:
    api.wait_state(1, ("AVAILABLE",))
    answer, version = api.predict(PROBE)
    assert version == 1
    np.testing.assert_allclose(answer, own_v1, rtol=1e-5, atol=1e-6)
    model = api.model()
    assert model["labels"] == {"stable": 1}
    assert model["unloaded"] == [2]
    assert all(v["state"] != "AVAILABLE" for v in model["versions"] if v["version"] == 2)


def test_notebook_flow_through_a_real_server_and_kernel(tmp_path: Path) -> None:
    root = tmp_path / "models"
    env = child_env(tmp_path)
    server = JupyterServer(root, env, tmp_path / "server.log")
    server.start()
    try:
        kernel = KernelRunner(server)
        try:
            api, own_v1 = run_flow(kernel)
        finally:
            kernel.shutdown()
        # the model lives in the server, not the kernel
        assert api.predict(PROBE)[1] == 1
        server.stop()
        server.start()  # same port, token and repository
        check_came_back(api, own_v1)
        assert (root / "models.config").is_file()  # TF Serving's format holds the labels
    finally:
        server.stop()


def test_notebook_flow_in_plain_ipython_uses_the_embedded_server(tmp_path: Path) -> None:
    root = tmp_path / "models"
    env = child_env(tmp_path)
    env["JUPYTER_TFSERVING_MODEL_ROOT"] = str(root)
    runner = IPythonRunner(env)
    try:
        api, own_v1 = run_flow(runner)
    finally:
        runner.shutdown()
    # a new process (a restarted kernel) comes back with the same repository and routing
    runner = IPythonRunner(env)
    try:
        found = last_json(runner.execute(
            "%load_ext jupyter_tfserving\nimport json\n"
            "from jupyter_tfserving.kernel.serving import connect\n"
            "c = connect(quiet=True)\nprint(json.dumps({'url': c.url, 'token': c.token}))"))
        check_came_back(Api(found["url"] + "/v1/models/demo:predict", found["token"]), own_v1)
    finally:
        runner.shutdown()
