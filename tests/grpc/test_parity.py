"""REST/gRPC parity: every v1 REST case of the suite, sent again as TF Serving's gRPC messages
(``tensorflow_serving.apis``, tensors made with ``tf.make_tensor_proto``) to the same running
server, must get the same answer.

One table, :data:`CASES`. Each row names the REST test it twins (``twin_of``), holds the REST
request(s), a builder of the gRPC request, and what the two answers must share (``expect``):

- :class:`Same`: both succeed with the same values. What is compared follows the gRPC method:
  Predict (every output, or the ``output_filter``'s: its values, shape and dtype; REST's dtype is
  the one its metadata declares), Classify / Regress / MultiInference (labels, scores, values),
  GetModelStatus / GetModelMetadata (the whole answer: REST's JSON is the message's JSON), and for
  every inference answer the model name, the version that answered (REST's ``X-Model-Version``)
  and the signature.
- :class:`Fails`: both fail, REST with the HTTP status of the canonical code (TF Serving's
  ``ToHTTPStatusCode``, ``rest.errors``) and ``{"error": message}``, gRPC with that code and the
  same message. Where TF Serving itself answers otherwise over gRPC (its gRPC Predict finds an
  unknown signature FAILED_PRECONDITION; errors of the wire encoding are worded by each
  encoding's decoder), ``grpc`` says what gRPC answers, and the two codes still map to the same
  HTTP status; the Jupyter login alone differs there (jupyter_server's 403, gRPC's
  UNAUTHENTICATED).

A row whose two answers differ where they should not, and whose fix lies outside the gRPC
layer (or would break a test pinning today's words), carries ``mismatch``: it is a strict xfail
saying what differs and where, until that is fixed.

Values are compared, not encodings: REST writes float32 outputs as JSON numbers (compared as
float32), text outputs as strings and ``*_bytes`` ones as ``{"b64": ...}`` (compared as bytes);
its row format (``instances``) is compared column by column.

REST cases with no gRPC twin, because what they test only exists in one encoding: JSON syntax
(empty body, a non-object body, ``[[null]]``, both ``instances`` and ``inputs``, a non-string
``signature_name``), URL syntax (``/versions/abc``, versions past int64, ``/versions/1/labels/x``,
unknown verbs and methods), ``GET /v1/models`` (not a TF Serving API), the stateful counter's
increments (each transport would see the other's), body-size limits (gRPC's message limit is
tested in test_options) and batching.

Each row runs on its own server (pytest-jupyter's ``jp_serverapp`` is per test) serving only the
models its requests name, from TF Serving's test models and the session's ``exported_models``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import numpy as np
import pytest
from google.protobuf import json_format

from jupyter_tfserving.core.status import Code
from jupyter_tfserving.rest.errors import HTTP_STATUS
from tests import conftest as shared
from tests.grpc.conftest import GrpcClient, started_grpc

TWO = "saved_model_half_plus_two_2_versions"
V1_API = "tests/rest/test_v1_api.py"
TESTDATA_TESTS = "tests/rest/test_tfserving_testdata.py"
OPENAPI = "tests/rest/test_openapi.py"
LIMITS = "tests/rest/test_limits.py"
BAD_INPUT = f"{V1_API}::test_bad_predict_input_is_400_and_other_models_keep_serving"
BAD_MODEL = f"{TESTDATA_TESTS}::test_bad_model_is_end_with_error_and_others_serve"
NO_REST_TEST = "(no REST test yet)"

# ---------------------------------------------------------------------------------------------
# The models a row may name: its config (a models.config entry without the name) and the
# versions to wait for. "%(t)s" is TF Serving's test models, "%(e)s" the session's exported
# ones.


@dataclass(frozen=True)
class Model:
    config: str
    versions: tuple[tuple[int, str], ...] = ((123, "AVAILABLE"),)
    exported: bool = False


MODELS: dict[str, Model] = {
    "default": Model('base_path: "%(t)s/saved_model_half_plus_two_cpu" '
                     'version_labels { key: "stable" value: 123 }'),
    TWO: Model('base_path: "%(t)s/saved_model_half_plus_two_2_versions" '
               'model_version_policy { all {} } '
               'version_labels { key: "stable" value: 123 } '
               'version_labels { key: "canary" value: 124 }',
               ((123, "AVAILABLE"), (124, "AVAILABLE"))),
    "half_plus_three": Model('base_path: "%(t)s/saved_model_half_plus_three"'),
    "with_config": Model('base_path: '
                         '"%(t)s/saved_model_half_plus_two_cpu_with_saved_model_config"'),
    "tf2": Model('base_path: "%(t)s/saved_model_half_plus_two_tf2_cpu"'),
    "counter": Model('base_path: "%(t)s/saved_model_counter"'),
    "matrix": Model('base_path: "%(t)s/matrix_half_plus_two"', ((1, "AVAILABLE"),)),
    "bad": Model('base_path: "%(t)s/bad_half_plus_two"', ((123, "END"),)),
    "half_plus_two": Model('base_path: "%(e)s/half_plus_two" '
                           'model_version_policy { specific { versions: 1 } }',
                           ((1, "AVAILABLE"),), exported=True),
    "multi": Model('base_path: "%(e)s/multi" version_labels { key: "stable" value: 1 }',
                   ((1, "AVAILABLE"),), exported=True),
    "keras": Model('base_path: "%(e)s/keras"', ((1, "AVAILABLE"),), exported=True),
}

# ---------------------------------------------------------------------------------------------
# The table's vocabulary.

# The token a request carries: the server's (USER), none (None), or another string.
USER = "<the server's token>"


@dataclass(frozen=True)
class Rest:
    """One REST call: GET when ``body`` is None, else POST."""

    path: str
    body: dict[str, Any] | bytes | None = None

    @property
    def model(self) -> str:
        return self.path.split("/")[3].split(":")[0]


@dataclass(frozen=True)
class Same:
    """Both transports succeed with the same values."""


@dataclass(frozen=True)
class Fails:
    """Both fail with ``code`` and ``message`` (a fragment unless ``exact``); ``grpc``: what
    gRPC answers instead, where TF Serving's own gRPC answers otherwise (documented)."""

    code: Code
    message: str
    exact: bool = True
    grpc: Fails | None = None
    # False only where the two codes map to different HTTP statuses (the Jupyter login).
    same_http_status: bool = True


