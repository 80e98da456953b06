"""MLServer as a point of comparison (opt-in: ``benchmarks.run --mlserver``).

``ensure_venv()`` creates, once, a virtual environment of its own under
``benchmarks/results/mlserver-venv`` (git-ignored, kept between runs) holding ``mlserver``
1.7.x from PyPI (and ``uvloop<0.22``, see :data:`REQUIREMENTS`); nothing of it enters the
project's own environment. ``mlserver(...)`` writes a tiny custom runtime serving
``half_plus_two`` (y = 0.5 x + 2, one FP32 input ``x``), starts ``mlserver start`` on free
loopback ports (HTTP, gRPC, metrics) and yields a handle whose ``pids()`` are the processes to
charge CPU to (the main process and, with ``parallel_workers`` > 0, its inference workers).
The load generator then drives its REST v2 endpoint ``POST /v2/models/half_plus_two/infer``
with :data:`V2_BODY`, the Open Inference Protocol's equivalent of ``{"instances": [[1.0]]}``,
or (the ``grpc`` scenario) its gRPC V2 endpoint :data:`GRPC_METHOD` with the bytes of
:func:`grpc_infer_body`: a ``ModelInferRequest`` serialised in the MLServer venv with MLServer's
own ``mlserver.grpc.dataplane_pb2``, the input in ``raw_input_contents`` (the V2 protocol's
counterpart of a TensorProto's ``tensor_content``; MLServer then answers in
``raw_output_contents`` too). :func:`grpc_decode_answer` reads an answer back, there too.

Set-up by hand: ``.venv/bin/python -m benchmarks.mlserver_bench --setup``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from benchmarks.run import Server

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / "benchmarks" / "results" / "mlserver-venv"
# uvloop 0.22+ breaks MLServer 1.7.1's inference workers (parallel_workers >= 1, its default):
# "RuntimeError: There is no current event loop in thread 'MainThread'" in
# mlserver/parallel/worker.py _ignore_signals (SeldonIO/MLServer#2286, fix in PR #2285, not
# released); the worker dies and the server stops. Hence the pin.
REQUIREMENTS = ("mlserver==1.7.*", "uvloop<0.22")
MODEL = "half_plus_two"
INFER_PATH = f"/v2/models/{MODEL}/infer"
V2_BODY = (b'{"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", '
           b'"data": [1.0]}]}')
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"

# Run by the MLServer venv's python: "request" writes a serialised ModelInferRequest for x =
# [[1.0]] (FP32, raw_input_contents) to stdout; "decode" reads a serialised ModelInferResponse
# on stdin and prints its outputs as JSON ({name: [values]}, raw contents unpacked).
_PB_SCRIPT = f'''\
import json, sys
import numpy as np
from mlserver.grpc import dataplane_pb2 as pb

if sys.argv[1] == "request":
    request = pb.ModelInferRequest(model_name="{MODEL}", inputs=[
        pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 1])])
    request.raw_input_contents.append(np.array([[1.0]], dtype="<f4").tobytes())
    sys.stdout.buffer.write(request.SerializeToString())
else:
    response = pb.ModelInferResponse.FromString(sys.stdin.buffer.read())
    out = {{}}
    for i, tensor in enumerate(response.outputs):
        if response.raw_output_contents:
            values = np.frombuffer(response.raw_output_contents[i], dtype="<f4").tolist()
        else:
            values = list(tensor.contents.fp32_contents or tensor.contents.fp64_contents)
        out[tensor.name] = values
    print(json.dumps(out))
'''

RUNTIME = '''\
"""y = 0.5 x + 2 as an MLServer custom runtime (written by benchmarks/mlserver_bench.py)."""
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class HalfPlusTwo(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        y = 0.5 * x + 2
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("y", y)])
'''


def _python() -> Path:
    return VENV / "bin" / "python"


def _marker() -> Path:
    return VENV / ".installed"


def ensure_venv(log=print) -> Path:
    """The venv's python, creating the venv and installing :data:`REQUIREMENTS` once (again
    when they change). Raises RuntimeError with pip's own words if they cannot be installed."""
    wanted = " ".join(REQUIREMENTS)
    if _python().exists() and _marker().is_file() and \
            _marker().read_text().splitlines()[:1] == [wanted]:
        return _python()
    log(f"mlserver: installing {wanted} into {VENV} (once; cached)")
    VENV.parent.mkdir(parents=True, exist_ok=True)
    if not _python().exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True, capture_output=True)
    proc = subprocess.run([str(_python()), "-m", "pip", "install", "--disable-pip-version-check",
                           "-q", *REQUIREMENTS], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install {wanted} failed ({proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    _marker().write_text(f"{wanted}\nmlserver {version()}\n")
    return _python()


def version() -> str:
    out = subprocess.run([str(_python()), "-c",
                          "import mlserver, sys; print(mlserver.__version__)"],
                         capture_output=True, text=True, timeout=120)
    return out.stdout.strip() or f"unknown ({out.stderr.strip()[-200:]})"


def _venv_env(python: Path) -> dict[str, str]:
    """This environment for the MLServer venv's programs: none of the project's paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run_pb_script(mode: str, stdin: bytes = b"") -> bytes:
    python = ensure_venv()
    proc = subprocess.run([str(python), "-c", _PB_SCRIPT, mode], input=stdin,
                          env=_venv_env(python), capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"mlserver venv: {mode} failed ({proc.returncode}):\n"
                           f"{proc.stderr.decode(errors='replace')[-3000:]}")
    return proc.stdout


def grpc_infer_body() -> bytes:
    """A serialised V2 ``ModelInferRequest`` for :data:`MODEL` with x = [[1.0]] (FP32, in
    ``raw_input_contents``), made once by MLServer's own generated module in its venv."""
    return _run_pb_script("request")


def grpc_decode_answer(raw: bytes) -> dict[str, list[float]]:
    """The outputs of a serialised ``ModelInferResponse``, {name: flat values} (decoded in the
    MLServer venv)."""
    out: dict[str, list[float]] = json.loads(_run_pb_script("decode", raw))
    return out


def write_model_dir(folder: Path, http_port: int, grpc_port: int, metrics_port: int,
                    parallel_workers: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "half_plus_two_runtime.py").write_text(RUNTIME)
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": parallel_workers,
        "debug": False,
    }, indent=2))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": MODEL,
        "implementation": "half_plus_two_runtime.HalfPlusTwo",
    }, indent=2))


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def process_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


