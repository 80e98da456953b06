"""gRPC test helpers: the extension app of the test server, and a TF Serving client made the
way TF Serving's own examples make one (``grpc.insecure_channel`` + the generated stubs), whose
blocking calls run on a thread while the server runs on the test's event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from jupyter_tfserving.app import TFServingApp


def extension_app(serverapp: Any) -> TFServingApp:
    (app,) = serverapp.extension_manager.extension_apps["jupyter_tfserving"]
    return app


async def post_start(serverapp: Any) -> TFServingApp:
    """Run the server's post-start hook (``ServerApp.start_ioloop`` schedules it; the
    pytest-jupyter fixture never calls that), which starts the extension: gRPC, environment."""
    app = extension_app(serverapp)
    if not getattr(serverapp, "_test_post_started", False):
        serverapp._test_post_started = True
        await serverapp._post_start()
    return app


async def started_grpc(serverapp: Any) -> Any:
    """The extension's GrpcServer, once the extension has started."""
    app = await post_start(serverapp)
    if app.grpc_server is None:
        raise AssertionError("the gRPC server did not start")
    return app.grpc_server


class GrpcClient:
    """Stubs of TF Serving's two services on one channel; :meth:`call` runs a blocking call on
    a thread, with the token in the metadata unless ``token`` says otherwise, and returns the
    response or the ``grpc.RpcError``."""

    def __init__(self, target: str, token: str, credentials: Any = None) -> None:
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.target = target
        self.token = token
        self.channel = (grpc.secure_channel(target, credentials) if credentials is not None
                        else grpc.insecure_channel(target))
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model = model_service_pb2_grpc.ModelServiceStub(self.channel)

    async def call(self, method: Any, request: Any, *, token: str | None = "",
                   timeout: float = 60.0) -> Any:
        token = self.token if token == "" else token
        metadata = [("authorization", f"token {token}")] if token is not None else None

        def run() -> Any:
            try:
                return method(request, timeout=timeout, metadata=metadata)
            except grpc.RpcError as exc:
                return exc

        return await asyncio.get_running_loop().run_in_executor(None, run)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def grpc_client_factory():
    clients: list[GrpcClient] = []

    def make(target: str, token: str, credentials: Any = None) -> GrpcClient:
        client = GrpcClient(target, token, credentials)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
