"""The gRPC traits, each on a light server: tensor_content answers on a Unix socket only, TLS
from the server's certificate with an authorizer that lets users read but not write, a port
already taken, and gRPC turned off."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from jupyter_server.auth.authorizer import Authorizer

from tests import conftest as shared
from tests.conftest import TESTDATA
from tests.grpc.conftest import extension_app, post_start, started_grpc

HELD: list[socket.socket] = []
SEEN: list[tuple[str, str]] = []


class ReadOnlyTFServing(Authorizer):
    """Lets anyone read the ``tfserving`` resource but not write to it; records each check."""

    def is_authorized(self, handler, user, action, resource):
        SEEN.append((handler.request.path, action))
        return not (resource == "tfserving" and action == "write")


def socket_only(tmp_path: Path) -> tuple[dict, dict]:
    shared.testdata_or_skip()
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "default" base_path: '
                      f'"{TESTDATA}/saved_model_half_plus_two_cpu" '
                      f'model_platform: "tensorflow" }} }}')
    return {"grpc_port": -1, "grpc_socket_path": str(tmp_path / "grpc.sock"),
            "grpc_tensor_content": True, "model_config_file": str(config)}, {}


def tls_read_only(tmp_path: Path) -> tuple[dict, dict]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    return {}, {"certfile": str(cert), "keyfile": str(key),
                "authorizer_class": ReadOnlyTFServing}


def port_taken(tmp_path: Path) -> tuple[dict, dict]:
    first = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    first.bind(("127.0.0.1", 0))
    first.listen()
    HELD.append(first)
    port = first.getsockname()[1]
    with contextlib.suppress(OSError):
        second = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        HELD.append(second)
        second.bind(("::1", port))
        second.listen()
    return {"grpc_port": port}, {}


def small_messages(tmp_path: Path) -> tuple[dict, dict]:
    options, server = socket_only(tmp_path)
    return {"model_config_file": options["model_config_file"],
            "grpc_channel_arguments": {"grpc.max_receive_message_length": 256}}, server


def grpc_off(tmp_path: Path) -> tuple[dict, dict]:
    return {"grpc_port": -1}, {}


@pytest.fixture
def server_options(request, tmp_path: Path) -> tuple[dict, dict]:
    make: Callable[[Path], tuple[dict, dict]] = request.param
    yield make(tmp_path)
    while HELD:
        HELD.pop().close()


@pytest.fixture
def tfserving_config(server_options) -> dict:
    return server_options[0]


@pytest.fixture
def jp_server_config(jp_server_config, server_options) -> dict:
    return {**jp_server_config,
            "ServerApp": {**jp_server_config["ServerApp"], **server_options[1]}}


@pytest.mark.parametrize("server_options", [socket_only], indirect=True)
async def test_tensor_content_answers_on_a_unix_socket_only(jp_serverapp, rest,
                                                           grpc_client_factory):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    server = await started_grpc(jp_serverapp)
    app = extension_app(jp_serverapp)
    assert server.port is None and server.target == f"unix:{app.grpc_socket_path}"
    assert Path(app.grpc_socket_path).is_socket()
    client = grpc_client_factory(server.target, jp_serverapp.identity_provider.token)
    await rest.wait_for("default", 123)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0], [5.0]]))
    response = await client.call(client.prediction.Predict, request)
    assert not isinstance(response, grpc.RpcError), response
    assert response.outputs["y"].tensor_content and not response.outputs["y"].float_val
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[2.5], [4.5]]
    await app._stop_grpc()
    assert not Path(app.grpc_socket_path).exists()


@pytest.mark.parametrize("server_options", [small_messages], indirect=True)
async def test_channel_arguments_take_effect(jp_serverapp, rest, grpc_client_factory):
    """``grpc_channel_arguments`` (TF Serving's ``--grpc_channel_arguments``) reach the
    server, after its own: here they lower the message limit below the trait's."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    server = await started_grpc(jp_serverapp)
    client = grpc_client_factory(server.target, jp_serverapp.identity_provider.token)
    await rest.wait_for("default", 123)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]]))
    response = await client.call(client.prediction.Predict, request)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[2.5]]
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]] * 100))
    refused = await client.call(client.prediction.Predict, request)
    assert isinstance(refused, grpc.RpcError)
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("server_options", [tls_read_only], indirect=True)
async def test_tls_and_the_authorizer(jp_serverapp, grpc_client_factory):
    from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, predict_pb2

    server = await started_grpc(jp_serverapp)
    assert server.secure
    assert os.environ["JUPYTER_TFSERVING_GRPC_ROOT_CERTS"] == jp_serverapp.certfile
    credentials = grpc.ssl_channel_credentials(Path(jp_serverapp.certfile).read_bytes())
    client = grpc_client_factory(server.target, jp_serverapp.identity_provider.token,
                                 credentials)
    # Reading is allowed (an unknown model is the answer), writing is not; an allowed call is
    # remembered for a while, a refused one is asked again.
    SEEN.clear()
    for _ in range(3):
        status = await client.call(client.model.GetModelStatus,
                                   get_model_status_pb2.GetModelStatusRequest(
                                       model_spec={"name": "nope"}))
        assert status.code() == grpc.StatusCode.NOT_FOUND
    assert SEEN == [("/grpc/tensorflow.serving.ModelService/GetModelStatus", "read")]
    for method, request in ((client.prediction.Predict,
                             predict_pb2.PredictRequest(model_spec={"name": "nope"})),
                            (client.model.HandleReloadConfigRequest,
                             model_management_pb2.ReloadConfigRequest())):
        denied = await client.call(method, request)
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert denied.details() == "User is not authorized to write on resource: tfserving."
    denied = await client.call(client.prediction.Predict,
                               predict_pb2.PredictRequest(model_spec={"name": "nope"}))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert SEEN.count(("/grpc/tensorflow.serving.PredictionService/Predict", "write")) == 2
    # A plaintext client gets nowhere.
    plain = grpc_client_factory(server.target, jp_serverapp.identity_provider.token)
    failed = await plain.call(plain.model.GetModelStatus,
                              get_model_status_pb2.GetModelStatusRequest(
                                  model_spec={"name": "nope"}), timeout=5)
    assert failed.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("server_options", [port_taken, grpc_off], indirect=True)
async def test_no_grpc_when_the_port_is_taken_or_off(jp_serverapp, rest, caplog):
    app = await post_start(jp_serverapp)
    assert os.environ["JUPYTER_TFSERVING_URL"].startswith(jp_serverapp.connection_url)
    assert app.grpc_server is None
    assert "JUPYTER_TFSERVING_GRPC_TARGET" not in os.environ
    if app.grpc_port > 0:
        assert "gRPC is not served" in caplog.text
    code, _, _ = await rest.call("/v1/models")  # REST serves on
    assert code == 200
    code, report, _ = await rest.call("/api/stats")
    assert code == 200 and report["grpc_target"] is None
