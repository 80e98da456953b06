"""Faults against a real Jupyter server with the extension (issue "Reliability and security",
part 1): version swaps under 32 concurrent clients, broken versions, a version deleted while it
serves, and uploads cut off half way (a dead connection, a kernel killed mid-``serve()``).

Each test runs pytest-jupyter's in-process server (fixtures ``rest`` and ``publish``) on the
test's own event loop: clients are coroutines (``asyncio.gather`` of client loops) with their own
HTTP client, since the ``rest`` fixture's client queues everything past 10 requests.

Every answer is checked against the versions the server may route to at the time (see
:class:`Traffic`): its ``X-Model-Version`` header must name a version that was AVAILABLE and
routable while the request was in flight, and its values must be that version's function.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from jupyter_tfserving.core.archive import pack_directory
from jupyter_tfserving.platforms.python import write_python_version

from .jupyter_process import REPO, child_env

MODEL = "half_plus_two"
RETRIES = 2  # max_num_load_retries of these servers: a broken version gets 1 + 2 attempts
# y = a * x + b of each version of MODEL: 1 is the demo's half_plus_two, 2 and 3 are exported
# by ``linear_models``. For the integer x the clients send, no two give the same y.
LINES = {1: (0.5, 2.0), 2: (3.0, -1.0), 3: (-2.0, 5.0)}
GZIP = {"Content-Type": "application/gzip"}


@pytest.fixture
def tfserving_config() -> dict:
    return {"max_num_load_retries": RETRIES, "load_retry_interval_seconds": 0.05}


@pytest.fixture(scope="module")
def linear_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with ``half_plus_two`` versions 2 and 3 computing other lines than
    version 1 (``LINES``), so an answer's values tell which version computed it."""
    import tensorflow as tf

    class Line(tf.Module):
        def __init__(self, a: float, b: float) -> None:
            super().__init__()
            self.a = tf.Variable(a)
            self.b = tf.Variable(b)

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": self.a * x + self.b}

    root = tmp_path_factory.mktemp("linear")
    for version in (2, 3):
        module = Line(*LINES[version])
        tf.saved_model.save(module, str(root / MODEL / str(version)),
                            signatures={"serving_default": module.serve})
    return root


# ------------------------------------------------------------------------------------ helpers


@dataclass
class Answer:
    sent: float
    received: float
    path: str
    x: float
    code: int
    version: int | None
    body: Any


