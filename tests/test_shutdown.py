"""Server shutdown with requests in flight (issue "Reliability and security", part 1).

A real Jupyter server with the extension (a child process, ``tests.jupyter_process``), two slow
python-platform models published through the management API, requests in flight, then SIGTERM.
What the server does, precisely (jupyter_server 2.x ``ServerApp._signal_stop`` -> ``stop``):

- the listening socket is closed at once, in the signal handler: a request on a **new
  connection** after the signal is refused (ECONNREFUSED, or a reset for one that was still in
  the accept backlog), never answered;
- the IOLoop keeps running while the extensions stop, and ``ModelService.stop`` drains: every
  request accepted before the signal finishes with 200 (one running on a request thread, one
  running in a batch, and ones still **queued** for a batch);
- a request arriving after the signal on a connection opened before it (HTTP keep-alive, as the
  kernel client's ``requests.Session`` does) is answered ``503 {"error": ...}`` (UNAVAILABLE),
  never 500 and never dropped;
- the process then exits with status 0.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from jupyter_tfserving.batching import BatchingParameters
from jupyter_tfserving.core.archive import pack_directory
from jupyter_tfserving.core.manager import ManagerOptions
from jupyter_tfserving.core.servable import SignatureInfo, TensorInfo
from jupyter_tfserving.core.state import ServableState
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.dataplane import ModelRef
from jupyter_tfserving.platforms.python import write_python_version
from jupyter_tfserving.service import ModelService, ServiceOptions

from .jupyter_process import JupyterServer, child_env

SLEEP = 0.8  # seconds one batch of the batched model takes
# Seconds one call of the unbatched model takes: shorter, so it ends while requests still wait
# for a batch (a stop that waited only for the request threads would then fail those).
PLAIN_SLEEP = 0.4
BATCHED = {"inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1]}},
           "outputs": {"output_0": {"dtype": "DT_FLOAT", "shape": [-1]}}}


def _slow_model(seconds: float):
    """A callable that sleeps, then doubles its input. Defined here, so cloudpickle pickles it
    by value: the server child does not need this test module."""

    def slow(x):
        import time as _time

        _time.sleep(seconds)
        return x * 2.0

    return slow


@pytest.fixture
def server(tmp_path: Path):
    env = child_env(tmp_path)
    # One batch thread: while one batch runs, later requests wait in the queue (the requests a
    # shutdown that fails queued batches would cut off).
    config_dir = Path(env["JUPYTER_CONFIG_DIR"])
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(
        {"TFServingApp": {"num_batch_threads": 1, "load_retry_interval_seconds": 0.1}}))
    root = tmp_path / "models"
    root.mkdir()
    srv = JupyterServer(root, env, tmp_path / "server.log")
    srv.start()
    yield srv
    srv.stop()


def _publish(srv: JupyterServer, tmp_path: Path, name: str, signature: dict | None) -> None:
    src = tmp_path / f"src-{name}"
    seconds = SLEEP if signature is not None else PLAIN_SLEEP
    write_python_version(str(src), _slow_model(seconds), signature=signature)
    response = requests.post(
        f"{srv.url}/tfserving/api/models/{name}/versions", data=pack_directory(str(src)),
        headers={"Authorization": f"token {srv.token}", "Content-Type": "application/gzip"},
        timeout=30)
    assert response.status_code == 201, response.text


def _wait_available(srv: JupyterServer, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = srv.get(f"/tfserving/v1/models/{name}")
        if response.status_code == 200 and response.json()["model_version_status"][0][
                "state"] == "AVAILABLE":
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not become AVAILABLE: {response.text}")


def _wait_in_flight(srv: JupyterServer, expected: dict[str, int], timeout: float = 30.0) -> None:
    """Until the server holds ``expected`` handles (requests routed and not yet run) per model."""
    deadline = time.monotonic() + timeout
    while True:
        held = {name: srv.get(f"/tfserving/api/models/{name}").json()["versions"][0]["in_flight"]
                for name in expected}
        if held == expected:
            return
        assert time.monotonic() < deadline, held
        time.sleep(0.02)


def test_sigterm_finishes_requests_in_flight_and_refuses_new_ones(server, tmp_path):
    _publish(server, tmp_path, "slow", BATCHED)  # batchable: runs through the batch scheduler
    _publish(server, tmp_path, "plain", None)  # shape unknown: runs alone on a request thread
    _wait_available(server, "slow")
    _wait_available(server, "plain")

    headers = {"Authorization": f"token {server.token}"}
    keep_alive = requests.Session()  # a connection opened before the signal
    keep_alive.headers.update(headers)
    assert keep_alive.get(f"{server.url}/tfserving/v1/models/slow", timeout=10).status_code == 200

    def predict(name: str, x: float, session: requests.Session | None = None):
        post = (session or requests).post
        try:
            response = post(f"{server.url}/tfserving/v1/models/{name}:predict",
                            json={"instances": [x]}, headers=headers, timeout=30)
        except requests.ConnectionError as exc:
            return "connection error", str(exc)
        return response.status_code, response.json()

    pool = ThreadPoolExecutor(8)
    try:
        running = pool.submit(predict, "slow", 1.0)  # takes the only batch thread
        alone = pool.submit(predict, "plain", 5.0)  # on a request thread
        _wait_in_flight(server, {"slow": 1, "plain": 1})
        queued = [pool.submit(predict, "slow", x) for x in (2.0, 3.0, 4.0)]  # wait for a batch
        _wait_in_flight(server, {"slow": 4, "plain": 1})
        assert all(not f.done() for f in (running, alone, *queued))

        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.15)  # the signal handler has run: the listener is closed
        on_new_connection = predict("slow", 9.0)
        on_open_connection = [predict(name, 9.0, keep_alive) for name in ("slow", "plain")]

        # Everything accepted before the signal finishes, with its own answer.
        assert running.result() == (200, {"predictions": [2.0]})
        assert alone.result() == (200, {"predictions": [10.0]})
        assert [f.result() for f in queued] == [
            (200, {"predictions": [4.0]}), (200, {"predictions": [6.0]}),
            (200, {"predictions": [8.0]})]
    finally:
        pool.shutdown(wait=True)
        keep_alive.close()

    # After the signal: a new connection is refused, a kept-alive one is told 503 UNAVAILABLE.
    assert on_new_connection[0] == "connection error", on_new_connection
    for code, body in on_open_connection:
        assert code == 503 and "shutting down" in body["error"], on_open_connection

    try:
        assert server.proc.wait(30) == 0
    except subprocess.TimeoutExpired:
        raise AssertionError("the server did not exit after SIGTERM") from None
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


# ------------------------------------------------- the same contract on ModelService alone

GATED_SIGNATURE = SignatureInfo(inputs={"x": TensorInfo("DT_FLOAT", (-1,))},
                                outputs={"y": TensorInfo("DT_FLOAT", (-1,))})


class _GatedServable:
    """Each run waits for ``gate``, then doubles ``x``; ``started`` counts runs begun."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.started = threading.Semaphore(0)

    def signatures(self):
        return {"serving_default": GATED_SIGNATURE}

    def run(self, signature_name, inputs):
        self.started.release()
        assert self.gate.wait(10), "gate never opened"
        return {"y": inputs["x"] * 2.0}

    def run_examples(self, signature_name, batch):
        raise NotImplementedError

    def metadata(self):
        return {}

    def close(self) -> None:
        pass


