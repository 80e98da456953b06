"""Property-based fuzzing of the gRPC servicers against a real server.

Hypothesis sends arbitrary messages to every method of TF Serving's two services on the
extension's gRPC server (serving TF Serving's ``half_plus_two`` test models, plus a sentinel
model): PredictRequests (``model_spec`` name / version / version_label / signature_name;
``inputs`` as TensorProtos of any dtype number, dimensions negative or huge, ``tensor_content``
and every typed ``*_val`` field; ``output_filter``), ClassificationRequests, RegressionRequests
and MultiInferenceRequests (``Input`` as ``example_list`` or ``example_list_with_context``,
arbitrary features), GetModelMetadataRequests (``metadata_field``), GetModelStatusRequests; and
arbitrary bytes (random, or a valid message mangled) as the raw request of each method, sent with
``channel.unary_unary(path)`` without serialisers. Every answer must:

- come before the call's deadline, with a status among :data:`ALLOWED` (never INTERNAL, UNKNOWN);
- carry details without a traceback, ``File "``, the package's directory or ``sys.prefix``
  (unless the request itself held that text);
- when OK, parse as the method's response, whose ``model_spec`` names the model and the version
  that answered (the one asked for, the label's, or ``stable``'s), with one result per example
  / task, and hold the model's numbers (every version is half_plus_two: 0.5 x + 2, or + 3);

and after each call no request is left admitted and no version handle held (the service's
``admission.in_flight`` and ``in_flight()``, the manager's refcounts, return to 0), and after
each property the sentinel model, which only reads reach, still answers correctly. Calls whose
deadline is already past or expires midway, and calls cancelled midway (``future.cancel()``),
must leave the server as healthy and leak nothing either: they are sent in bursts of
concurrent calls (which may share a batch; predicts wait 3 ms for batch mates there) beside
untouched calls, whose answers must stay right.

A plain sweep cuts each slow request at regular fractions of the time it takes (by deadline
and by cancellation), which reaches the narrow windows (a large predict's decoding on a request
thread) that random timing rarely hits; the last test keeps what the fuzzing found (a DT_STRING
tensor of 33 dimensions crashed the server) from coming back.

Hypothesis runs a plain ``@given`` function on a worker thread (blocking gRPC calls) while the
server runs on pytest-jupyter's event loop, as ``tests/rest/test_fuzz.py`` does.

The default run is small (a few dozen examples per property). For a longer one set
``JTFS_FUZZ_EXAMPLES=N``: N examples for each property, e.g.
``JTFS_FUZZ_EXAMPLES=2000 pytest tests/grpc/test_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import jupyter_tfserving
from jupyter_tfserving.grpc import protos
from tests import conftest as shared
from tests.conftest import TESTDATA
from tests.grpc.conftest import extension_app, started_grpc
from tests.grpc.test_servicers import CONFIG as SERVICERS_CONFIG

# Hypothesis seeds the global `random` while it draws an example and warns when its state
# changed meanwhile: the server's threads (same process) may use `random` then, not the strategies.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies")

EXAMPLES = int(os.environ.get("JTFS_FUZZ_EXAMPLES", "0") or 0)
SENTINEL = "sentinel"
# A fuzzed call answering with DEADLINE_EXCEEDED after this long is a hang.
CALL_TIMEOUT = 30.0
SETTLE_TIMEOUT = 15.0
PACKAGE_DIR = str(Path(jupyter_tfserving.__file__).resolve().parent)
# Text that must never reach a client unless the client sent it first.
LEAKS = ("Traceback", 'File "', PACKAGE_DIR, sys.prefix, "site-packages")
S = grpc.StatusCode
ALLOWED = {S.OK, S.INVALID_ARGUMENT, S.NOT_FOUND, S.FAILED_PRECONDITION, S.UNIMPLEMENTED,
           S.OUT_OF_RANGE, S.RESOURCE_EXHAUSTED}
# Small, so that no drawn shape makes the server allocate much (huge ones are refused:
# INVALID_ARGUMENT, as the typical refusals; RESOURCE_EXHAUSTED would be a message too large).
MAX_TENSOR_ELEMENTS = 1 << 16
# The most dimensions of a request's tensor (core.dtypes.MAX_TENSOR_RANK): past 32, TensorFlow's
# numpy conversion of a DT_STRING tensor crashed the server (found here, see the last test).
MAX_TENSOR_RANK = 32
DT_STRING = 7
# Rows (or examples) of a large request: a message past the servicers' 16 KiB inline limit.
LARGE_ROWS = 5000

P = protos.load()
PREDICTION = "/tensorflow.serving.PredictionService/"
MODEL_SERVICE = "/tensorflow.serving.ModelService/"
# method -> (path, request class, response class)
METHODS: dict[str, tuple[str, Any, Any]] = {
    "Predict": (PREDICTION + "Predict", P.predict_pb2.PredictRequest,
                P.predict_pb2.PredictResponse),
    "Classify": (PREDICTION + "Classify", P.classification_pb2.ClassificationRequest,
                 P.classification_pb2.ClassificationResponse),
    "Regress": (PREDICTION + "Regress", P.regression_pb2.RegressionRequest,
                P.regression_pb2.RegressionResponse),
    "MultiInference": (PREDICTION + "MultiInference", P.inference_pb2.MultiInferenceRequest,
                       P.inference_pb2.MultiInferenceResponse),
    "GetModelMetadata": (PREDICTION + "GetModelMetadata",
                         P.get_model_metadata_pb2.GetModelMetadataRequest,
                         P.get_model_metadata_pb2.GetModelMetadataResponse),
    "GetModelStatus": (MODEL_SERVICE + "GetModelStatus",
                       P.get_model_status_pb2.GetModelStatusRequest,
                       P.get_model_status_pb2.GetModelStatusResponse),
    "HandleReloadConfigRequest": (MODEL_SERVICE + "HandleReloadConfigRequest",
                                  P.model_management_pb2.ReloadConfigRequest,
                                  P.model_management_pb2.ReloadConfigResponse),
}

# test_servicers' models, and the sentinel the fuzzed calls never address.
CONFIG = SERVICERS_CONFIG.rstrip().removesuffix("}") + """\
  config { name: "sentinel" base_path: "%(d)s/saved_model_half_plus_two_cpu"
           model_platform: "tensorflow" }
}
"""
# What routing must answer with: model -> versions served, label -> version, and the version
# of a request naming neither (the latest; "stable" where it is set, without a canary weight).
VERSIONS = {"default": {123}, "two": {123, 124}, SENTINEL: {123}}
LABELS_OF = {"two": {"stable": 123, "canary": 124}}
UNVERSIONED = {"default": 123, "two": 123, SENTINEL: 123}


@pytest.fixture
def tfserving_config(tmp_path: Path, request: pytest.FixtureRequest) -> dict:
    shared.testdata_or_skip()
    config = tmp_path / "models.config"
    config.write_text(CONFIG % {"d": TESTDATA})
    options = {"model_config_file": str(config), "max_tensor_elements": MAX_TENSOR_ELEMENTS}
    # Predicts wait a little for batch mates, so that deadlines and cancellations find them
    # queued too (the default, 0, runs a batch as soon as a batch thread is free).
    options.update(BATCH_OPTIONS.get(request.node.name, {}))
    return options


BATCH_OPTIONS = {name: {"batch_timeout_micros": 3000} for name in (
    "test_fuzz_deadlines_and_cancellations", "test_deadlines_and_cancellations_sweep")}


def fuzz_settings(default: int) -> settings:
    return settings(max_examples=EXAMPLES or default, deadline=None,
                    suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------ strategies

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
NAMES = st.one_of(st.sampled_from(["default", "two", SENTINEL, "nope", ""]), TEXT,
                  st.sampled_from(["x" * 5000, "../default", "File \"x\"", "\0", "default\n"]))
SIGNATURES = st.one_of(
    st.sampled_from(["", "serving_default", "classify_x_to_y", "regress_x_to_y",
                     "regress_x_to_y2", "regress_x2_to_y3", "__saved_model_init_op", "nope"]),
    TEXT)
INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
VERSION_NUMBERS = st.one_of(st.sampled_from([123, 124, 0, -1, 1, 2**63 - 1, -(2**63)]), INT64)
LABELS = st.one_of(st.sampled_from(["stable", "canary", "", "latest", "123"]), TEXT)
DTYPES = st.one_of(st.sampled_from([1] * 6 + [7] * 2 + list(P.types_pb2.DataType.values())),
                   INT32)
DIMS = st.one_of(
    st.lists(st.one_of(st.integers(0, 4), st.sampled_from(
        [-1, -2, -(2**63), 2**31, 2**32 + 1, 2**62, 2**63 - 1, 65536, 65537, 1 << 24]), INT64),
        max_size=5),
    st.sampled_from([MAX_TENSOR_RANK, MAX_TENSOR_RANK + 1, 64, 65]).map(lambda n: [1] * n),
)
ALIASES = st.one_of(st.sampled_from(["x", "x", "inputs", "y", ""]), TEXT)
OUTPUTS = st.one_of(st.sampled_from(["y", "scores", "classes", "outputs", "x", ""]), TEXT)
FLOAT32 = st.floats(width=32)
VALUE_FIELDS = {
    "float_val": st.lists(FLOAT32, max_size=6),
    "double_val": st.lists(st.floats(), max_size=6),
    "int_val": st.lists(INT32, max_size=6),
    "int64_val": st.lists(INT64, max_size=6),
    "uint32_val": st.lists(st.integers(0, 2**32 - 1), max_size=6),
    "uint64_val": st.lists(st.integers(0, 2**64 - 1), max_size=6),
    "half_val": st.lists(INT32, max_size=6),
    "bool_val": st.lists(st.booleans(), max_size=6),
    "string_val": st.lists(st.binary(max_size=16), max_size=6),
    "scomplex_val": st.lists(FLOAT32, max_size=7),
    "dcomplex_val": st.lists(st.floats(), max_size=7),
}
ITEMSIZE = {1: 4, 2: 8, 3: 4, 4: 1, 5: 2, 6: 1, 8: 8, 9: 8, 10: 1, 14: 2, 17: 2, 18: 16, 19: 2,
            22: 4, 23: 8}


def _good_example(x: float) -> Any:
    example = P.example_pb2.Example()
    example.features.feature["x"].float_list.value.append(x)
    return example


@st.composite
def features(draw: Callable) -> Any:
    feature = P.feature_pb2.Feature()
    kind = draw(st.sampled_from(["float", "float", "int64", "bytes", None]))
    if kind == "float":
        feature.float_list.SetInParent()
        feature.float_list.value.extend(draw(st.lists(FLOAT32, max_size=4)))
    elif kind == "int64":
        feature.int64_list.SetInParent()
        feature.int64_list.value.extend(draw(st.lists(INT64, max_size=4)))
    elif kind == "bytes":
        feature.bytes_list.SetInParent()
        feature.bytes_list.value.extend(draw(st.lists(st.binary(max_size=8), max_size=4)))
    return feature


@st.composite
def any_examples(draw: Callable) -> Any:
    example = P.example_pb2.Example()
    names = st.one_of(st.sampled_from(["x", "x", "x2", "inputs", "y"]), TEXT)
    for name, feature in draw(st.dictionaries(names, features(), max_size=3)).items():
        example.features.feature[name].CopyFrom(feature)
    return example


GOOD_EXAMPLES = st.floats(-1e6, 1e6, width=32).map(_good_example)
EXAMPLE_PROTOS = st.one_of(GOOD_EXAMPLES, any_examples())


@st.composite
def tensors(draw: Callable, kind: str | None = None) -> Any:
    """A TensorProto: well formed, of ``kind`` ("float": DT_FLOAT [n, 1] and other shapes,
    "strings": serialised tf.Examples), or anything (None: any of these)."""
    tensor = P.tensor_pb2.TensorProto()
    chosen = kind or draw(st.sampled_from(["float", "strings", "any", "any"]))
    if chosen == "float":
        # Sometimes past the 16 KiB that servicers decode on the loop (a request thread then).
        n = draw(st.one_of(st.integers(0, 5), st.just(LARGE_ROWS)))
        tensor.dtype = 1
        for size in draw(st.sampled_from([[n, 1], [n], [1, n, 1], [1, n], []])):
            tensor.tensor_shape.dim.add().size = size
        values = draw(st.lists(FLOAT32, min_size=min(n, 5), max_size=min(n, 5)))
        values = (values * (n // 5 + 1))[:n]
        if draw(st.booleans()):
            tensor.float_val.extend(values)
        else:
            tensor.tensor_content = struct.pack(f"<{len(values)}f", *values) if values else b""
        return tensor
    if chosen == "strings":  # serialised examples, for predict on the classify/regress signatures
        tensor.dtype = 7
        examples = draw(st.lists(GOOD_EXAMPLES if kind else EXAMPLE_PROTOS, max_size=3))
        tensor.tensor_shape.dim.add().size = len(examples)
        tensor.string_val.extend(e.SerializeToString() for e in examples)
        return tensor
    tensor.dtype = draw(DTYPES)
    dims = draw(DIMS)
    for size in dims:
        dim = tensor.tensor_shape.dim.add()
        dim.size = size
        if draw(st.integers(0, 9)) == 0:
            dim.name = draw(TEXT)
    if draw(st.integers(0, 9)) == 0:
        tensor.tensor_shape.unknown_rank = True
    if draw(st.integers(0, 9)) == 0:
        tensor.version_number = draw(INT32)
    content = draw(st.sampled_from(["none", "none", "random", "sized"]))
    count = 1
    for size in dims:
        count *= size
    if content == "random":
        tensor.tensor_content = draw(st.binary(max_size=64))
    elif content == "sized" and 0 <= count <= 64:
        itemsize = ITEMSIZE.get(tensor.dtype, 1)
        tensor.tensor_content = draw(st.binary(min_size=count * itemsize,
                                               max_size=count * itemsize))
    for field, values in draw(st.fixed_dictionaries({}, optional=VALUE_FIELDS)).items():
        getattr(tensor, field).extend(values)
    return tensor


# Each request is drawn valid (it routes to a served version and a signature of its kind,
# with well-formed inputs), near-valid (one part of it drawn arbitrarily) or arbitrary.
VALID, NEAR, ANY = "valid", "near", "any"
MODES = st.sampled_from([VALID, NEAR, NEAR, ANY, ANY])
CLASSIFY, REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"
EXAMPLE_SIGNATURES = {"Classify": ["classify_x_to_y"],
                      "Regress": ["regress_x_to_y", "regress_x_to_y2"]}
TASKS = [("classify_x_to_y", CLASSIFY), ("regress_x_to_y", REGRESS),
         ("regress_x_to_y2", REGRESS)]


class Parts:
    """Which parts of a request are drawn arbitrarily: all of them (ANY), one (NEAR), none."""

    def __init__(self, draw: Callable, parts: list[str]) -> None:
        self.mode = draw(MODES)
        self.broken = draw(st.sampled_from(parts)) if self.mode == NEAR else None

    def wild(self, part: str) -> bool:
        return self.mode == ANY or self.broken == part


@st.composite
def any_specs(draw: Callable, target: Any) -> None:
    """Fill ``target`` (a ModelSpec) arbitrarily."""
    target.SetInParent()
    target.name = draw(NAMES)
    choice = draw(st.sampled_from([None, None, "version", "label"]))
    if choice == "version":
        target.version.value = draw(VERSION_NUMBERS)
    elif choice == "label":
        target.version_label = draw(LABELS)
    if draw(st.integers(0, 3)):
        target.signature_name = draw(SIGNATURES)


@st.composite
def valid_specs(draw: Callable, target: Any, signatures: Sequence[str | None]) -> None:
    """Fill ``target`` with a served model, version or label, and one of ``signatures``
    (None: unset)."""
    target.SetInParent()
    target.name = name = draw(st.sampled_from(sorted(VERSIONS)))
    choice = draw(st.sampled_from([None, "version", "label"]))
    if choice == "version":
        target.version.value = draw(st.sampled_from(sorted(VERSIONS[name])))
    elif choice == "label" and name in LABELS_OF:
        target.version_label = draw(st.sampled_from(sorted(LABELS_OF[name])))
    signature = draw(st.sampled_from(signatures))
    if signature is not None:
        target.signature_name = signature


def _spec(draw: Callable, parts: Parts, message: Any, signatures: Sequence[str | None]) -> None:
    if not parts.wild("spec"):
        draw(valid_specs(message.model_spec, signatures))
    elif draw(st.integers(0, 9)):  # sometimes none at all: "Missing ModelSpec"
        draw(any_specs(message.model_spec))


@st.composite
def any_inputs(draw: Callable, target: Any) -> None:
    """Fill ``target`` (a tensorflow.serving.Input) arbitrarily."""
    kind = draw(st.sampled_from(["list", "list", "context", "none"]))
    examples = draw(st.lists(EXAMPLE_PROTOS, max_size=4))
    if kind == "list":
        target.example_list.SetInParent()
        target.example_list.examples.extend(examples)
    elif kind == "context":
        target.example_list_with_context.SetInParent()
        target.example_list_with_context.examples.extend(examples)
        if draw(st.booleans()):
            target.example_list_with_context.context.CopyFrom(draw(EXAMPLE_PROTOS))


@st.composite
def valid_inputs(draw: Callable, target: Any) -> None:
    examples = draw(st.lists(GOOD_EXAMPLES, min_size=1, max_size=4))
    examples *= draw(st.sampled_from([1, 1, 1, LARGE_ROWS // 4]))
    if draw(st.booleans()):
        target.example_list.examples.extend(examples)
    else:
        target.example_list_with_context.examples.extend(examples)
        if draw(st.booleans()):
            target.example_list_with_context.context.CopyFrom(draw(GOOD_EXAMPLES))


def _input(draw: Callable, parts: Parts, target: Any) -> None:
    if not parts.wild("input"):
        draw(valid_inputs(target))
    elif draw(st.integers(0, 9)):
        draw(any_inputs(target))


# Predict's valid (signature, input alias, tensors) and the outputs it answers.
PREDICT_SIGNATURES = [
    ([None, "", "serving_default"], "x", "float", ["y"]),
    (["classify_x_to_y"], "inputs", "strings", ["scores"]),
    (["regress_x_to_y", "regress_x_to_y2"], "inputs", "strings", ["outputs"]),
    (["regress_x2_to_y3"], "inputs", "float", ["outputs"]),
]


@st.composite
def predict_requests(draw: Callable) -> Any:
    request = P.predict_pb2.PredictRequest()
    parts = Parts(draw, ["spec", "inputs", "tensor", "filter"])
    signatures, alias, kind, outputs = draw(st.sampled_from(PREDICT_SIGNATURES))
    _spec(draw, parts, request, signatures)
    if parts.wild("inputs"):
        for name, tensor in draw(st.dictionaries(ALIASES, tensors(), max_size=3)).items():
            request.inputs[name].CopyFrom(tensor)
    else:
        request.inputs[alias].CopyFrom(draw(tensors(None if parts.wild("tensor") else kind)))
    if parts.wild("filter"):
        request.output_filter.extend(draw(st.lists(OUTPUTS, max_size=3)))
    elif draw(st.booleans()):
        request.output_filter.extend(outputs)
    return request


@st.composite
def example_requests(draw: Callable, method: str) -> Any:
    request = METHODS[method][1]()
    parts = Parts(draw, ["spec", "input"])
    _spec(draw, parts, request, EXAMPLE_SIGNATURES[method])
    _input(draw, parts, request.input)
    return request


@st.composite
def multi_inference_requests(draw: Callable) -> Any:
    request = P.inference_pb2.MultiInferenceRequest()
    parts = Parts(draw, ["tasks", "method", "input"])
    if parts.wild("tasks"):
        for _ in range(draw(st.integers(0, 3))):
            task = request.tasks.add()
            if draw(st.integers(0, 9)):
                draw(any_specs(task.model_spec))
            task.method_name = draw(st.one_of(st.sampled_from(
                [CLASSIFY, REGRESS, "tensorflow/serving/predict", ""]), TEXT))
    else:
        first = P.model_pb2.ModelSpec()
        draw(valid_specs(first, [None]))
        for signature, method in draw(st.lists(st.sampled_from(TASKS), min_size=1,
                                               max_size=3, unique=True)):
            task = request.tasks.add()
            task.model_spec.CopyFrom(first)
            task.model_spec.signature_name = signature
            task.method_name = method
        if parts.wild("method"):
            task.method_name = draw(st.one_of(st.sampled_from(
                [CLASSIFY, REGRESS, "tensorflow/serving/predict", ""]), TEXT))
    _input(draw, parts, request.input)
    return request


@st.composite
def metadata_requests(draw: Callable) -> Any:
    request = P.get_model_metadata_pb2.GetModelMetadataRequest()
    parts = Parts(draw, ["spec", "fields"])
    _spec(draw, parts, request, [None, "", "serving_default", "nope"])
    if parts.wild("fields"):
        request.metadata_field.extend(draw(st.lists(
            st.one_of(st.sampled_from(["signature_def", "signature_def", ""]), TEXT),
            max_size=3)))
    else:
        request.metadata_field.append("signature_def")
    return request


@st.composite
def status_requests(draw: Callable) -> Any:
    request = P.get_model_status_pb2.GetModelStatusRequest()
    _spec(draw, Parts(draw, ["spec"]), request, [None, "", "nope"])
    return request


MESSAGES: dict[str, st.SearchStrategy] = {
    "Predict": predict_requests(),
    "Classify": example_requests("Classify"),
    "Regress": example_requests("Regress"),
    "MultiInference": multi_inference_requests(),
    "GetModelMetadata": metadata_requests(),
    "GetModelStatus": status_requests(),
}
REQUESTS = st.one_of([strategy.map(lambda r, m=method: (m, r))
                      for method, strategy in MESSAGES.items()])


@st.composite
def mangled(draw: Callable, strategy: st.SearchStrategy) -> bytes:
    """A valid message's bytes with a few bytes changed, some inserted, or cut short."""
    data = bytearray(draw(strategy).SerializeToString())
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


