"""What every gRPC call goes through (``_Servicer.serve``), with a stand-in service and context:
auth first, admission, the client's deadline, errors mapped, statistics counted."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import grpc
import pytest

from jupyter_tfserving.core.admission import Admission
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.grpc.servicers import Answer, ModelServiceServicer


class Aborted(Exception):
    def __init__(self, code, details):
        super().__init__(details)
        self.code, self.details = code, details


class Context:
    def __init__(self, remaining=None, metadata=()):
        self.remaining = remaining
        self.metadata = metadata

    def time_remaining(self):
        return self.remaining

    def invocation_metadata(self):
        return self.metadata

    def peer(self):
        return "ipv4:127.0.0.1:5000"

    async def abort(self, code, details):
        raise Aborted(code, details)


class Auth:
    def __init__(self, error=None):
        self.error = error
        self.calls = []

    async def check(self, metadata, peer, method, action):
        self.calls.append((method, action))
        if self.error is not None:
            raise self.error


class Dataplane:
    def __init__(self):
        self.admission = Admission()
        self.recorded = []

    def admit(self):
        return self.admission.admit()

    def record_request(self, model, version, api, code, seconds, entrypoint):
        self.recorded.append((model, version, api, code, entrypoint))


@pytest.fixture
def parts():
    executor = ThreadPoolExecutor(2)
    dataplane = Dataplane()
    service = SimpleNamespace(dataplane=dataplane, executor=executor,
                              options=SimpleNamespace(request_timeout_seconds=5.0,
                                                      max_tensor_elements=100))
    yield service, dataplane
    executor.shutdown()


def run(servicer, context, work, api="predict"):
    return servicer.serve(context, "/m", "write", api, lambda: "m", work)


async def test_success_is_counted_with_its_version_and_entrypoint(parts):
    service, dataplane = parts
    auth = Auth()
    servicer = ModelServiceServicer(service, auth)

    async def work():
        return Answer("ok", 7)

    assert (await run(servicer, Context(), work)).message == "ok"
    assert auth.calls == [("/m", "write")]
    assert dataplane.recorded == [("m", 7, "predict", Code.OK, "GRPC")]
    assert dataplane.admission.drain(0)  # the ticket was released


async def test_auth_refusal_aborts_before_admission(parts):
    service, dataplane = parts
    servicer = ModelServiceServicer(service, Auth(ServingError(Code.UNAUTHENTICATED, "no")))

    async def work():  # pragma: no cover - never runs
        raise AssertionError

    with pytest.raises(Aborted) as info:
        await run(servicer, Context(), work)
    assert (info.value.code, info.value.details) == (grpc.StatusCode.UNAUTHENTICATED, "no")
    assert dataplane.recorded == []


async def test_deadline_past_stopping_errors_and_bugs(parts):
    service, dataplane = parts
    servicer = ModelServiceServicer(service, None)
    started = []

    async def work():
        started.append(1)
        return Answer("ok")

    with pytest.raises(Aborted) as info:  # a deadline already past: the work never starts
        await run(servicer, Context(remaining=0.0), work)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and not started

    async def slow():
        await asyncio.sleep(5)

    with pytest.raises(Aborted) as info:  # the client's deadline bounds the run
        await run(servicer, Context(remaining=0.05), slow)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED

    async def failing():
        raise ServingError(Code.NOT_FOUND, "x" * 2000)

    with pytest.raises(Aborted) as info:  # the data plane's code, TF Serving's message limit
        await run(servicer, Context(), failing)
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert info.value.details == "x" * 1024 + "...TRUNCATED"

    async def buggy():
        raise KeyError("secret detail")

    with pytest.raises(Aborted) as info:  # a bug: INTERNAL, no detail leaks
        await run(servicer, Context(), buggy)
    assert (info.value.code, info.value.details) == (grpc.StatusCode.INTERNAL, "Internal error")
    assert [r[3] for r in dataplane.recorded] == [
        Code.DEADLINE_EXCEEDED, Code.DEADLINE_EXCEEDED, Code.NOT_FOUND, Code.INTERNAL]

    dataplane.admission.close()  # a stopping server: UNAVAILABLE
    with pytest.raises(Aborted) as info:
        await run(servicer, Context(), work)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


async def test_a_cancelled_call_releases_its_ticket(parts):
    service, dataplane = parts
    servicer = ModelServiceServicer(service, None)
    entered = asyncio.Event()

    async def hang():
        entered.set()
        await asyncio.sleep(60)

    task = asyncio.ensure_future(run(servicer, Context(), hang))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dataplane.admission.drain(0)
    assert dataplane.recorded[-1][3] == Code.CANCELLED