def test_service_stop_drains_queued_batches_and_refuses_new_work(tmp_path):
    """``ModelService.stop``: a run in progress, batches still queued and admitted requests
    finish; a request admitted after the stop began gets UNAVAILABLE (503)."""
    (tmp_path / "models" / "m" / "1").mkdir(parents=True)
    gate = threading.Event()
    servable = _GatedServable(gate)

    class Loader:
        def load(self):
            return servable

    service = ModelService(
        ServiceOptions(model_root=str(tmp_path / "models"), file_system_poll_wait_seconds=0,
                       batching=BatchingParameters(num_batch_threads=1),
                       manager=ManagerOptions(max_num_load_retries=0)),
        loader_factory=lambda servable_id, spec: Loader())
    service.start()
    stopper = threading.Thread(target=service.stop, kwargs={"timeout": 10})
    try:
        service.manager.wait_for("m", 1, [ServableState.AVAILABLE], 10)

        def submit(x: float):
            """One request: admitted (UNAVAILABLE once stopping), routed, submitted."""
            with service.dataplane.admit():
                call = service.dataplane.begin_predict(
                    ModelRef("m"), None, lambda signature: {"x": np.array([x], np.float32)})
                return service.dataplane.submit_predict(call)

        running = submit(1.0)  # holds the only batch thread
        assert servable.started.acquire(timeout=10)
        queued = [submit(2.0), submit(3.0)]  # wait in the queue for a batch
        encoding = service.dataplane.admit()  # a request still encoding its answer

        stopper.start()
        deadline = time.monotonic() + 10
        while True:  # until stop() has begun: the first request refused
            assert time.monotonic() < deadline
            try:
                queued.append(submit(4.0))  # admitted before stop() began: in flight too
            except ServingError as exc:
                assert (exc.code, exc.message) == (Code.UNAVAILABLE,
                                                   "The model server is shutting down")
                break
            time.sleep(0.01)
        time.sleep(0.1)
        assert stopper.is_alive()  # draining: nothing in flight was cut off
        encoding.release()
        time.sleep(0.2)
        assert stopper.is_alive()  # still draining: batches are in flight
        assert not running.done() and not any(f.done() for f in queued)

        gate.set()
        assert running.result(10)["y"].tolist() == [2.0]
        assert [f.result(10)["y"].tolist()[0] for f in queued[:2]] == [4.0, 6.0]
        assert all(f.result(10)["y"].tolist() == [8.0] for f in queued[2:])
        stopper.join(10)
        assert not stopper.is_alive()
        assert service.manager.refcounts("m") == {}  # every handle released, version unloaded
        # a request after the stop hears why: 503, not 404 "not found" for unloaded versions
        with pytest.raises(ServingError) as err:
            service.dataplane.admit()
        assert (err.value.code, err.value.message) == (Code.UNAVAILABLE,
                                                       "The model server is shutting down")
    finally:
        gate.set()
        if not stopper.is_alive() and stopper.ident is None:
            service.stop(5)
        stopper.join(10)