@dataclass(frozen=True)
class Signatures:
    """The served models' signatures, as REST's metadata answers list them."""

    by_model: Mapping[str, Mapping[str, Any]]

    def of(self, model: str, signature: str = "") -> Mapping[str, Any]:
        sigs = self.by_model[model]["metadata"]["signature_def"]["signature_def"]
        return sigs[signature or "serving_default"]

    def only_input(self, model: str, signature: str = "") -> str:
        (alias,) = self.of(model, signature)["inputs"]
        return str(alias)


# A gRPC twin: the method's name and its request (a message, or raw bytes).
GrpcCall = tuple[str, Any]
Builder = Callable[[Signatures], GrpcCall]


@dataclass(frozen=True)
class Case:
    """One row: the REST test it twins, its REST request(s), its gRPC twin, what they share."""

    id: str
    twin_of: str
    rest: Rest | tuple[Rest, ...]
    grpc: Builder
    expect: Same | Fails = field(default_factory=Same)
    token: str | None = USER
    config: Mapping[str, Any] = field(default_factory=dict)
    # A real REST/gRPC mismatch whose fix lies outside the gRPC layer: xfail(strict) with why.
    mismatch: str | None = None

    @property
    def rests(self) -> tuple[Rest, ...]:
        return self.rest if isinstance(self.rest, tuple) else (self.rest,)

    @property
    def models(self) -> list[str]:
        return sorted({r.model for r in self.rests} & set(MODELS))

    def param(self) -> Any:
        marks = [pytest.mark.xfail(strict=True, reason=self.mismatch)] if self.mismatch else []
        return pytest.param(self, id=self.id, marks=marks)


# ---------------------------------------------------------------------------------------------
# gRPC request builders (TensorFlow is imported when a row runs, not when the table is read).


def f32(values: Any) -> Any:
    import tensorflow as tf

    return tf.make_tensor_proto(values, dtype=tf.float32)


def i32(values: Any) -> Any:
    import tensorflow as tf

    return tf.make_tensor_proto(values, dtype=tf.int32)


def tensor(values: Any, dtype: str) -> Any:
    """A TensorProto of ``values`` as ``dtype`` (a tf.DType name: "string", "int64", ...)."""
    import tensorflow as tf

    return tf.make_tensor_proto(values, dtype=tf.as_dtype(dtype))


def _spec(spec: Any, model: str, version: int | None, label: str | None,
          signature: str) -> None:
    spec.name = model
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label
    if signature:
        spec.signature_name = signature


def predict(model: str, inputs: Mapping[str, Any], *, version: int | None = None,
            label: str | None = None, signature: str = "",
            output_filter: Sequence[str] = ()) -> GrpcCall:
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    _spec(request.model_spec, model, version, label, signature)
    for alias, proto in inputs.items():
        request.inputs[alias].CopyFrom(proto)
    request.output_filter.extend(output_filter)
    return "Predict", request


def example(features: Mapping[str, Any]) -> Any:
    """A tf.Example of REST's JSON example: floats, ints (int64) and text, alone or in lists."""
    import tensorflow as tf

    feature = {}
    for name, value in features.items():
        values = value if isinstance(value, list) else [value]
        if all(isinstance(v, str) for v in values):
            feature[name] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))
        elif all(isinstance(v, int) for v in values):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _input(proto: Any, examples: Sequence[Mapping[str, Any]],
           context: Mapping[str, Any] | None) -> None:
    if context is None:
        proto.example_list.examples.extend(example(e) for e in examples)
    else:
        proto.example_list_with_context.examples.extend(example(e) for e in examples)
        proto.example_list_with_context.context.CopyFrom(example(context))


def classify(model: str, examples: Sequence[Mapping[str, Any]], *, signature: str = "",
             version: int | None = None, label: str | None = None,
             context: Mapping[str, Any] | None = None) -> GrpcCall:
    from tensorflow_serving.apis import classification_pb2

    request = classification_pb2.ClassificationRequest()
    _spec(request.model_spec, model, version, label, signature)
    _input(request.input, examples, context)
    return "Classify", request


def regress(model: str, examples: Sequence[Mapping[str, Any]], *, signature: str = "",
            version: int | None = None, label: str | None = None,
            context: Mapping[str, Any] | None = None) -> GrpcCall:
    from tensorflow_serving.apis import regression_pb2

    request = regression_pb2.RegressionRequest()
    _spec(request.model_spec, model, version, label, signature)
    if examples or context is not None:
        _input(request.input, examples, context)
    return "Regress", request


def multi_inference(model: str, tasks: Sequence[tuple[str, str]],
                    examples: Sequence[Mapping[str, Any]]) -> GrpcCall:
    """``tasks``: (signature, "classify" | "regress")."""
    from tensorflow_serving.apis import inference_pb2

    request = inference_pb2.MultiInferenceRequest()
    for signature, method in tasks:
        task = request.tasks.add()
        _spec(task.model_spec, model, None, None, signature)
        task.method_name = f"tensorflow/serving/{method}"
    _input(request.input, examples, None)
    return "MultiInference", request


def status(model: str, *, version: int | None = None, label: str | None = None) -> GrpcCall:
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    _spec(request.model_spec, model, version, label, "")
    return "GetModelStatus", request


def metadata(model: str, *, version: int | None = None, label: str | None = None) -> GrpcCall:
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    _spec(request.model_spec, model, version, label, "")
    return "GetModelMetadata", request


# ---------------------------------------------------------------------------------------------
# The table.

