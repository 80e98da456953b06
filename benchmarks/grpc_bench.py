"""TF Serving gRPC messages for the ``grpc`` scenario of ``benchmarks.run``.

The load generator (:mod:`benchmarks.grpc_loadgen`) sends bytes; this module makes them, once,
in the parent: :func:`predict_request` serialises a ``tensorflow.serving.PredictRequest`` whose
inputs are ``tensor_content`` TensorProtos (raw little-endian bytes, what
``tf.make_tensor_proto`` writes for an array), with the messages of
``jupyter_tfserving.grpc.protos`` (TF Serving's generated modules, loaded without TensorFlow).
:func:`call` makes one blocking call with the same bytes (waiting for the port to answer), to
check a server before it is loaded; :func:`predict_outputs` reads the answer back.
"""

from __future__ import annotations

import time
from typing import Any

import grpc  # type: ignore[import-untyped]
import numpy as np

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


def _protos() -> Any:
    from jupyter_tfserving.grpc import protos

    return protos.load()


def predict_request(model: str, inputs: dict[str, np.ndarray],
                    signature_name: str = "serving_default") -> bytes:
    """A serialised PredictRequest for ``model`` with each input as a DT_FLOAT TensorProto in
    ``tensor_content`` (float32, little-endian)."""
    p = _protos()
    request = p.predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    for alias, value in inputs.items():
        arr = np.ascontiguousarray(value, dtype="<f4")
        tensor = request.inputs[alias]
        tensor.dtype = p.types_pb2.DT_FLOAT
        for size in arr.shape:
            tensor.tensor_shape.dim.add().size = size
        tensor.tensor_content = arr.tobytes()
    return bytes(request.SerializeToString())


def predict_outputs(raw: bytes) -> dict[str, np.ndarray]:
    """The DT_FLOAT outputs of a serialised PredictResponse (typed ``float_val`` or
    ``tensor_content``), shaped."""
    p = _protos()
    response = p.predict_pb2.PredictResponse.FromString(raw)
    out = {}
    for alias, tensor in response.outputs.items():
        shape = [d.size for d in tensor.tensor_shape.dim]
        if tensor.tensor_content:
            arr = np.frombuffer(tensor.tensor_content, dtype="<f4")
        else:
            arr = np.array(tensor.float_val, dtype=np.float32)
        out[alias] = arr.reshape(shape)
    return out


def call(target: str, method: str, request: bytes, token: str = "",
         wait: float = 60.0) -> bytes:
    """One blocking unary call of ``method`` with the raw ``request``, the token in the
    metadata unless it is ''; retried while the server is UNAVAILABLE (still starting), for up
    to ``wait`` seconds. Returns the answer's bytes; raises RuntimeError on another status."""
    metadata = (("authorization", f"token {token}"),) if token else None
    deadline = time.monotonic() + wait
    with grpc.insecure_channel(target) as channel:
        stub = channel.unary_unary(method)
        while True:
            try:
                return bytes(stub(request, metadata=metadata, timeout=30))
            except grpc.RpcError as exc:
                code = exc.code()
                if code != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise RuntimeError(f"gRPC {method} at {target}: {code.name}: "
                                       f"{exc.details()}") from None
            time.sleep(0.25)