RAW_BYTES = st.one_of(
    st.binary(max_size=200),
    # Past the 16 KiB parsed on the loop: parsed on a request thread.
    st.tuples(st.binary(min_size=1, max_size=40), st.integers(500, 2000)).map(
        lambda t: t[0] * t[1]),
    st.sampled_from([b"", b"\0" * 64, b"\xff" * 16, b"\x0a\x80\x80\x80\x80\x10",
                     b"\x0a" + b"\xff" * 9 + b"\x01"]),
)


@st.composite
def raw_requests(draw: Callable) -> tuple[str, bytes]:
    method = draw(st.sampled_from(sorted(METHODS)))
    if method in MESSAGES and draw(st.booleans()):
        payload = draw(mangled(MESSAGES[method]))
    else:
        payload = draw(RAW_BYTES)
    if method == "HandleReloadConfigRequest":
        # Never a model_config_list: that would replace the served models, the sentinel too.
        try:
            parsed = METHODS[method][1].FromString(payload)
        except (DecodeError, RuntimeError, ValueError):
            pass
        else:
            assume(parsed.config.WhichOneof("config") != "model_config_list")
    return method, payload


# ------------------------------------------------------------------------------ client, checks


class Client:
    """Raw (bytes in, bytes out) callables of every method on one channel, the token in the
    metadata."""

    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.metadata = [("authorization", f"token {token}")]
        self.raw = {name: self.channel.unary_unary(path) for name, (path, _, _) in METHODS.items()}

    def call(self, method: str, payload: bytes,
             timeout: float = CALL_TIMEOUT) -> tuple[grpc.StatusCode, str, bytes | None]:
        try:
            answer = self.raw[method](payload, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", None
        return S.OK, "", answer

    def close(self) -> None:
        self.channel.close()


def _expected_version(spec: Any) -> int | None:
    """The version routing must answer ``spec`` with (None: any served one)."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value
    if choice == "version_label":
        return LABELS_OF.get(spec.name, {}).get(spec.version_label)
    return UNVERSIONED.get(spec.name)


def _check_spec(where: str, answered: Any, asked: Any, *, signature: bool = True) -> None:
    assert answered.name == asked.name, f"{where}: answered for {answered}"
    assert answered.HasField("version"), f"{where}: no version in {answered}"
    assert answered.version.value in VERSIONS.get(asked.name, ()), f"{where}: {answered}"
    expected = _expected_version(asked)
    assert expected is None or answered.version.value == expected, f"{where}: {answered}"
    if signature:
        assert answered.signature_name == (asked.signature_name or "serving_default"), where
    else:
        assert answered.signature_name == "", where


def _num_examples(input_: Any) -> int:
    kind = input_.WhichOneof("kind")
    return len(getattr(input_, kind).examples) if kind else 0


# Every served version is half_plus_two: these signatures answer 0.5 x + offset, in float32.
OFFSETS = {"serving_default": 2.0, "classify_x_to_y": 2.0, "regress_x_to_y": 2.0,
           "regress_x_to_y2": 3.0}


def _half_plus(x: Any, signature: str) -> np.ndarray:
    return np.float32(0.5) * np.asarray(x, dtype=np.float32) + np.float32(OFFSETS[signature])


def _float_tensor(tensor: Any) -> np.ndarray:
    """A DT_FLOAT TensorProto the server accepted, decoded here (TensorFlow's rules)."""
    shape = [int(d.size) for d in tensor.tensor_shape.dim]
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if n == 0:
        return np.zeros(shape, dtype=np.float32)
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype="<f4").reshape(shape)
    values = list(tensor.float_val)[:n] or [0.0]
    return np.array(values + values[-1:] * (n - len(values)), dtype=np.float32).reshape(shape)


def _example_xs(input_: Any) -> list[float] | None:
    """Each example's x (its own, else the context's), or None where it is not one float."""
    kind = input_.WhichOneof("kind")
    if kind is None:
        return None
    context = (input_.example_list_with_context.context
               if kind == "example_list_with_context" else None)
    xs = []
    for example in getattr(input_, kind).examples:
        x = None
        for source in (example, context):
            if source is None or "x" not in source.features.feature:
                continue
            feature = source.features.feature["x"]
            if feature.WhichOneof("kind") is None:  # no kind: absent (TensorFlow's parsing)
                continue
            if (feature.WhichOneof("kind") == "float_list"
                    and len(feature.float_list.value) == 1):
                x = feature.float_list.value[0]
            break
        if x is None:
            return None
        xs.append(x)
    return xs


def _assert_close(where: str, got: Any, expected: Any) -> None:
    got, expected = np.asarray(got, dtype=np.float32), np.asarray(expected, dtype=np.float32)
    assert got.shape == expected.shape and np.allclose(got, expected, rtol=1e-6,
                                                       equal_nan=True), (
        f"{where}: answered {got.ravel()[:10]} (shape {got.shape}), expected "
        f"{expected.ravel()[:10]} (shape {expected.shape})")


def _check_examples_result(where: str, signature: str, input_: Any, classes: Any,
                           values: Any) -> None:
    """A classify / regress result holds 0.5 x + offset of each example's x."""
    xs = _example_xs(input_)
    if xs is None or signature not in OFFSETS:
        return
    expected = _half_plus(xs, signature)
    if classes is not None:
        assert all([c.label for c in cl.classes] == [""] for cl in classes), where
        _assert_close(where, [[c.score for c in cl.classes] for cl in classes],
                      expected.reshape(-1, 1))
    else:
        _assert_close(where, [r.value for r in values], expected)


def check_ok(method: str, request: Any, answer: bytes) -> None:
    """An OK answer parses as the method's response, names what answered, and holds the
    model's numbers (every version is half_plus_two)."""
    response = METHODS[method][2].FromString(answer)
    where = f"{method} OK for {request!r:.2000}"
    if method == "Predict":
        _check_spec(where, response.model_spec, request.model_spec)
        assert response.outputs, where
        if request.output_filter:
            assert sorted(response.outputs) == sorted(request.output_filter), where
        x = request.inputs.get("x")
        if response.model_spec.signature_name == "serving_default" and "y" in response.outputs:
            assert x is not None and x.dtype == 1, where
            y = response.outputs["y"]
            assert y.dtype == 1 and not y.tensor_content, where
            _assert_close(where, _float_tensor(y), _half_plus(_float_tensor(x),
                                                              "serving_default"))
    elif method in ("Classify", "Regress"):
        _check_spec(where, response.model_spec, request.model_spec)
        classify = method == "Classify"
        results = (response.result.classifications if classify
                   else response.result.regressions)
        assert len(results) == _num_examples(request.input), where
        _check_examples_result(where, request.model_spec.signature_name, request.input,
                               results if classify else None, None if classify else results)
    elif method == "MultiInference":
        assert len(response.results) == len(request.tasks) > 0, where
        for result, task in zip(response.results, request.tasks, strict=True):
            # Every task runs on the version the first task's spec routes to.
            asked = P.model_pb2.ModelSpec()
            asked.CopyFrom(request.tasks[0].model_spec)
            asked.signature_name = task.model_spec.signature_name
            _check_spec(where, result.model_spec, asked)
            n = _num_examples(request.input)
            if task.method_name == CLASSIFY:
                classes = result.classification_result.classifications
                assert len(classes) == n, where
                _check_examples_result(where, task.model_spec.signature_name, request.input,
                                       classes, None)
            else:
                values = result.regression_result.regressions
                assert len(values) == n, where
                _check_examples_result(where, task.model_spec.signature_name, request.input,
                                       None, values)
        versions = {r.model_spec.version.value for r in response.results}
        assert len(versions) == 1, where
    elif method == "GetModelMetadata":
        _check_spec(where, response.model_spec, request.model_spec, signature=False)
        assert "signature_def" in response.metadata, where
    elif method == "GetModelStatus":
        assert response.model_version_status, where
        served = VERSIONS.get(request.model_spec.name, set())
        assert {s.version for s in response.model_version_status} <= served, where


def check_answer(method: str, request: Any, sent: bytes, code: grpc.StatusCode, details: str,
                 answer: bytes | None, allowed: set[grpc.StatusCode] = ALLOWED) -> None:
    where = f"{method} {request!r:.2000} (bytes {sent[:300]!r})"
    assert code in allowed, f"{where} -> {code}: {details:.2000}"
    text = sent.decode("utf-8", "replace")
    for leak in LEAKS:
        assert leak not in details or leak in text, f"{where} -> {code} leaks {leak!r}: {details}"
    if code == S.OK and request is not None:
        assert answer is not None
        check_ok(method, request, answer)


def leaks(service: Any) -> tuple[int, dict[tuple[str, int], int]]:
    """Requests still admitted and handles held (only nonzero counts)."""
    return (service.admission.in_flight,
            {key: n for key, n in service.in_flight().items() if n})


def within(held: tuple[int, dict], baseline: tuple[int, dict]) -> bool:
    """Nothing more admitted, nor more handles held on any version, than in ``baseline``."""
    return held[0] <= baseline[0] and all(n <= baseline[1].get(key, 0)
                                          for key, n in held[1].items())


def wait_settled(service: Any, timeout: float = SETTLE_TIMEOUT,
                 baseline: tuple[int, dict] = (0, {})) -> tuple[int, dict]:
    """Wait (work handed to request threads may outlive a call) until what is held is back
    within ``baseline`` (nothing)."""
    deadline = time.monotonic() + timeout
    while True:
        held = leaks(service)
        if within(held, baseline) or time.monotonic() > deadline:
            return held
        time.sleep(0.005)


def parse(method: str, payload: bytes) -> Any:
    """The request ``payload`` is, as the server parses it (None if it does not parse)."""
    try:
        return METHODS[method][1].FromString(payload)
    except (DecodeError, RuntimeError, ValueError):
        return None


def sentinel_predict() -> bytes:
    request = P.predict_pb2.PredictRequest()
    request.model_spec.name = SENTINEL
    tensor = request.inputs["x"]
    tensor.dtype = 1
    tensor.tensor_shape.dim.add().size = 2
    tensor.tensor_shape.dim.add().size = 1
    tensor.float_val.extend([1.0, 4.0])
    return request.SerializeToString()


def assert_sentinel_serves(client: Client, service: Any) -> None:
    code, details, answer = client.call("Predict", sentinel_predict())
    assert code == S.OK, (code, details)
    response = P.predict_pb2.PredictResponse.FromString(answer)
    assert list(response.outputs["y"].float_val) == [2.5, 4.0]
    assert (response.model_spec.name, response.model_spec.version.value) == (SENTINEL, 123)
    status = P.get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = SENTINEL
    code, details, answer = client.call("GetModelStatus", status.SerializeToString())
    assert code == S.OK, (code, details)
    response = P.get_model_status_pb2.GetModelStatusResponse.FromString(answer)
    states = P.get_model_status_pb2.ModelVersionStatus.State
    assert [(s.version, states.Name(s.state)) for s in response.model_version_status] == [
        (123, "AVAILABLE")]
    classify = P.classification_pb2.ClassificationRequest()
    classify.model_spec.name = SENTINEL
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.append(_good_example(2.0))
    code, details, answer = client.call("Classify", classify.SerializeToString())
    assert code == S.OK, (code, details)
    response = P.classification_pb2.ClassificationResponse.FromString(answer)
    assert [c.score for c in response.result.classifications[0].classes] == [3.0]
    if service is not None:  # None: a server in another process
        assert wait_settled(service) == (0, {})


# ------------------------------------------------------------------------------ the server


class Served:
    """The extension's service and a client of its gRPC server, once every model serves."""

    client: Client
    service: Any

    def __init__(self, jp_serverapp: Any, rest: Any) -> None:
        self.serverapp, self.rest = jp_serverapp, rest

    async def start(self) -> Served:
        server = await started_grpc(self.serverapp)
        for name, versions in VERSIONS.items():
            for version in sorted(versions):
                await self.rest.wait_for(name, version)
        self.client = Client(server.target, self.serverapp.identity_provider.token)
        self.service = extension_app(self.serverapp).service
        return self


@pytest.fixture
def serving(jp_serverapp, rest):
    served = Served(jp_serverapp, rest)
    yield served
    if hasattr(served, "client"):
        served.client.close()


async def _fuzz(served: Served, body: Callable[[], None]) -> None:
    """Run the hypothesis function ``body`` on a worker thread; then the sentinel serves."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, body)
    await loop.run_in_executor(None, assert_sentinel_serves, served.client, served.service)


def _settled_after(served: Served, where: str, baseline: tuple[int, dict] = (0, {})) -> None:
    """Nothing more is held than before the call(s): compared with what was held then
    (``baseline``: what earlier examples left, a leak or a call the client cancelled before
    the server started it, which starts late), so that hypothesis pins a leak on the example
    that made it, and later examples do not each wait for it."""
    held = wait_settled(served.service, baseline=baseline)
    assert within(held, baseline), (
        f"{where}: still admitted / handles held: {held}, before {baseline}")


# ------------------------------------------------------------------------------ properties


async def test_fuzz_messages(serving):
    """Arbitrary messages to every method."""
    served = await serving.start()
    statuses: Counter[tuple[str, str]] = Counter()

    @fuzz_settings(150)
    @given(request=REQUESTS)
    def run(request: tuple[str, Any]) -> None:
        method, message = request
        payload = message.SerializeToString()
        before = leaks(served.service)
        code, details, answer = served.client.call(method, payload)
        statuses[(method, code.name)] += 1
        check_answer(method, message, payload, code, details, answer)
        _settled_after(served, f"{method} {message!r:.1000} -> {code}", before)

    await _fuzz(served, run)
    print(f"statuses: {dict(sorted(statuses.items()))}")
    codes = {code for _, code in statuses}
    assert {"OK", "INVALID_ARGUMENT", "NOT_FOUND"} <= codes, statuses


async def test_fuzz_raw_bytes(serving):
    """Arbitrary and mangled bytes as the request of every method (no serialisers)."""
    served = await serving.start()
    statuses: Counter[tuple[str, str]] = Counter()

    @fuzz_settings(100)
    @given(request=raw_requests())
    def run(request: tuple[str, bytes]) -> None:
        method, payload = request
        before = leaks(served.service)
        code, details, answer = served.client.call(method, payload)
        statuses[(method, code.name)] += 1
        message = parse(method, payload)
        if message is None:
            assert code == S.INVALID_ARGUMENT, (method, payload, code, details)
        check_answer(method, message, payload, code, details, answer)
        _settled_after(served, f"{method} {payload!r:.1000} -> {code}", before)

    await _fuzz(served, run)
    print(f"statuses: {dict(sorted(statuses.items()))}")
    assert {"INVALID_ARGUMENT", "OK"} <= {code for _, code in statuses}, statuses


# Requests that keep the server busy a while (large predicts are decoded on a request thread,
# examples run on one), for deadlines and cancellations to land midway.
def _slow_requests() -> list[tuple[str, bytes]]:
    slow: list[tuple[str, bytes]] = []
    # (shape, values, in tensor_content): past the 16 KiB inline limit, within one batch
    # (max_batch_size 1000 rows: half_plus_two is elementwise, rows may be wide), or small.
    for shape, n, content in (([1, 65_536], 65_536, False), ([2, 30_000], 60_000, True),
                              ([1000, 1], 5000, False), ([3, 1], 3, False)):
        request = P.predict_pb2.PredictRequest()
        request.model_spec.name = "two"
        tensor = request.inputs["x"]
        tensor.dtype = 1
        for size in shape:
            tensor.tensor_shape.dim.add().size = size
        values = [float(i % 7) for i in range(n)]
        if content:
            tensor.tensor_content = struct.pack(f"<{n}f", *values)
        else:
            tensor.float_val.extend(values)
        slow.append(("Predict", request.SerializeToString()))
    # A long decode (TensorFlow's DT_STRING list, varint by varint), then refused by the
    # batching (more rows than max_batch_size): the handle taken for it must be released
    # however the call is cut meanwhile.
    request = P.predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    tensor = request.inputs["inputs"]
    tensor.dtype = 7
    tensor.tensor_shape.dim.add().size = MAX_TENSOR_ELEMENTS
    tensor.tensor_content = b"\0" * MAX_TENSOR_ELEMENTS  # as many empty strings
    slow.append(("Predict", request.SerializeToString()))
    examples = [_good_example(float(i)) for i in range(1000)]
    classify = P.classification_pb2.ClassificationRequest()
    classify.model_spec.name = "default"
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.extend(examples)
    slow.append(("Classify", classify.SerializeToString()))
    regress = P.regression_pb2.RegressionRequest()
    regress.model_spec.name = "two"
    regress.model_spec.version_label = "stable"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list_with_context.examples.extend(examples)
    regress.input.example_list_with_context.context.CopyFrom(_good_example(1.0))
    slow.append(("Regress", regress.SerializeToString()))
    multi = P.inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify_x_to_y", "tensorflow/serving/classify"),
                              ("regress_x_to_y", "tensorflow/serving/regress")):
        task = multi.tasks.add()
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
        task.method_name = method
    multi.input.example_list.examples.extend(examples)
    slow.append(("MultiInference", multi.SerializeToString()))
    metadata = P.get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "two"}, metadata_field=["signature_def"])
    slow.append(("GetModelMetadata", metadata.SerializeToString()))
    status = P.get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "two"})
    slow.append(("GetModelStatus", status.SerializeToString()))
    slow.append(("HandleReloadConfigRequest", b""))  # re-read the config file
    return slow


SLOW = _slow_requests()
INTERRUPTED_REQUESTS = st.one_of(
    st.sampled_from(range(len(SLOW))).map(SLOW.__getitem__),  # (a short repr)
    REQUESTS.map(lambda r: (r[0], r[1].SerializeToString())),
)
# Already past (the client may fail it before sending), about to pass, or expiring midway.
DEADLINES = st.one_of(st.sampled_from([0.0, 1e-6, 1e-4, 1e-3, 0.005, 0.02, 0.1]),
                      st.floats(1e-5, 0.2))
# A burst of concurrent calls (they may share a batch): each with a short deadline, cancelled
# after a delay, or left alone.
BURSTS = st.lists(st.tuples(INTERRUPTED_REQUESTS, st.sampled_from(["deadline", "cancel", "none"]),
                            DEADLINES), min_size=1, max_size=6)


def _outcome(future: Any) -> tuple[grpc.StatusCode, str, bytes | None]:
    try:
        return S.OK, "", future.result(timeout=CALL_TIMEOUT)
    except grpc.FutureCancelledError:
        return S.CANCELLED, "", None
    except grpc.FutureTimeoutError:
        raise AssertionError("a call did not end") from None
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", None


async def test_fuzz_deadlines_and_cancellations(serving):
    """Bursts of concurrent calls whose deadline is past or passes midway, or which are
    cancelled midway, beside untouched ones: each answers DEADLINE_EXCEEDED / CANCELLED (only
    if it was so interrupted) or as usual, and nothing stays admitted nor held."""
    served = await serving.start()
    client = served.client
    statuses: Counter[tuple[str, str, str]] = Counter()

    @fuzz_settings(60)
    @given(burst=BURSTS)
    def run(burst: list[tuple[tuple[str, bytes], str, float]]) -> None:
        before = leaks(served.service)
        futures = [client.raw[method].future(
            payload, timeout=seconds if how == "deadline" else CALL_TIMEOUT,
            metadata=client.metadata) for (method, payload), how, seconds in burst]
        started = time.monotonic()
        for i in sorted(range(len(burst)), key=lambda i: burst[i][2]):
            if burst[i][1] == "cancel":
                time.sleep(max(0.0, started + burst[i][2] - time.monotonic()))
                futures[i].cancel()
        for ((method, payload), how, _), future in zip(burst, futures, strict=True):
            code, details, answer = _outcome(future)
            statuses[(how, method, code.name)] += 1
            allowed = ALLOWED | {
                "deadline": {S.DEADLINE_EXCEEDED}, "cancel": {S.CANCELLED}}.get(how, set())
            check_answer(method, parse(method, payload), payload, code, details, answer,
                         allowed)
        _settled_after(served, f"burst {[(r[0], h, t) for r, h, t in burst]}", before)

    await _fuzz(served, run)
    print(f"statuses: {dict(sorted(statuses.items()))}")
    codes = {code for _, _, code in statuses}
    assert {"DEADLINE_EXCEEDED", "CANCELLED", "OK"} <= codes, statuses


async def test_deadlines_and_cancellations_sweep(serving):
    """Each slow request, cut at 1/N, 2/N ... of the time it takes (N: 60 for a fast one, in
    steps of ~0.1 ms; 12 for a slow one), by its deadline, and by a cancellation, one call at a
    time. Wherever the cut lands, in the parsing, the decoding (a fraction of a millisecond
    for a large predict), the batch queue, the model or the encoding, every call ends and
    nothing stays held: what the randomly timed bursts reach only by chance."""
    served = await serving.start()
    client = served.client
    outcomes: Counter[tuple[str, str, str]] = Counter()

    def sweep() -> None:
        # The examples methods and metadata hold their handle within one request thread's
        # work: Classify stands for them; the bursts send the others.
        for method, payload in SLOW:
            if method not in ("Predict", "Classify"):
                continue
            started = time.monotonic()
            code, details, answer = client.call(method, payload)
            took = time.monotonic() - started
            assert code in (S.OK, S.INVALID_ARGUMENT), (method, code, details)
            steps = max(12, min(60, int(0.3 / took)))
            for k in range(1, steps + 1):
                cut = took * k / steps
                for how in ("deadline", "cancel"):
                    if how == "deadline":
                        code, details, answer = client.call(method, payload, timeout=cut)
                    else:
                        future = client.raw[method].future(payload, timeout=CALL_TIMEOUT,
                                                           metadata=client.metadata)
                        time.sleep(cut)
                        future.cancel()
                        code, details, answer = _outcome(future)
                    outcomes[(how, method, code.name)] += 1
                    allowed = {S.OK, S.INVALID_ARGUMENT, {"deadline": S.DEADLINE_EXCEEDED,
                                                          "cancel": S.CANCELLED}[how]}
                    check_answer(method, parse(method, payload), payload, code, details,
                                 answer, allowed)
                    _settled_after(served, f"{method} ({len(payload)} bytes) cut by {how} "
                                   f"after {cut * 1000:.2f} ms of {took * 1000:.2f} -> {code}")

    await _fuzz(served, sweep)
    print(f"outcomes: {dict(sorted(outcomes.items()))}")


# ------------------------------------------------------------------------------ regressions


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_string_tensor_of_33_dimensions_is_refused_and_the_server_lives(tmp_path: Path) -> None:
    """Found by test_fuzz_messages (JTFS_FUZZ_EXAMPLES=1500), fixed by 1ebe43d: a Predict whose
    DT_STRING input had more than 32 dimensions (here 33 of size 1, one empty string) killed the
    server with SIGSEGV, in TensorFlow's numpy -> TF_STRING conversion (its Python extension
    keeps numpy 1's 32-dimension limit) when the TF platform fed the array to the session; the
    codec accepted up to 64. It is now INVALID_ARGUMENT. The call goes to a model server of its
    own (``jupyter_tfserving.model_server``), so that a regression ends that process, not this
    test session."""
    import subprocess

    testdata = shared.testdata_or_skip()
    port, token = _free_port(), "fuzz-test-token"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    env.pop("JUPYTER_TOKEN", None)
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_tfserving.model_server", f"--port={port}",
             f"--model_name={SENTINEL}",
             f"--model_base_path={testdata / 'saved_model_half_plus_two_cpu'}",
             f"--token={token}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    client = Client(f"127.0.0.1:{port}", token)
    try:
        status = P.get_model_status_pb2.GetModelStatusRequest(model_spec={"name": SENTINEL})
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text(errors="replace")
            code, _, answer = client.call("GetModelStatus", status.SerializeToString(),
                                          timeout=5)
            if code == S.OK and any(
                    v.state == v.AVAILABLE for v in P.get_model_status_pb2.
                    GetModelStatusResponse.FromString(answer).model_version_status):
                break
            assert time.monotonic() < deadline, "the model server did not serve in time"
            time.sleep(0.2)

        request = P.predict_pb2.PredictRequest()
        request.model_spec.name = SENTINEL
        request.model_spec.signature_name = "classify_x_to_y"
        tensor = request.inputs["inputs"]
        tensor.dtype = DT_STRING
        for _ in range(MAX_TENSOR_RANK + 1):
            tensor.tensor_shape.dim.add().size = 1  # one empty string
        code, details, _ = client.call("Predict", request.SerializeToString())
        # Before the fix: UNAVAILABLE "Socket closed", the server ended by SIGSEGV (-11).
        time.sleep(0.5)
        assert proc.poll() is None, f"the server died ({proc.returncode}): {code} {details}"
        assert code == S.INVALID_ARGUMENT and "33 dimensions" in details, (code, details)
        assert_sentinel_serves(client, None)
    finally:
        client.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