MULTI_ROWS: list[dict[str, Any]] = [
    {"a": [1.0, 2.0], "b": 3, "s": "abc"},
    {"a": [0.5, 0.25], "b": -1, "s": {"b64": base64.b64encode(b"\x00\xffz").decode()}},
]
MULTI_COLUMNS: dict[str, Any] = {"inputs": {"a": [[1.0, 1.0]], "b": [1], "s": ["x"]}}
EDGE_ROWS: list[dict[str, Any]] = [
    {"a": [3.4028234663852886e38, 0.0], "b": 2**31 - 1, "s": ""},
    {"a": [-(2**24 - 1), 1e-45], "b": -(2**31), "s": {"b64": base64.b64encode(b"\0").decode()}},
]
TWO_EXAMPLES: list[dict[str, Any]] = [{"x": 2.0}, {"x": [1.0]}]
REGRESS_CONTEXT: dict[str, Any] = {"signature_name": "regress_x_to_y2", "context": {"x": 4.0},
                   "examples": [{"x": 2.0}, {"other": 1}]}
NOT_FOUND = Code.NOT_FOUND
INVALID = Code.INVALID_ARGUMENT


def _later(build: Callable[..., GrpcCall], *args: Any, **kwargs: Any) -> Builder:
    """The builder of ``build(*args, **kwargs)``, for rows made in a loop."""
    return lambda s: build(*args, **kwargs)


