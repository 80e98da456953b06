"""``jupyter-tfserving-model-server``: TF Serving's command line (DESIGN §8).

Flag parsing (every form, TF Serving's defaults, unknown flags), the config the flags become,
TF Serving's startup errors, and one real start as a subprocess answering REST and gRPC, then
stopping cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from jupyter_tfserving import model_server as ms
from tests.conftest import testdata_or_skip

# ---------------------------------------------------------------------------- flag parsing


def test_defaults_are_tf_servings() -> None:
    flags = ms.parse_flags([])
    assert flags["port"] == 8500
    assert flags["rest_api_port"] == 0
    assert flags["rest_api_timeout_in_ms"] == 30000
    assert flags["model_name"] == "default"
    assert flags["model_base_path"] == ""
    assert flags["model_config_file"] == ""
    assert flags["model_config_file_poll_wait_seconds"] == 0
    assert flags["file_system_poll_wait_seconds"] == 1
    assert flags["enable_batching"] is False
    assert flags["max_num_load_retries"] == 5
    assert flags["load_retry_interval_micros"] == 60_000_000
    assert flags["allow_version_labels_for_unavailable_models"] is False
    assert flags["no_auth"] is False


@pytest.mark.parametrize("argv", [
    ["--port=9000", "--model_name=m"],
    ["--port", "9000", "--model_name", "m"],
    ["-port=9000", "-model_name", "m"],
    ["--port=1", "--port=9000", "--model_name=m"],  # the last wins
])
def test_value_forms(argv: list[str]) -> None:
    flags = ms.parse_flags(argv)
    assert flags["port"] == 9000
    assert flags["model_name"] == "m"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--enable_batching"], True),
    (["--enable_batching=true"], True),
    (["--enable_batching=True"], True),
    (["--enable_batching=1"], True),
    (["--enable_batching=false"], False),
    (["--enable_batching", "--enable_batching=false"], False),
])
def test_bool_forms(argv: list[str], expected: bool) -> None:
    assert ms.parse_flags(argv)["enable_batching"] is expected


def test_bare_bool_does_not_take_the_next_argument() -> None:
    flags = ms.parse_flags(["--enable_batching", "--port=7"])
    assert flags["enable_batching"] is True and flags["port"] == 7


def test_accepted_flags() -> None:
    flags = ms.parse_flags([
        "--enable_model_warmup=false", "--prefer_tflite_model", "--grpc_channel_arguments=a=1,b=x",
        "--tensorflow_intra_op_parallelism=2", "--tensorflow_inter_op_parallelism=3",
        "--ssl_config_file=/x", "--monitoring_config_file=/y", "--grpc_socket_path=/s",
        "--batching_parameters_file=/b", "--rest_api_timeout_in_ms=5",
        "--allow_version_labels_for_unavailable_models", "--max_num_load_retries=0",
        "--model_config_file_poll_wait_seconds=60", "--file_system_poll_wait_seconds=0",
        "--no_auth", "--token=t", "--token_file=/t",
    ])
    assert flags["enable_model_warmup"] is False
    assert flags["tensorflow_inter_op_parallelism"] == 3
    assert flags["model_config_file_poll_wait_seconds"] == 60


@pytest.mark.parametrize(("argv", "needle"), [
    (["--no_such_flag=1"], "no_such_flag"),
    (["--model_name=m", "--bogus"], "bogus"),
    (["--port=abc"], "port"),
    (["--enable_batching=maybe"], "enable_batching"),
    (["--model_name"], "model_name"),
    (["stray"], "stray"),
])
def test_bad_flags(argv: list[str], needle: str) -> None:
    with pytest.raises(ms.FlagError, match=needle):
        ms.parse_flags(argv)


def test_unknown_flag_exits_non_zero_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert ms.main(["--model_base_path=/x", "--frobnicate=3"]) != 0
    assert "frobnicate" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert ms.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert "TensorFlow ModelServer" in out and "jupyter_tfserving" in out


def test_help_names_the_auth_opt_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert ms.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--no_auth" in out and "--rest_api_port" in out


def test_grpc_channel_arguments() -> None:
    assert ms.parse_grpc_channel_arguments("grpc.max_connection_age_ms=1000,x=y") == {
        "grpc.max_connection_age_ms": 1000, "x": "y"}
    assert ms.parse_grpc_channel_arguments("") == {}
    with pytest.raises(ms.FlagError):
        ms.parse_grpc_channel_arguments("novalue")


# ---------------------------------------------------------------------------- the config


def _plan(tmp_path: Path, *argv: str) -> ms.Plan:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return ms.plan(ms.parse_flags(argv), str(work))


def test_single_model_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    monkeypatch.chdir(tmp_path)
    plan = _plan(tmp_path, "--model_name=half", "--model_base_path=models/half")
    app = plan.config.ModelServerApp
    config = text_format.Parse(Path(app.model_config_file).read_text(),
                               model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "half"
    assert model.base_path == str(tmp_path / "models" / "half")  # relative to the cwd
    assert model.model_platform == "tensorflow"


def test_default_model_name(tmp_path: Path) -> None:
    text = ms.single_model_config("default", "/m")
    assert 'name: "default"' in text and 'base_path: "/m"' in text


def test_flags_become_traits(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "--model_base_path=/m", "--port=0", "--grpc_socket_path=/tmp/s",
                 "--enable_batching", "--rest_api_timeout_in_ms=1234",
                 "--max_num_load_retries=2", "--file_system_poll_wait_seconds=3",
                 "--allow_version_labels_for_unavailable_models", "--prefer_tflite_model",
                 "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.x=y",
                 "--num_request_iterations_for_warmup=3")
    app, server = plan.config.ModelServerApp, plan.config.ServerApp
    assert app.prefer_tflite_model is True
    assert app.warmup_iterations == 3
    assert app.grpc_channel_arguments == {"grpc.max_connection_age_ms": 2000, "grpc.x": "y"}
    assert app.grpc_port == -1 and app.grpc_socket_path == "/tmp/s"
    assert app.enable_batching is True
    assert app.rest_api_timeout_in_ms == 1234
    assert app.max_num_load_retries == 2
    assert app.file_system_poll_wait_seconds == 3.0
    assert app.model_config_file_poll_wait_seconds == 0.0  # TF Serving: read once
    assert app.allow_version_labels_for_unavailable_models is True
    assert app.rest_api is False  # --rest_api_port=0: no REST, as TF Serving
    assert server.port_retries == 0
    assert app.model_root.startswith(str(tmp_path))  # the user's data dir is not touched
    # TF Serving uses --num_request_iterations_for_warmup only when > 0.
    assert "warmup_iterations" not in _plan(tmp_path, "--model_base_path=/m").config.ModelServerApp


def test_rest_and_grpc_ports(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "--model_base_path=/m", "--port=9100", "--rest_api_port=9101")
    assert plan.config.ModelServerApp.grpc_port == 9100
    assert plan.config.ModelServerApp.rest_api is True
    assert plan.config.ServerApp.port == 9101


@pytest.mark.parametrize(("argv", "needle"), [
    ([], "Both server_options.model_base_path and server_options.model_config_file are empty"),
    (["--model_base_path=/m", "--port=0"], "grpc_socket_path must be set"),
    (["--model_base_path=/m", "--port=9000", "--rest_api_port=9000"], "cannot be same"),
])
def test_refused_command_lines(tmp_path: Path, argv: list[str], needle: str) -> None:
    with pytest.raises(ms.StartupError, match=needle):
        _plan(tmp_path, *argv)


def test_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert _plan(tmp_path, "--model_base_path=/m", "--token=abc").token == "abc"
    plan = _plan(tmp_path, "--model_base_path=/m", f"--token_file={token_file}")
    assert plan.token == "from-file"
    assert plan.config.IdentityProvider.token == "from-file"
    default = _plan(tmp_path, "--model_base_path=/m")
    assert default.token is None and "IdentityProvider" not in default.config
    anonymous = _plan(tmp_path, "--model_base_path=/m", "--no_auth")
    assert anonymous.no_auth and anonymous.config.IdentityProvider.token == ""
    assert anonymous.config.ModelServerApp.management_api is False


def test_authorizer_allows_only_the_extension() -> None:
    authorizer = ms.ModelServerAuthorizer()
    assert authorizer.is_authorized(None, object(), "write", "tfserving")
    for resource in ("kernels", "contents", "terminals", "sessions", "server"):
        assert not authorizer.is_authorized(None, object(), "read", resource)


def test_broken_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { config { name: 'x' base_path: '/x' } ")
    assert ms.main([f"--model_config_file={bad}"]) != 0
    assert ("Error parsing text-format tensorflow.serving.ModelServerConfig"
            in capsys.readouterr().err)
    garbage = tmp_path / "garbage.config"
    garbage.write_text("improperly formatted file")
    assert ms.main([f"--model_config_file={garbage}"]) != 0
    assert "Error parsing text-format" in capsys.readouterr().err
    assert ms.main([f"--model_config_file={tmp_path / 'missing'}"]) != 0
    assert "Error parsing text-format" in capsys.readouterr().err


def test_monitoring_config(tmp_path: Path) -> None:
    config = tmp_path / "monitoring.config"
    config.write_text('prometheus_config: { enable: true, path: "/metrics/x" }')
    assert ms.prometheus_path(str(config)) == "/metrics/x"
    config.write_text("prometheus_config { enable: true }")
    assert ms.prometheus_path(str(config)) == ms.DEFAULT_PROMETHEUS_PATH
    config.write_text("prometheus_config { enable: false }")
    assert ms.prometheus_path(str(config)) == ""
    config.write_text("nonsense {")
    with pytest.raises(ms.StartupError, match="MonitoringConfig"):
        ms.prometheus_path(str(config))


def test_ssl_config(tmp_path: Path) -> None:
    config = tmp_path / "ssl.config"
    config.write_text('server_key: "KEY" server_cert: "CERT" custom_ca: "CA" '
                      "client_verify: true")
    work = tmp_path / "w"
    work.mkdir()
    files = ms.write_ssl_files(str(config), str(work))
    assert Path(files["certfile"]).read_text() == "CERT"
    assert Path(files["keyfile"]).read_text() == "KEY"
    assert Path(files["client_ca"]).read_text() == "CA"
    assert os.stat(files["keyfile"]).st_mode & 0o077 == 0


# ---------------------------------------------------------------------------- a real start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, headers: dict[str, str], proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            r = requests.get(url, headers=headers, timeout=5)
            if r.ok and "AVAILABLE" in r.text:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} was not ready in time")


def test_serves_rest_and_grpc_then_stops_on_sigterm(tmp_path: Path) -> None:
    testdata = testdata_or_skip()
    import grpc
    import numpy as np
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    grpc_port, rest_port = _free_port(), _free_port()
    token = "model-server-test-token"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    env.pop("JUPYTER_TOKEN", None)
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_tfserving.model_server", f"--port={grpc_port}",
         "--rest_api_port", str(rest_port), "--model_name=half",
         f"--model_base_path={testdata / 'saved_model_half_plus_two_cpu'}",
         f"--token={token}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        headers = {"Authorization": f"token {token}"}
        base = f"http://127.0.0.1:{rest_port}"
        _wait_ready(f"{base}/v1/models/half", headers, proc)
        r = requests.post(f"{base}/v1/models/half:predict", headers=headers,
                          json={"instances": [1.0, 2.0, 5.0]}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": [2.5, 3.0, 4.5]}
        # the token is required; Jupyter's own APIs are refused even with it
        anonymous = requests.get(f"{base}/v1/models/half", timeout=10)
        assert anonymous.status_code in (401, 403)
        assert requests.get(f"{base}/api/contents", headers=headers,
                            timeout=10).status_code == 403

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "half"
            request.inputs["x"].CopyFrom(_tensor_proto(np.array([1.0, 2.0, 5.0], np.float32)))
            response = stub.Predict(request, timeout=30,
                                    metadata=[("authorization", f"token {token}")])
            assert list(response.outputs["y"].float_val) == [2.5, 3.0, 4.5]
            with pytest.raises(grpc.RpcError) as denied:
                stub.Predict(request, timeout=30)
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        log.close()
    assert rc == 0, (tmp_path / "server.log").read_text(errors="replace")[-4000:]


def _tensor_proto(array: Any) -> Any:
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape]))
    proto.float_val.extend(array.tolist())
    return proto


def test_batch_latency_target_makes_the_batch_wait_adaptive(tmp_path: Path) -> None:
    """Ours: --batch_latency_target_ms > 0 with --enable_batching sets batch_timeout_micros
    'auto' with that target (over the batching file's timeout); 0 (the default) keeps TF
    Serving's fixed timeout; without --enable_batching it is noted as having no effect; a
    negative or non-numeric value is refused."""
    assert ms.parse_flags([])["batch_latency_target_ms"] == 0.0
    plan = _plan(tmp_path, "--model_base_path=/m", "--enable_batching",
                 "--batching_parameters_file=/b", "--batch_latency_target_ms=25")
    app = plan.config.ModelServerApp
    assert (app.batch_timeout_micros, app.batch_latency_target_ms) == ("auto", 25.0)
    assert app.batching_parameters_file == "/b"
    fixed = _plan(tmp_path, "--model_base_path=/m", "--enable_batching").config.ModelServerApp
    assert "batch_timeout_micros" not in fixed
    unbatched = _plan(tmp_path, "--model_base_path=/m", "--batch_latency_target_ms=25")
    assert "batch_timeout_micros" not in unbatched.config.ModelServerApp
    assert any("batch_latency_target_ms" in note for note in unbatched.notes)
    with pytest.raises(ms.StartupError, match="batch_latency_target_ms"):
        _plan(tmp_path, "--model_base_path=/m", "--enable_batching",
              "--batch_latency_target_ms=-1")
    with pytest.raises(ms.FlagError, match="batch_latency_target_ms"):
        ms.parse_flags(["--batch_latency_target_ms=soon"])