class MLServer(Server):
    """A running ``mlserver start`` child: ``Server``'s port, base URL, gRPC target and log,
    with no token (no Authorization header or metadata: MLServer has none) and its worker
    processes' CPU counted."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path,
                 grpc_port: int | None = None) -> None:
        super().__init__(proc, port, "", log_path, grpc_port)

    def pids(self) -> list[int]:
        """The main process and its descendants (inference workers), for CPU accounting."""
        return process_tree(self.proc.pid)

    def post(self, body: bytes, timeout: float = 10) -> tuple[int, bytes]:
        req = urllib.request.Request(self.base + INFER_PATH, data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlserver exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/v2/models/{MODEL}/ready",
                                            timeout=5) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlserver not ready in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.25)


@contextmanager
def mlserver(workdir: Path, ports: tuple[int, int, int], parallel_workers: int = 0
             ) -> Iterator[MLServer]:
    """Start ``mlserver start`` on 127.0.0.1 (ports: HTTP, gRPC, metrics); killed on exit."""
    python = ensure_venv()
    folder = workdir / f"mlserver-{ports[0]}"
    write_model_dir(folder, *ports, parallel_workers)
    log_path = workdir / f"mlserver-{ports[0]}.log"
    env = _venv_env(python)
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([str(python.parent / "mlserver"), "start", str(folder)],
                                cwd=folder, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    srv = MLServer(proc, ports[0], log_path, ports[1])
    try:
        yield srv
    finally:
        if proc.poll() is None:
            # The whole session: mlserver's inference workers are its children.
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the session, if any


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="MLServer venv set-up for benchmarks.run --mlserver")
    p.add_argument("--setup", action="store_true", help="create the venv (once) and exit")
    args = p.parse_args(argv)
    if args.setup:
        ensure_venv()
        print(f"{_python()}: mlserver {version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