def _multi_inputs(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The gRPC tensors of REST rows of ``multi`` (its b64 strings decoded)."""

    def text(value: Any) -> bytes:
        return base64.b64decode(value["b64"]) if isinstance(value, dict) else value.encode()

    return {"a": f32([r["a"] for r in rows]), "b": i32([r["b"] for r in rows]),
            "s": tensor([text(r["s"]) for r in rows], "string")}


CASES: list[Case] = [
    # ---- Predict: row and columnar formats, versions, several inputs and outputs, dtypes.
    Case("predict-row", f"{V1_API}::test_predict_row_and_columnar",
         Rest("/v1/models/half_plus_two:predict", {"instances": [[1.0], [2.0], [5.0]]}),
         lambda s: predict("half_plus_two", {"x": f32([[1.0], [2.0], [5.0]])})),
    Case("predict-columnar-version", f"{V1_API}::test_predict_row_and_columnar",
         Rest("/v1/models/half_plus_two/versions/1:predict", {"inputs": {"x": [[0.1]]}}),
         lambda s: predict("half_plus_two", {"x": f32([[0.1]])}, version=1)),
    Case("predict-keras", f"{V1_API}::test_keras_model_matches_its_own_output",
         Rest("/v1/models/keras:predict", {"instances": np.eye(3).tolist()}),
         lambda s: predict("keras", {s.only_input("keras"): f32(np.eye(3))})),
    Case("predict-multi-row-b64", f"{V1_API}::test_multi_input_output_and_b64",
         Rest("/v1/models/multi:predict", {"instances": MULTI_ROWS}),
         lambda s: predict("multi", _multi_inputs(MULTI_ROWS))),
    Case("predict-multi-columnar", f"{V1_API}::test_multi_input_output_and_b64",
         Rest("/v1/models/multi:predict", MULTI_COLUMNS),
         lambda s: predict("multi", {"a": f32([[1.0, 1.0]]), "b": i32([1]),
                                     "s": tensor([b"x"], "string")})),
    Case("predict-multi-label", f"{OPENAPI}::test_v1_and_monitoring_answers_match_the_document",
         Rest("/v1/models/multi/labels/stable:predict", MULTI_COLUMNS),
         lambda s: predict("multi", {"a": f32([[1.0, 1.0]]), "b": i32([1]),
                                     "s": tensor([b"x"], "string")}, label="stable")),
    Case("predict-scalar-signature", f"{V1_API}::test_multi_input_output_and_b64",
         Rest("/v1/models/multi:predict", {"signature_name": "scalar", "inputs": 2.0}),
         lambda s: predict("multi", {"v": f32(2.0)}, signature="scalar")),
    # REST has no output_filter: the filtered gRPC outputs are REST's same outputs.
    Case("predict-output-filter", f"{V1_API}::test_multi_input_output_and_b64",
         Rest("/v1/models/multi:predict", MULTI_COLUMNS),
         lambda s: predict("multi", {"a": f32([[1.0, 1.0]]), "b": i32([1]),
                                     "s": tensor([b"x"], "string")},
                           output_filter=["upper", "total"])),
    Case("predict-dtype-edges", f"{LIMITS}::test_dtype_edges_are_accepted",
         Rest("/v1/models/multi:predict", {"instances": EDGE_ROWS}),
         lambda s: predict("multi", _multi_inputs(EDGE_ROWS))),
    Case("predict-nan-infinity", f"{LIMITS}::test_nan_and_infinity_literals_as_tf_serving",
         Rest("/v1/models/half_plus_two:predict",
              b'{"instances": [[NaN], [Infinity], [-Infinity], [1.0]]}'),
         lambda s: predict("half_plus_two",
                           {"x": f32([[math.nan], [math.inf], [-math.inf], [1.0]])})),
    Case("predict-readme-instances", f"{TESTDATA_TESTS}::test_readme_predict_pairs",
         Rest("/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]}),
         lambda s: predict("default", {"x": f32([2.0, 3.0, 4.0])})),
    Case("predict-readme-inputs", f"{TESTDATA_TESTS}::test_readme_predict_pairs",
         Rest("/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]}),
         lambda s: predict("default", {"x": f32([2.0, 3.0, 4.0])})),
    Case("predict-half-plus-three", f"{TESTDATA_TESTS}::test_readme_predict_pairs",
         Rest("/v1/models/half_plus_three:predict", {"instances": [1.0, 2.0, 5.0]}),
         lambda s: predict("half_plus_three", {"x": f32([1.0, 2.0, 5.0])})),
    Case("predict-with-saved-model-config", f"{TESTDATA_TESTS}::test_readme_predict_pairs",
         Rest("/v1/models/with_config:predict", {"instances": [1.0, 2.0, 5.0]}),
         lambda s: predict("with_config", {"x": f32([1.0, 2.0, 5.0])})),
    Case("predict-tf2", f"{TESTDATA_TESTS}::test_readme_predict_pairs",
         Rest("/v1/models/tf2:predict", {"inputs": {"x": [5.0]}}),
         lambda s: predict("tf2", {"x": f32([5.0])})),
    Case("predict-matrix", f"{TESTDATA_TESTS}::test_matrix_model",
         Rest("/v1/models/matrix:predict",
              {"instances": [[[float(i + 3 * j) for i in range(3)] for j in range(3)]]}),
         lambda s: predict("matrix", {"x": f32(np.arange(9.0).reshape(1, 3, 3))})),
    Case("predict-no-inputs", f"{TESTDATA_TESTS}::test_counter_is_stateful",
         Rest("/v1/models/counter:predict", {"signature_name": "get_counter", "inputs": {}}),
         lambda s: predict("counter", {}, signature="get_counter")),
    # ---- Versions and labels route the same way.
    *[Case(f"predict-{name}", f"{TESTDATA_TESTS}::test_versions_and_labels_routes",
           Rest(f"/v1/models/{TWO}{suffix}:predict", {"instances": [1.0]}),
           _later(lambda **choice: predict(TWO, {"x": f32([1.0])}, **choice), **choice))
      for name, suffix, choice in (
          ("version-123", "/versions/123", {"version": 123}),
          ("version-124", "/versions/124", {"version": 124}),
          ("label-stable", "/labels/stable", {"label": "stable"}),
          ("label-canary", "/labels/canary", {"label": "canary"}),
          ("unversioned-goes-to-stable", "", {}))],
    *[Case(f"status-{name}", f"{TESTDATA_TESTS}::test_versions_and_labels_routes",
           Rest(f"/v1/models/{TWO}{suffix}"), _later(status, TWO, **choice))
      for name, suffix, choice in (
          ("version-124", "/versions/124", {"version": 124}),
          ("label-canary", "/labels/canary", {"label": "canary"}),
          ("every-version", "", {}))],
    # ---- Classify, regress, multi-inference.
    Case("classify", f"{TESTDATA_TESTS}::test_readme_classify_and_regress",
         Rest("/v1/models/default:classify",
              {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}),
         lambda s: classify("default", [{"x": 2.0}], signature="classify_x_to_y")),
    Case("regress", f"{TESTDATA_TESTS}::test_readme_classify_and_regress",
         Rest("/v1/models/default:regress",
              {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}),
         lambda s: regress("default", [{"x": 2.0}], signature="regress_x_to_y")),
    Case("regress-context", f"{TESTDATA_TESTS}::test_readme_classify_and_regress",
         Rest("/v1/models/default:regress", REGRESS_CONTEXT),
         lambda s: regress("default", REGRESS_CONTEXT["examples"], signature="regress_x_to_y2",
                           context=REGRESS_CONTEXT["context"])),
    *[Case(f"classify-{name}", f"{OPENAPI}::test_classify_and_regress_answers_match_the_document",
           Rest(f"/v1/models/default{suffix}:classify",
                {"signature_name": "classify_x_to_y", "examples": TWO_EXAMPLES}),
           _later(classify, "default", TWO_EXAMPLES, signature="classify_x_to_y", **choice))
      for name, suffix, choice in (("version", "/versions/123", {"version": 123}),
                                   ("label", "/labels/stable", {"label": "stable"}))],
    Case("regress-label", f"{OPENAPI}::test_classify_and_regress_answers_match_the_document",
         Rest("/v1/models/default/labels/stable:regress", REGRESS_CONTEXT),
         lambda s: regress("default", REGRESS_CONTEXT["examples"], signature="regress_x_to_y2",
                           context=REGRESS_CONTEXT["context"], label="stable")),
    # REST has no multi-inference: its twin is REST's classify and regress of the same examples.
    Case("multi-inference", f"{TESTDATA_TESTS}::test_readme_classify_and_regress",
         (Rest("/v1/models/default:classify",
               {"signature_name": "classify_x_to_y", "examples": TWO_EXAMPLES}),
          Rest("/v1/models/default:regress",
               {"signature_name": "regress_x_to_y", "examples": TWO_EXAMPLES})),
         lambda s: multi_inference("default", [("classify_x_to_y", "classify"),
                                               ("regress_x_to_y", "regress")], TWO_EXAMPLES)),
    # ---- Model status and metadata: the whole answers.
    Case("status", f"{TESTDATA_TESTS}::test_readme_status_and_metadata",
         Rest("/v1/models/default"), lambda s: status("default")),
    Case("status-failed-load", BAD_MODEL,
         Rest("/v1/models/bad"), lambda s: status("bad")),
    Case("metadata", f"{TESTDATA_TESTS}::test_readme_status_and_metadata",
         Rest("/v1/models/default/metadata"), lambda s: metadata("default")),
    Case("metadata-version", f"{TESTDATA_TESTS}::test_readme_status_and_metadata",
         Rest(f"/v1/models/{TWO}/versions/123/metadata"), lambda s: metadata(TWO, version=123)),
    Case("metadata-exported", f"{V1_API}::test_metadata_of_exported_model",
         Rest("/v1/models/multi/metadata"), lambda s: metadata("multi")),
    # A TF2 export: its signature's defaults are TensorProtos in both answers.
    Case("metadata-tf2-defaults", NO_REST_TEST,
         Rest("/v1/models/tf2/metadata"), lambda s: metadata("tf2")),
    Case("metadata-label", f"{OPENAPI}::test_v1_and_monitoring_answers_match_the_document",
         Rest("/v1/models/multi/labels/stable/metadata"),
         lambda s: metadata("multi", label="stable")),
    # ---- Unknown model, version, label: the same codes and words.
    Case("unknown-model-predict", f"{TESTDATA_TESTS}::test_readme_error_answers",
         Rest("/v1/models/half:predict", {"instances": [1.0]}),
         lambda s: predict("half", {"x": f32([1.0])}),
         Fails(NOT_FOUND, "Servable not found for request: Latest(half)")),
    Case("unknown-version-predict", f"{TESTDATA_TESTS}::test_readme_error_answers",
         Rest("/v1/models/default/versions/99:predict", {"instances": [1.0]}),
         lambda s: predict("default", {"x": f32([1.0])}, version=99),
         Fails(NOT_FOUND, "Servable not found for request: Specific(default, 99)")),
    Case("unknown-label-predict", f"{TESTDATA_TESTS}::test_readme_error_answers",
         Rest(f"/v1/models/{TWO}/labels/X:predict", {"instances": [1.0]}),
         lambda s: predict(TWO, {"x": f32([1.0])}, label="X"),
         Fails(INVALID, "Unrecognized servable version label: X")),
    Case("unknown-model-status", f"{TESTDATA_TESTS}::test_readme_error_answers",
         Rest("/v1/models/foo"), lambda s: status("foo"),
         Fails(NOT_FOUND, "Could not find any versions of model foo")),
    Case("unknown-version-status", f"{V1_API}::test_malformed_routes",
         Rest("/v1/models/half_plus_two/versions/7"),
         lambda s: status("half_plus_two", version=7),
         Fails(NOT_FOUND, "Could not find version 7 of model half_plus_two")),
    Case("unknown-label-status", f"{TESTDATA_TESTS}::test_versions_and_labels_routes",
         Rest(f"/v1/models/{TWO}/labels/nope"), lambda s: status(TWO, label="nope"),
         Fails(INVALID, "Unrecognized servable version label: nope")),
    Case("unknown-model-metadata", f"{OPENAPI}::test_v1_and_monitoring_answers_match_the_document",
         Rest("/v1/models/nope/metadata"), lambda s: metadata("nope"),
         Fails(NOT_FOUND, "Servable not found for request: Latest(nope)")),
    Case("unknown-version-metadata", f"{V1_API}::test_malformed_routes",
         Rest("/v1/models/half_plus_two/versions/7/metadata"),
         lambda s: metadata("half_plus_two", version=7),
         Fails(NOT_FOUND, "Servable not found for request: Specific(half_plus_two, 7)")),
    Case("unknown-label-metadata", f"{OPENAPI}::test_v1_and_monitoring_answers_match_the_document",
         Rest("/v1/models/multi/labels/nope/metadata"), lambda s: metadata("multi", label="nope"),
         Fails(INVALID, "Unrecognized servable version label: nope")),
    Case("unknown-version-classify",
         f"{OPENAPI}::test_classify_and_regress_answers_match_the_document",
         Rest("/v1/models/default/versions/9:classify",
              {"signature_name": "classify_x_to_y", "examples": TWO_EXAMPLES}),
         lambda s: classify("default", TWO_EXAMPLES, signature="classify_x_to_y", version=9),
         Fails(NOT_FOUND, "Servable not found for request: Specific(default, 9)")),
    Case("unknown-label-regress",
         f"{OPENAPI}::test_classify_and_regress_answers_match_the_document",
         Rest("/v1/models/default/labels/nope:regress", REGRESS_CONTEXT),
         lambda s: regress("default", REGRESS_CONTEXT["examples"], signature="regress_x_to_y2",
                           context=REGRESS_CONTEXT["context"], label="nope"),
         Fails(INVALID, "Unrecognized servable version label: nope")),
    # ---- Unknown signatures. TF Serving's gRPC Predict finds the signature missing itself
    # (RunPredict: FAILED_PRECONDITION); its REST predict finds it decoding the JSON.
    Case("unknown-signature-predict", BAD_INPUT,
         Rest("/v1/models/half_plus_two:predict",
              {"signature_name": "nope", "instances": [[1.0]]}),
         lambda s: predict("half_plus_two", {"x": f32([[1.0]])}, signature="nope"),
         Fails(INVALID, 'Serving signature name: "nope" not found in signature def',
               grpc=Fails(Code.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'))),
    # TF Serving's REST classify and regress call the gRPC services' code: the same words.
    Case("unknown-signature-classify", NO_REST_TEST,
         Rest("/v1/models/default:classify", {"signature_name": "nope", "examples": [{"x": 2.0}]}),
         lambda s: classify("default", [{"x": 2.0}], signature="nope"),
         Fails(INVALID, "No signature was found with the name: nope")),
    Case("unknown-signature-regress", NO_REST_TEST,
         Rest("/v1/models/default:regress", {"signature_name": "nope", "examples": [{"x": 2.0}]}),
         lambda s: regress("default", [{"x": 2.0}], signature="nope"),
         Fails(INVALID, "No signature was found with the name: nope")),
    # ---- Signatures of the wrong method, empty inputs.
    Case("regress-on-predict-signature", f"{TESTDATA_TESTS}::test_readme_classify_and_regress",
         Rest("/v1/models/default:regress", {"examples": [{"x": 2.0}]}),
         lambda s: regress("default", [{"x": 2.0}]),
         Fails(INVALID, "Expected regression signature method_name to be "
                        "tensorflow/serving/regress. Was: tensorflow/serving/predict")),
    Case("classify-on-predict-signature",
         f"{OPENAPI}::test_classify_and_regress_answers_match_the_document",
         Rest("/v1/models/default:classify", {"examples": [{"x": 2.0}]}),
         lambda s: classify("default", [{"x": 2.0}]),
         Fails(INVALID, "Expected classification signature method_name to be "
                        "tensorflow/serving/classify. Was: tensorflow/serving/predict")),
    Case("regress-no-examples", f"{OPENAPI}::test_classify_and_regress_answers_match_the_document",
         Rest("/v1/models/default:regress", {"examples": []}),
         lambda s: regress("default", []),
         Fails(INVALID, "'examples' value is an empty array", exact=False,
               grpc=Fails(INVALID, "Input is empty."))),
    # ---- Bad input: each encoding's decoder words its own errors (TF Serving's JSON decoder,
    # TensorFlow's tensor checks); the codes agree.
    Case("bad-input-unparseable", BAD_INPUT,
         Rest("/v1/models/half_plus_two:predict", b"{not json"),
         lambda s: ("Predict", b"\xff\xff\xff\xff"),
         Fails(INVALID, "JSON Parse error", exact=False,
               grpc=Fails(INVALID, "Could not parse the tensorflow.serving.PredictRequest",
                          exact=False))),
    Case("bad-input-ragged", BAD_INPUT,
         Rest("/v1/models/half_plus_two:predict", {"instances": [[1.0], [2.0, 3.0]]}),
         lambda s: predict("half_plus_two", {"x": _short_content(f32([[1.0], [2.0]]))}),
         Fails(INVALID, "Encountered list at unexpected size: 2 at level: 1", exact=False,
               grpc=Fails(INVALID, "tensor parsing error: x: tensor_content holds 5 bytes",
                          exact=False))),
    Case("wrong-dtype-text-for-float", BAD_INPUT,
         Rest("/v1/models/half_plus_two:predict", {"instances": [["a"]]}),
         lambda s: predict("half_plus_two", {"x": tensor([[b"a"]], "string")}),
         Fails(INVALID, "is not of expected type: DT_FLOAT", exact=False,
               grpc=Fails(INVALID, "Expects arg x to be float but string is provided"))),
    Case("wrong-dtype-float-for-int", f"{LIMITS}::test_values_outside_their_dtype_are_400",
         Rest("/v1/models/multi:predict",
              {"instances": [{"a": [1.0, 2.0], "b": 1.5, "s": "x"}]}),
         lambda s: predict("multi", {"a": f32([[1.0, 2.0]]), "b": f32([1.5]),
                                     "s": tensor([b"x"], "string")}),
         Fails(INVALID, "is not of expected type: DT_INT32", exact=False,
               grpc=Fails(INVALID, "Expects arg b to be int32 but float is provided"))),
    Case("wrong-dtype-out-of-int32", f"{LIMITS}::test_values_outside_their_dtype_are_400",
         Rest("/v1/models/multi:predict",
              {"instances": [{"a": [1.0, 2.0], "b": 2**31, "s": "x"}]}),
         lambda s: predict("multi", {"a": f32([[1.0, 2.0]]), "b": tensor([2**31], "int64"),
                                     "s": tensor([b"x"], "string")}),
         Fails(INVALID, "out of range for type: DT_INT32", exact=False,
               grpc=Fails(INVALID, "Expects arg b to be int32 but int64 is provided"))),
    # An unknown alias in place of the signature's: REST's decoder words it as a size mismatch;
    # gRPC as TF Serving's Predict does (TensorFlow's saved_model::GetInputValues).
    Case("unknown-input", BAD_INPUT,
         Rest("/v1/models/half_plus_two:predict", {"instances": [{"nope": [1.0]}]}),
         lambda s: predict("half_plus_two", {"nope": f32([[1.0]])}),
         Fails(INVALID, "Sent extra: {nope}. Missing but required: {x}.", exact=False,
               grpc=Fails(INVALID, ") not found in request and no default value provided. "
                                   "Inputs expected to be in the request {nope}, or default "
                                   "input alias set: ", exact=False))),
    # More or fewer inputs than the signature: both word it as TF Serving's gRPC Predict does
    # (predict_util.cc, VerifyRequestInputsSize).
    Case("extra-input", NO_REST_TEST,
         Rest("/v1/models/half_plus_two:predict", {"inputs": {"x": [[1.0]], "z": [[1.0]]}}),
         lambda s: predict("half_plus_two", {"x": f32([[1.0]]), "z": f32([[1.0]])}),
         Fails(INVALID, "input size does not match signature: 2!=1 len({x,z}) != len({x}). "
                        "Sent extra: {z}. Missing but required: {}.")),
    Case("missing-input", NO_REST_TEST,
         Rest("/v1/models/multi:predict", {"inputs": {"a": [[1.0, 1.0]], "b": [1]}}),
         lambda s: predict("multi", {"a": f32([[1.0, 1.0]]), "b": i32([1])}),
         Fails(INVALID, "input size does not match signature: 2!=3 len({a,b}) != len({a,b,s}). "
                        "Sent extra: {}. Missing but required: {s}.")),
    # A request with no inputs: REST's envelope lacks its key, gRPC's inputs lack x (TF
    # Serving's VerifyRequestInputsSize).
    Case("no-inputs", BAD_INPUT,
         Rest("/v1/models/half_plus_two:predict", {"signature_name": "serving_default"}),
         lambda s: predict("half_plus_two", {}, signature="serving_default"),
         Fails(INVALID, "Missing 'inputs' or 'instances' key",
               grpc=Fails(INVALID, "input size does not match signature: 0!=1 len({}) != "
                                   "len({x}). Sent extra: {}. Missing but required: {x}."))),
    # ---- The service's limit on values, on both transports.
    Case("too-many-values", f"{LIMITS}::test_too_many_values_is_400_naming_the_limit",
         Rest("/v1/models/half_plus_two:predict", {"instances": [[1.0]] * 1001}),
         lambda s: predict("half_plus_two", {"x": f32(np.ones((1001, 1)))}),
         Fails(INVALID, "max_tensor_elements", exact=False),
         config={"max_tensor_elements": 1000}),
    Case("too-many-example-values", f"{LIMITS}::test_too_many_example_values_is_400",
         Rest("/v1/models/half_plus_two:classify", {"examples": [{"x": [1.0] * 10}] * 101}),
         lambda s: classify("half_plus_two", [{"x": [1.0] * 10}] * 101),
         Fails(INVALID, "max_tensor_elements", exact=False),
         config={"max_tensor_elements": 1000}),
    # ---- The Jupyter login, in front of both. jupyter_server answers an API request without
    # a valid login 403 (never 401, which would prompt browsers); gRPC has UNAUTHENTICATED.
    *[Case(f"login-{name}", f"{V1_API}::test_every_route_requires_the_login",
           Rest(path, body), builder,
           Fails(Code.PERMISSION_DENIED, "", exact=False, same_http_status=False,
                 grpc=Fails(Code.UNAUTHENTICATED, "authorization: token", exact=False)),
           token=token)
      for name, path, body, builder, token in (
          ("predict-no-token", "/v1/models/half_plus_two:predict", {"instances": [[1.0]]},
           lambda s: predict("half_plus_two", {"x": f32([[1.0]])}), None),
          ("predict-wrong-token", "/v1/models/half_plus_two:predict", {"instances": [[1.0]]},
           lambda s: predict("half_plus_two", {"x": f32([[1.0]])}), "wrong"),
          ("status-no-token", "/v1/models/half_plus_two", None,
           lambda s: status("half_plus_two"), None),
          ("classify-wrong-token", "/v1/models/half_plus_two:classify", {"instances": [[1.0]]},
           lambda s: classify("half_plus_two", [{"x": 1.0}]), "wrong"))],
]


def _short_content(proto: Any) -> Any:
    """``proto`` with 5 bytes of tensor_content: values that do not fill its shape."""
    proto.ClearField("float_val")
    proto.tensor_content = b"\0" * 5
    return proto


# ---------------------------------------------------------------------------------------------
# Serving the rows' models.


@pytest.fixture
def tfserving_config(tmp_path: Path, request: pytest.FixtureRequest, case: Case) -> dict:
    """A models.config of the models ``case`` names (and its extra TFServingApp config)."""
    testdata = shared.testdata_or_skip()
    exported = (request.getfixturevalue("exported_models")
                if any(MODELS[m].exported for m in case.models) else None)
    entries = [f'config {{ name: "{name}" model_platform: "tensorflow" '
               + MODELS[name].config % {"t": testdata, "e": exported} + " }"
               for name in case.models]
    config = tmp_path / "models.config"
    config.write_text("model_config_list {\n  " + "\n  ".join(entries) + "\n}\n")
    return {"model_config_file": str(config), **case.config}


async def _signatures(rest: Any, case: Case) -> Signatures:
    """Wait for the row's models, then read their signatures off REST's metadata."""
    by_model = {}
    for name in case.models:
        for version, state in MODELS[name].versions:
            await rest.wait_for(name, version, state)
        if MODELS[name].versions[0][1] == "AVAILABLE":
            code, data, _ = await rest.call(f"/v1/models/{name}/metadata")
            assert code == 200, data
            by_model[name] = data
    return Signatures(by_model)


async def _rest_call(rest: Any, call: Rest, token: str | None) -> tuple[int, Any, dict]:
    method = "GET" if call.body is None else "POST"
    if token == USER:
        return await rest.call(call.path, call.body, method=method)
    headers = {"Authorization": f"token {token}"} if token is not None else {}
    return await rest.call(call.path, call.body, method=method, headers=headers, auth=False)


SERVICES = {"Predict": "PredictionService", "Classify": "PredictionService",
            "Regress": "PredictionService", "MultiInference": "PredictionService",
            "GetModelMetadata": "PredictionService", "GetModelStatus": "ModelService"}


async def _grpc_call(client: GrpcClient, method: str, request: Any, token: str | None) -> Any:
    if isinstance(request, bytes):
        stub = client.channel.unary_unary(f"/tensorflow.serving.{SERVICES[method]}/{method}")
    else:
        service = client.model if SERVICES[method] == "ModelService" else client.prediction
        stub = getattr(service, method)
    return await client.call(stub, request, token=client.token if token == USER else token)


# ---------------------------------------------------------------------------------------------
# Comparing answers: each transport's answer as one plain view, then ==.


def _canon(value: Any) -> Any:
    """Nested values as lists, NaN as "nan" (so that == holds), text and ``{"b64": ...}`` as
    bytes."""
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


def _numpy_dtype(dtype_name: str) -> Any:
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    dtype = tf.as_dtype(types_pb2.DataType.Value(dtype_name))
    return object if dtype == tf.string else dtype.as_numpy_dtype


def _rest_tensor(value: Any, dtype_name: str) -> tuple[str, tuple[int, ...], Any]:
    """A REST output's (dtype, shape, values): the dtype is the one REST's metadata declares
    (a reference dtype's values have its base dtype), the values are read as that dtype
    (float32 numbers as float32)."""
    dtype_name = dtype_name.removesuffix("_REF")  # a TF1 variable's output: its values
    dtype = _numpy_dtype(dtype_name)
    if dtype is object:
        values = _canon(value)
        return dtype_name, np.array(values, dtype=object).shape, values
    arr = np.asarray(value, dtype=dtype)
    return dtype_name, arr.shape, _canon(arr.tolist())


def _grpc_tensor(proto: Any) -> tuple[str, tuple[int, ...], Any]:
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    arr = tf.make_ndarray(proto)
    return types_pb2.DataType.Name(proto.dtype), arr.shape, _canon(arr.tolist())


def _rest_outputs(body: Mapping[str, Any], signature: Mapping[str, Any]) -> dict[str, Any]:
    """REST's predict answer as one value per output alias (its row format by columns)."""
    aliases = list(signature["outputs"])
    if "predictions" in body:
        rows = body["predictions"]
        if len(aliases) == 1:
            return {aliases[0]: rows}
        return {a: [row[a] for row in rows] for a in aliases}
    outputs = body["outputs"]
    return {aliases[0]: outputs} if len(aliases) == 1 else dict(outputs)


def _classes(result: Any) -> list[list[tuple[str, float]]]:
    return [[(c.label, float(np.float32(c.score))) for c in cl.classes]
            for cl in result.classifications]


def _rest_classes(results: Any) -> list[list[tuple[str, float]]]:
    return [[(label, float(np.float32(score))) for label, score in row] for row in results]


def _regressions(result: Any) -> list[float]:
    return [float(np.float32(r.value)) for r in result.regressions]


def _rest_regressions(results: Any) -> list[float]:
    return [float(np.float32(v)) for v in results]


def _spec_view(spec: Any) -> tuple[str, int, str]:
    return spec.name, spec.version.value, spec.signature_name


def _rest_spec(call: Rest, headers: Mapping[str, str]) -> tuple[str, int, str]:
    """The model, version and signature of a REST answer: its path, its X-Model-Version and
    the signature its body named (``serving_default`` when none)."""
    body = call.body if isinstance(call.body, dict) else {}
    signature = body.get("signature_name") or "serving_default"
    return call.model, int(headers["X-Model-Version"]), signature


def _as_json(message: Any) -> Any:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _compare_answers(case: Case, method: str, request: Any, signatures: Signatures,
                     rest_answers: list[tuple[int, Any, dict]], response: Any) -> None:
    """Both succeeded: the same values, versions and signature names (see the module doc)."""
    for (code, body, _), call in zip(rest_answers, case.rests, strict=True):
        assert code == 200, (call.path, body)
    assert not isinstance(response, grpc.RpcError), (response.code(), response.details())
    (_, body, headers) = rest_answers[0]
    if method == "Predict":
        signature = signatures.of(request.model_spec.name, request.model_spec.signature_name)
        rest_outputs = _rest_outputs(body, signature)
        aliases = list(request.output_filter) or list(signature["outputs"])
        rest_view = {a: _rest_tensor(rest_outputs[a], signature["outputs"][a]["dtype"])
                     for a in aliases}
        grpc_view = {a: _grpc_tensor(t) for a, t in response.outputs.items()}
        assert rest_view and grpc_view == rest_view
        assert _spec_view(response.model_spec) == _rest_spec(case.rests[0], headers)
    elif method == "Classify":
        assert _classes(response.result) == _rest_classes(body["results"]) != []
        assert _spec_view(response.model_spec) == _rest_spec(case.rests[0], headers)
    elif method == "Regress":
        assert _regressions(response.result) == _rest_regressions(body["results"]) != []
        assert _spec_view(response.model_spec) == _rest_spec(case.rests[0], headers)
    elif method == "MultiInference":
        assert len(response.results) == len(rest_answers)
        for result, (_, body, headers), call in zip(response.results, rest_answers, case.rests,
                                                    strict=True):
            if result.HasField("classification_result"):
                assert _classes(result.classification_result) == _rest_classes(body["results"])
            else:
                assert _regressions(result.regression_result) == \
                    _rest_regressions(body["results"])
            assert _spec_view(result.model_spec) == _rest_spec(call, headers)
    elif method == "GetModelStatus":
        assert _as_json(response) == body
    elif method == "GetModelMetadata":
        from tensorflow_serving.apis import get_model_metadata_pb2

        sig_map = get_model_metadata_pb2.SignatureDefMap()
        assert response.metadata["signature_def"].Unpack(sig_map)
        assert {"model_spec": _as_json(response.model_spec),
                "metadata": {"signature_def": _as_json(sig_map)}} == body
    else:  # pragma: no cover - a row with a method this test does not compare
        raise AssertionError(f"no comparison for {method}")


def _matches(message: str, expected: Fails) -> bool:
    return message == expected.message if expected.exact else expected.message in message


def _compare_errors(expected: Fails, rest_answer: tuple[int, Any, dict], response: Any) -> None:
    """Both failed: REST with the HTTP status of the expected code and its words, gRPC with the
    code and words (``expected.grpc`` where TF Serving's gRPC differs), and the two codes map
    to one HTTP status (but for ``same_http_status=False``); with no difference and exact
    words, the two messages are one."""
    code, body, _ = rest_answer
    assert isinstance(body, dict) and set(body) == {"error"}, (code, body)
    assert isinstance(response, grpc.RpcError), response
    grpc_expected = expected.grpc or expected
    grpc_code = Code(response.code().value[0])
    assert (code, _matches(body["error"], expected)) == (HTTP_STATUS[expected.code], True), body
    assert (grpc_code, _matches(response.details(), grpc_expected)) == (
        grpc_expected.code, True), response.details()
    assert (HTTP_STATUS[grpc_code] == code) == expected.same_http_status
    if expected.grpc is None and expected.exact:
        assert response.details() == body["error"]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
async def test_grpc_twin_answers_as_rest(case: Case, jp_serverapp: Any, rest: Any,
                                         grpc_client_factory: Any) -> None:
    """The row's REST request(s) and gRPC twin, against one server: the same values, versions
    and signatures, or the same error (code and words, but for TF Serving's own differences)."""
    server = await started_grpc(jp_serverapp)
    client = grpc_client_factory(server.target, jp_serverapp.identity_provider.token)
    signatures = await _signatures(rest, case)
    rest_answers = [await _rest_call(rest, call, case.token) for call in case.rests]
    method, request = case.grpc(signatures)
    response = await _grpc_call(client, method, request, case.token)
    if isinstance(case.expect, Fails):
        _compare_errors(case.expect, rest_answers[0], response)
    else:
        _compare_answers(case, method, request, signatures, rest_answers, response)


def test_every_row_is_named_once_and_twins_a_rest_test() -> None:
    """The table's ids are unique and each row names a REST test that exists (or says there is
    none yet), with requests on v1 paths."""
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    root = Path(__file__).resolve().parents[2]
    for case in CASES:
        assert all(r.path.startswith("/v1/models/") for r in case.rests), case.id
        if case.twin_of == NO_REST_TEST:
            continue
        path, _, function = case.twin_of.partition("::")
        assert f"def {function}(" in (root / path).read_text(), case.id