class Traffic:
    """Client loops sending ``:predict`` to the in-process server, recording every answer, and
    a timeline of the versions that may answer (``allow``).

    Call ``allow(versions)`` just before an operation with the versions that may answer while
    it runs (the old ones and the new ones), and again once it has taken effect with the ones
    that may answer from then on. An answer may come from any version allowed at some moment
    between its request's sending and its answer's arrival: the route is chosen then.
    """

    def __init__(self, port: int, prefix: str, token: str, versions: Iterable[int]) -> None:
        self.url = f"http://127.0.0.1:{port}{prefix}/v1/models/{MODEL}"
        self.headers = {"Authorization": f"token {token}"}
        self.http = SimpleAsyncHTTPClient(force_instance=True, max_clients=64)
        self.answers: list[Answer] = []
        self.marks: list[tuple[float, frozenset[int]]] = [(time.monotonic(), frozenset(versions))]
        self.polls: list[tuple[float, float, dict[int, str]]] = []  # (sent, received, states)
        self._stop = asyncio.Event()
        self._clients: list[asyncio.Future] = []

    def allow(self, versions: Iterable[int]) -> None:
        self.marks.append((time.monotonic(), frozenset(versions)))

    def start(self, clients: int, path: str = "") -> None:
        self._clients.append(asyncio.gather(*(self._client(i, path) for i in range(clients))))

    async def stop(self) -> None:
        self._stop.set()
        try:
            await asyncio.gather(*self._clients)
        finally:
            self.http.close()

    def watch(self) -> None:
        """Also poll the model's status all along (see ``unavailable_answers``)."""
        self._clients.append(asyncio.ensure_future(self._watch()))

    async def _watch(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            response = await self.http.fetch(self.url, headers=self.headers, raise_error=False)
            assert response.code == 200, response.body
            states = {int(s["version"]): s["state"]
                      for s in json.loads(response.body)["model_version_status"]}
            self.polls.append((sent, time.monotonic(), states))
            await asyncio.sleep(0.01)

    def unavailable_answers(self) -> list[str]:
        """200 answers from a version that the status polls show was not AVAILABLE while they
        were in flight. A poll shows one moment between its sending and its answer, so: an
        answer received before the sending of a poll that saw its version not AVAILABLE yet,
        or one sent after the answer of a poll that saw it UNLOADING or END (for versions
        that are never loaded again)."""
        out = []
        for answer in self.answers:
            if answer.code != 200:
                continue
            seen = [(sent, received, states.get(answer.version))
                    for sent, received, states in self.polls]
            first = next((i for i, (_, _, st) in enumerate(seen) if st == "AVAILABLE"), None)
            if first is None:
                out.append(f"version {answer.version} answered but was never seen AVAILABLE")
                continue
            not_yet = [sent for sent, _, _ in seen[:first]]
            gone = [received for _, received, st in seen[first:] if st in ("UNLOADING", "END")]
            if not_yet and answer.received < max(not_yet):
                out.append(f"version {answer.version} answered before it was AVAILABLE")
            if gone and answer.sent > min(gone):
                out.append(f"version {answer.version} answered after it was {seen[-1][2]}")
        return out

    async def _client(self, i: int, path: str) -> None:
        k = 0
        while not self._stop.is_set():
            x = float((i + k) % 9 + 1)
            k += 1
            sent = time.monotonic()
            try:
                response = await self.http.fetch(
                    f"{self.url}{path}:predict", method="POST", headers=self.headers,
                    body=json.dumps({"instances": [[x]]}), raise_error=False,
                    request_timeout=30)
                code, header = response.code, response.headers.get("X-Model-Version")
                try:
                    body = json.loads(response.body) if response.body else None
                except ValueError:
                    body = response.body[:200]
            except Exception as exc:  # a dropped connection: recorded, then asserted on
                code, header, body = 599, None, repr(exc)
            self.answers.append(Answer(sent, time.monotonic(), path, x, code,
                                       int(header) if header else None, body))

    def allowed(self, answer: Answer) -> frozenset[int]:
        """The versions that may have answered ``answer``."""
        versions: set[int] = set()
        current: frozenset[int] = frozenset()
        for at, allowed in self.marks:
            if at <= answer.sent:
                current = allowed
            elif at <= answer.received:
                versions |= allowed
        return frozenset(versions | current)

    def wrong(self, answer: Answer) -> str | None:
        """Why a 200 answer is wrong (a version not allowed, other values), or None."""
        if answer.version not in self.allowed(answer):
            return f"version {answer.version} is not one of {sorted(self.allowed(answer))}"
        a, b = LINES[answer.version]
        got = answer.body.get("predictions") if isinstance(answer.body, dict) else None
        if not (isinstance(got, list) and len(got) == 1 and isinstance(got[0], list)
                and len(got[0]) == 1 and abs(got[0][0] - (a * answer.x + b)) < 1e-4):
            return f"values {answer.body} are not version {answer.version}'s for x={answer.x}"
        return None

    def failures(self, path: str = "", also_ok: Iterable[int] = ()) -> list[str]:
        """Every answer on ``path`` that is not a right 200 (nor a code in ``also_ok``)."""
        out = []
        for answer in self.answers:
            if answer.path != path or answer.code in also_ok:
                continue
            why = (f"HTTP {answer.code} {answer.body}" if answer.code != 200
                   else self.wrong(answer))
            if why:
                out.append(f"x={answer.x} at {answer.sent - self.marks[0][0]:.3f}s: {why}")
        return out

    def max_concurrency(self) -> int:
        events = sorted([(a.sent, 1) for a in self.answers] + [(a.received, -1)
                                                                 for a in self.answers])
        level = peak = 0
        for _, step in events:
            level += step
            peak = max(peak, level)
        return peak


@pytest.fixture
def traffic_factory(rest, jp_http_port, jp_asyncio_loop):
    made: list[Traffic] = []

    def make(versions: Iterable[int]) -> Traffic:
        traffic = Traffic(jp_http_port, rest.prefix, rest.token, versions)
        made.append(traffic)
        return traffic

    yield make
    for traffic in made:  # a test that failed half way still stops its clients
        if not traffic._stop.is_set():
            jp_asyncio_loop.run_until_complete(traffic.stop())


async def api(rest, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    code, data, _ = await rest.call(path, body, method=method)
    assert code == expect, (method, path, code, data)
    return data


async def version_states(rest) -> list[tuple[str, str]]:
    code, data, _ = await rest.call(f"/v1/models/{MODEL}")
    assert code == 200, data
    return [(s["version"], s["state"]) for s in data["model_version_status"]]


def leftovers(model_root: Path) -> list[str]:
    """Upload staging directories anywhere in the repository."""
    return sorted(str(p.relative_to(model_root)) for p in model_root.rglob(".upload-*"))


# ------------------------------------------------------------------------------ version swaps


async def test_swap_canary_promote_rollback_unload_under_32_concurrent_clients(
        rest, publish, linear_models, traffic_factory):
    started = time.monotonic()
    publish(MODEL, 1)
    await rest.wait_for(MODEL, 1)
    traffic = traffic_factory({1})
    traffic.start(32)
    traffic.watch()
    await asyncio.sleep(0.3)

    # A new version directory is renamed into place: latest(1) swaps 1 for 2, 1 serving until
    # 2 is AVAILABLE.
    traffic.allow({1, 2})
    publish(MODEL, 2, source=linear_models)
    await rest.wait_for(MODEL, 2)
    await rest.wait_for(MODEL, 1, state="END")
    traffic.allow({2})
    await asyncio.sleep(0.3)

    # 2 becomes stable, so version 3, dropped in, loads beside it and takes no traffic ...
    await api(rest, "PUT", f"/api/models/{MODEL}/labels/stable", {"version": 2})
    publish(MODEL, 3, source=linear_models)
    await rest.wait_for(MODEL, 3)
    await asyncio.sleep(0.2)
    # ... until it is a 50% canary,
    traffic.allow({2, 3})
    canary = await api(rest, "POST", f"/api/models/{MODEL}:canary", {"weight": 0.5, "version": 3})
    assert canary["traffic"] == {"2": 0.5, "3": 0.5}
    canary_window = (time.monotonic(), None)
    await asyncio.sleep(0.5)
    canary_window = (canary_window[0], time.monotonic())
    # promoted (3 takes everything; 2 stays loaded for a rollback),
    traffic.allow({2, 3})
    promoted = await api(rest, "POST", f"/api/models/{MODEL}:promote")
    assert (promoted["labels"], promoted["previous_stable"]) == ({"stable": 3}, 2)
    traffic.allow({3})
    await asyncio.sleep(0.3)
    # rolled back (2 takes everything again),
    traffic.allow({2, 3})
    rolled_back = await api(rest, "POST", f"/api/models/{MODEL}:rollback")
    assert rolled_back["labels"] == {"stable": 2}
    traffic.allow({2})
    await asyncio.sleep(0.3)
    # and unloaded while requests still come in.
    unloaded = await api(rest, "POST", f"/api/models/{MODEL}/versions/3:unload")
    assert unloaded["unloaded"] == [3]
    await rest.wait_for(MODEL, 3, state="END")
    await asyncio.sleep(0.3)
    await traffic.stop()

    assert traffic.failures() == []  # every request 200, from an allowed version, right values
    assert traffic.unavailable_answers() == []
    assert len(traffic.polls) > 20
    assert traffic.max_concurrency() >= 16, traffic.max_concurrency()
    seen = {a.version for a in traffic.answers}
    assert seen == {1, 2, 3}
    during_canary = {a.version for a in traffic.answers
                     if canary_window[0] <= a.sent and a.received <= canary_window[1]}
    assert during_canary == {2, 3}
    assert await version_states(rest) == [("3", "END"), ("2", "AVAILABLE"), ("1", "END")]
    assert time.monotonic() - started < 30


# ---------------------------------------------------------------------------- broken versions


def _exploding_servable(attempts: Path) -> Any:
    """A callable whose unpickling appends a line to ``attempts``, then raises: each load
    attempt of a python servable holding it is one line. Local, so cloudpickle pickles it by
    value."""

    def explode(path: str) -> None:
        with open(path, "a") as f:
            f.write("attempt\n")
        raise RuntimeError("boom: this servable cannot be unpickled")

    class Exploding:
        def __call__(self, x):
            return x

        def __reduce__(self):
            return (explode, (str(attempts),))

    return Exploding()


def _renamed_in(model_root: Path, version: int, fill) -> None:
    """Write a version beside its final place with ``fill(dir)``, then rename it in."""
    staging = model_root / MODEL / f".staging-{version}"
    staging.mkdir()
    fill(staging)
    os.replace(staging, model_root / MODEL / str(version))


def _attempts_in_log(caplog: pytest.LogCaptureFixture, version: int) -> int:
    """Load attempts of ``version`` as the manager logs them: one warning per retry, one error
    when it gives up."""
    servable = f"{{name: {MODEL} version: {version}}}"
    return sum(1 for r in caplog.records if r.name == "jupyter_tfserving.core.manager"
               and r.getMessage().startswith(f"Loading {servable} failed"))


@pytest.mark.parametrize("fault", ["corrupt", "half_written", "load_raises"])
async def test_a_broken_version_ends_with_its_error_while_the_old_one_serves(
        fault, rest, publish, model_root, exported_models, tmp_path, traffic_factory, caplog):
    caplog.set_level("WARNING", logger="jupyter_tfserving.core.manager")
    publish(MODEL, 1)
    await rest.wait_for(MODEL, 1)
    traffic = traffic_factory({1})
    traffic.start(4)
    await asyncio.sleep(0.2)

    attempts_file = tmp_path / "attempts"
    if fault == "corrupt":  # saved_model.pb is garbage
        def fill(d: Path) -> None:
            shutil.copytree(exported_models / MODEL / "1" / "variables", d / "variables")
            (d / "saved_model.pb").write_bytes(b"\x08\x96\x01 this is not a SavedModel" * 40)
        _renamed_in(model_root, 2, fill)
    elif fault == "half_written":  # only variables/ made it before the rename
        _renamed_in(model_root, 2, lambda d: shutil.copytree(
            exported_models / MODEL / "1" / "variables", d / "variables"))
    else:  # a signed python servable, published through the API, whose load raises
        src = tmp_path / "exploding"
        write_python_version(str(src), _exploding_servable(attempts_file))
        await api(rest, "POST", f"/api/models/{MODEL}/versions?version=2",
                  pack_directory(str(src)), expect=201)

    entry = await rest.wait_for(MODEL, 2, state="END", timeout=30)
    code, message = entry["status"]["error_code"], entry["status"]["error_message"]
    expected = {"corrupt": ("DATA_LOSS", "saved_model.pb"),
                "half_written": ("NOT_FOUND", "Could not find SavedModel"),
                "load_raises": ("UNKNOWN", "boom: this servable cannot be unpickled")}[fault]
    assert code == expected[0] and expected[1] in message, entry["status"]

    def attempts() -> int:
        if fault == "load_raises":
            return attempts_file.read_text().count("attempt")
        return _attempts_in_log(caplog, 2)

    assert attempts() == 1 + RETRIES, [r.getMessage() for r in caplog.records]
    await asyncio.sleep(0.3)  # and no attempt after it gave up
    assert attempts() == 1 + RETRIES
    await traffic.stop()

    assert traffic.failures() == []  # version 1 answered everything, right
    assert {a.version for a in traffic.answers} == {1}
    assert len(traffic.answers) > 20
    assert await version_states(rest) == [("2", "END"), ("1", "AVAILABLE")]


# ------------------------------------------------------------------ a version deleted while serving


async def test_a_version_deleted_while_serving_goes_away_and_the_other_serves(
        rest, publish, linear_models, model_root, traffic_factory):
    publish(MODEL, 1)
    await rest.wait_for(MODEL, 1)
    publish(MODEL, 2, source=linear_models)
    await rest.wait_for(MODEL, 2)
    await rest.wait_for(MODEL, 1, state="END")  # latest(1): only 2 serves
    traffic = traffic_factory({2})
    traffic.start(6)  # unversioned: always answered
    traffic.start(2, "/versions/2")  # pinned to 2: answered by 2, or 404 once it is gone
    traffic.watch()
    await asyncio.sleep(0.3)

    traffic.allow({1, 2})
    deleted_at = time.monotonic()
    await asyncio.to_thread(shutil.rmtree, model_root / MODEL / "2")  # not atomic
    await rest.wait_for(MODEL, 2, state="END")
    gone_at = time.monotonic()
    traffic.allow({1})
    await rest.wait_for(MODEL, 1)
    await asyncio.sleep(0.3)
    await traffic.stop()

    assert traffic.failures() == []  # unversioned: all 200, from 2 then from 1
    assert traffic.unavailable_answers() == []
    assert {a.version for a in traffic.answers if a.path == ""} == {1, 2}
    pinned = [a for a in traffic.answers if a.path == "/versions/2"]
    assert traffic.failures("/versions/2", also_ok=[404]) == []  # no 5xx, no wrong answer
    assert all(a.code == 200 for a in pinned if a.received < deleted_at)
    assert all(a.code == 404 for a in pinned if a.sent > gone_at)
    assert any(a.code == 404 for a in pinned)
    assert await version_states(rest) == [("2", "END"), ("1", "AVAILABLE")]


# ------------------------------------------------------------- uploads cut off half way through

KILLED_KERNEL_CELL = """
import time
import numpy as np
from jupyter_tfserving.kernel import client as _client
from jupyter_tfserving.kernel.serving import serve

class _HalfThenHang:
    '''The upload body: its first half, then nothing more (the kernel is stuck mid-upload).
    requests sends it with a Content-Length of the whole.'''

    def __init__(self, data, marker):
        self.data, self.marker, self.pos = data, marker, 0

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        return iter(lambda: self.read(1 << 16), b"")

    def read(self, n=-1):
        half = len(self.data) // 2
        if self.pos >= half:
            open(self.marker, "w").close()
            time.sleep(3600)
        n = 1 << 16 if n is None or n < 0 else n
        chunk = self.data[self.pos:min(self.pos + n, half)]
        self.pos += len(chunk)
        return chunk

_publish = _client.TFServingClient.publish
_client.TFServingClient.publish = lambda self, name, archive, version=None, **kw: _publish(
    self, name, _HalfThenHang(archive, {marker!r}), version, **kw)
big = np.random.default_rng(0).random(1 << 20)  # 8 MiB of float64: a large model
serve(lambda x: x * 0.0 + big[0], name={model!r}, quiet=True)
"""


async def _wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"the kernel never got half way through its upload:\n"
                                 f"{out[-2000:]}\n{err[-3000:]}")
        await asyncio.sleep(0.05)


async def test_an_upload_cut_off_half_way_publishes_nothing(
        rest, publish, model_root, exported_models, jp_http_port, jp_base_url, tmp_path):
    publish(MODEL, 1)
    await rest.wait_for(MODEL, 1)
    before = await version_states(rest)
    assert before == [("1", "AVAILABLE")]

    # 1. A connection that dies after the headers and half of a (valid) archive.
    archive = pack_directory(str(exported_models / MODEL / "2"))
    reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    writer.write(
        f"POST {rest.prefix}/api/models/{MODEL}/versions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{jp_http_port}\r\nAuthorization: token {rest.token}\r\n"
        f"Content-Type: application/gzip\r\nContent-Length: {len(archive)}\r\n\r\n".encode()
        + archive[: len(archive) // 2])
    await writer.drain()
    await asyncio.sleep(0.2)  # the server is waiting for the rest of the body
    writer.transport.abort()  # the connection dies (RST), as when its process is killed

    # 2. A kernel killed (SIGKILL) while serve() is uploading a large model: a plain IPython
    # child that finds this server through the variables a Jupyter server gives its kernels.
    marker = tmp_path / "half-sent"
    env = child_env(tmp_path)
    env.update(JUPYTER_TFSERVING_URL=f"http://127.0.0.1:{jp_http_port}{jp_base_url}tfserving",
               JUPYTER_TFSERVING_TOKEN=rest.token)
    kernel = subprocess.Popen(
        [sys.executable, "-m", "tests.kernel.ipython_driver"], cwd=REPO, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert kernel.stdin is not None
        kernel.stdin.write(json.dumps(
            {"code": KILLED_KERNEL_CELL.format(marker=str(marker), model=MODEL)}) + "\n")
        kernel.stdin.flush()
        await _wait_for_file(marker, kernel)
        # serve() is one request: the server changes nothing (no label, no version) until the
        # whole archive has arrived, and sequences the rollout itself after that.
        described = await api(rest, "GET", f"/api/models/{MODEL}")
        assert described["labels"] == {}
        await asyncio.sleep(0.2)
        assert sorted(os.listdir(model_root / MODEL)) == ["1"]  # nothing while it uploads
    finally:
        kernel.kill()
        kernel.communicate()
    assert kernel.returncode == -9

    # Once the server has seen both connections die: no version, no staging, nothing new served.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert sorted(os.listdir(model_root / MODEL)) == ["1"]
        assert leftovers(model_root) == []
        await asyncio.sleep(0.05)
    assert await version_states(rest) == before
    described = await api(rest, "GET", f"/api/models/{MODEL}")
    assert [(v["version"], v["state"]) for v in described["versions"]] == [(1, "AVAILABLE")]
    code, data, headers = await rest.call(f"/v1/models/{MODEL}:predict", {"instances": [[2.0]]})
    assert (code, data, headers["X-Model-Version"]) == (200, {"predictions": [[3.0]]}, "1")
    # The server still takes a whole upload.
    published = await api(rest, "POST", f"/api/models/{MODEL}/versions", archive, expect=201)
    assert published["version"] == 2
    await rest.wait_for(MODEL, 2)
    assert leftovers(model_root) == []
