"""TensorFlow's profiler service on the gRPC port (as TF Serving serves it): a profile of the
server while it serves predicts is written where the caller asks, behind the login; bad
requests, a second profile and Terminate; and TensorFlow's own profiler client against a server
without authentication (the command line's ``--no_auth``)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from jupyter_server.auth.identity import IdentityProvider, User

from jupyter_tfserving.grpc.profiler import (
    ProfileRequest,
    ProfileResponse,
    TerminateRequest,
    TerminateResponse,
    xspace_is_empty,
)
from tests import conftest as shared
from tests.conftest import TESTDATA
from tests.grpc.conftest import started_grpc

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def tfserving_config(tmp_path: Path) -> dict:
    shared.testdata_or_skip()
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "default" base_path: '
                      f'"{TESTDATA}/saved_model_half_plus_two_cpu" '
                      f'model_platform: "tensorflow" }} }}')
    return {"model_config_file": str(config)}


@pytest.fixture
def anonymous(request) -> bool:
    return bool(getattr(request, "param", False))


class Anyone(IdentityProvider):
    """Lets every request in as one user, token or not (a server that asks for no login)."""

    def get_user(self, handler: Any) -> User:
        return User("anyone")


@pytest.fixture
def jp_server_config(jp_server_config, anonymous: bool) -> dict:
    if not anonymous:
        return jp_server_config
    return {**jp_server_config, "ServerApp": {**jp_server_config["ServerApp"],
                                              "identity_provider_class": Anyone}}


def _call(channel: grpc.Channel, method: str, request: Any, response_class: Any,
          token: str | None, timeout: float = 60) -> Any:
    call = channel.unary_unary(f"/tensorflow.ProfilerService/{method}",
                               request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=response_class.FromString)
    metadata = [("authorization", f"token {token}")] if token else None
    try:
        return call(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as exc:
        return exc


async def _predicts_until(predict: Callable[[], Awaitable[bool]], done: asyncio.Event) -> int:
    """Send predicts until ``done``; how many (each must succeed)."""
    sent = 0
    while not done.is_set():
        assert await predict()
        sent += 1
        await asyncio.sleep(0.05)
    return sent


def _rest_predict(rest) -> Callable[[], Awaitable[bool]]:
    async def predict() -> bool:
        code, _, _ = await rest.call("/v1/models/default:predict", {"instances": [1.0, 2.0]})
        return code == 200

    return predict


async def test_profile_the_server_while_it_serves(jp_serverapp, rest, tmp_path: Path) -> None:
    server = await started_grpc(jp_serverapp)
    token = jp_serverapp.identity_provider.token
    await rest.wait_for("default", 123)
    loop = asyncio.get_running_loop()
    root = tmp_path / "profiles"
    with grpc.insecure_channel(server.target) as channel:
        def profile(token: str | None, duration_ms: int = 1500, **fields: Any) -> Any:
            request = ProfileRequest(duration_ms=duration_ms, repository_root=str(root),
                                     session_id="run1", host_name="localhost:1234",
                                     emit_xspace=True)
            for name, value in fields.items():
                setattr(request, name, value)
            return _call(channel, "Profile", request, ProfileResponse, token)

        # Traffic while the profile runs: the model's ops are in it.
        done = asyncio.Event()
        traffic = asyncio.ensure_future(_predicts_until(_rest_predict(rest), done))
        response = await loop.run_in_executor(None, profile, token)
        done.set()
        assert await traffic > 0
        assert not isinstance(response, grpc.RpcError), response
        written = root / "run1" / "localhost_1234.xplane.pb"
        assert written.is_file() and written.read_bytes() == response.xspace
        assert response.empty_trace is False and not xspace_is_empty(response.xspace)

        # Behind the login; plain names and an absolute root only; bounded.
        denied = await loop.run_in_executor(None, profile, None)
        assert denied.code() == grpc.StatusCode.UNAUTHENTICATED
        for fields in ({"session_id": "../escape"}, {"host_name": "a/b"},
                       {"repository_root": "relative/dir"}, {"duration_ms": 10**9}):
            refused = await loop.run_in_executor(None, lambda f=fields: profile(token, **f))
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert not (tmp_path / "escape").exists()

        # One profile at a time; Terminate ends one early.
        started = time.monotonic()
        long = loop.run_in_executor(None, lambda: profile(token, 60_000, session_id="long"))
        await asyncio.sleep(1.0)
        second = await loop.run_in_executor(None, lambda: profile(token, 100,
                                                                  session_id="other"))
        assert second.code() == grpc.StatusCode.ABORTED
        ended = await loop.run_in_executor(None, lambda: _call(
            channel, "Terminate", TerminateRequest(session_id="long"), TerminateResponse,
            token))
        assert not isinstance(ended, grpc.RpcError), ended
        answer = await long
        assert not isinstance(answer, grpc.RpcError), answer
        assert time.monotonic() - started < 30
        assert (root / "long" / "localhost_1234.xplane.pb").is_file()
        unknown = await loop.run_in_executor(None, lambda: _call(
            channel, "Monitor", TerminateRequest(), TerminateResponse, token))
        assert unknown.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("anonymous", [True], indirect=True)
async def test_tensorflow_profiler_client_traces_a_server_without_a_token(
        jp_serverapp, rest, grpc_client_factory, tmp_path: Path) -> None:
    """``tf.profiler.experimental.client.trace`` sends no metadata: it works where the server
    asks for none, as TensorBoard's "Capture profile" against TF Serving."""
    import tensorflow as tf
    from tensorflow.python.profiler import profiler_client
    from tensorflow_serving.apis import predict_pb2

    server = await started_grpc(jp_serverapp)
    await rest.wait_for("default", 123)
    client = grpc_client_factory(server.target, "")
    request = predict_pb2.PredictRequest(model_spec={"name": "default"})
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))

    async def predict() -> bool:  # gRPC, without a token
        return not isinstance(await client.call(client.prediction.Predict, request, token=None),
                              grpc.RpcError)

    done = asyncio.Event()
    traffic = asyncio.ensure_future(_predicts_until(predict, done))
    logdir = tmp_path / "logs"
    try:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: profiler_client.trace(server.target, str(logdir), 1500, "", 3))
    finally:
        done.set()
        await traffic
    traces = list((logdir / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
