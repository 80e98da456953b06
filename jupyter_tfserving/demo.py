"""The quick-start demo: make a small model, serve it, show how to call it.

``python -m jupyter_tfserving.demo`` exports ``half_plus_two`` (y = 0.5 x + 2, TF Serving's
classic test model) as version 1 into ``./demo_models`` with TensorFlow, starts
``jupyter tfserving`` on it in a child process with a fresh token, waits until the version is
AVAILABLE, prints the URL, the token, a working ``curl`` line and the answer it got, then runs
until Ctrl-C. ``--check`` stops after the first answer (the test suite uses it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

MODEL_NAME = "half_plus_two"


def export_half_plus_two(base_path: str, version: int = 1) -> str:
    """Export y = 0.5 x + 2 with a ``serving_default`` predict signature (x: float [-1, 1]),
    atomically (written beside, then renamed into place). Returns the version directory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5)
            self.b = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": self.a * x + self.b}

    return save_version(HalfPlusTwo(), base_path, version)


def save_version(module: Any, base_path: str, version: int) -> str:
    """Save ``module`` (its ``serve`` function as ``serving_default``) as version ``version``
    under ``base_path``: written beside, then renamed into place, so a poller never sees half
    of it. Returns the version directory."""
    import tensorflow as tf

    target = os.path.join(base_path, str(version))
    os.makedirs(base_path, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=base_path)
    tf.saved_model.save(module, staging, signatures={"serving_default": module.serve})
    os.replace(staging, target)
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _grpc_predict(port: int, token: str) -> str:
    """The same three rows through TF Serving's gRPC Predict: the answer's ``y`` values."""
    import grpc  # type: ignore[import-untyped]

    from .grpc import protos

    p = protos.load()
    request = p.predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    tensor = request.inputs["x"]
    tensor.dtype = p.types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=3)
    tensor.tensor_shape.dim.add(size=1)
    tensor.float_val.extend([1.0, 2.0, 5.0])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = p.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            answer = stub.Predict(request, timeout=30,
                                  metadata=[("authorization", f"token {token}")])
        except grpc.RpcError as exc:
            return f"failed: {exc.code().name} {exc.details()}"
    return f"y = {list(answer.outputs['y'].float_val)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-root", default="demo_models")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--check", action="store_true", help="stop after the first answer")
    args = parser.parse_args(argv)

    model_root = os.path.abspath(args.model_root)
    base_path = os.path.join(model_root, MODEL_NAME)
    if not os.path.isdir(os.path.join(base_path, "1")):
        print(f"Exporting {MODEL_NAME} (y = 0.5 x + 2) to {base_path}/1 ...", flush=True)
        export_half_plus_two(base_path)

    port = args.port or _free_port()
    grpc_port = _free_port()
    token = secrets.token_hex(24)
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter_tfserving",
            "--allow-root", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            "--ServerApp.open_browser=False", f"--IdentityProvider.token={token}",
            f"--TFServingApp.model_root={model_root}", f"--TFServingApp.grpc_port={grpc_port}",
        ],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"},
    )
    base = f"http://127.0.0.1:{port}/tfserving/v1/models/{MODEL_NAME}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                print("The server exited before the model was served.", file=sys.stderr)
                return 1
            try:
                status, body = _get(base, token)
                if status == 200 and b'"AVAILABLE"' in body:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                print("The model did not become AVAILABLE in 120 s.", file=sys.stderr)
                return 1
            time.sleep(0.3)
        payload = '{"instances": [[1.0], [2.0], [5.0]]}'
        status, answer = _get(base + ":predict", token, payload.encode())
        curl = (
            f"curl -H {shlex.quote('Authorization: token ' + token)} "
            f"-d {shlex.quote(payload)} {base}:predict"
        )
        print("\n" + "=" * 72)
        print(f"jupyter_tfserving is serving {MODEL_NAME} from {model_root}")
        print(f"  URL:    {base}")
        print(f"  token:  {token}")
        print(f"  Jupyter: http://127.0.0.1:{port}/?token={token}")
        print(f"  try:    {curl}")
        print(f"  answer: {answer.decode()} (HTTP {status})")
        print(f"  gRPC:   127.0.0.1:{grpc_port} (TF Serving's PredictionService, the token in "
              f"'authorization' metadata): Predict {_grpc_predict(grpc_port, token)}")
        print("=" * 72 + "\nCtrl-C stops the server.\n", flush=True)
        if status != 200 or json.loads(answer) != {"predictions": [[2.5], [3.0], [4.5]]}:
            print("Unexpected answer from the server.", file=sys.stderr)
            return 1
        if not args.check:
            server.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
