"""TF Serving's gRPC messages <-> the data plane's numpy arrays and examples.

Tensors (``tensorflow.TensorProto``) are decoded with TensorFlow's own rules
(``Tensor::FromProto`` in ``tensorflow/core/framework/tensor.cc``), without TensorFlow:

- the shape must be a valid ``TensorShape``: no negative dimension, at most 64 of them (numpy's
  limit; TensorFlow allows 254), an element count that fits in int64, and here also at most the
  caller's ``max_elements`` (the service's ``max_tensor_elements``);
- a dtype must be set and be one this server holds in numpy: the numbers, bool, DT_STRING, the
  complex types, DT_HALF and DT_BFLOAT16 (``half_val`` holds their 16 bits); others are
  UNIMPLEMENTED;
- ``tensor_content``, when not empty, wins and must be exactly N x itemsize bytes (DT_STRING:
  TensorFlow's varint-prefixed string list holding exactly N strings);
- else the typed ``*_val`` field of the dtype: no values fills the tensor with zeros (empty
  strings, False), fewer than N repeats the last value, more than N uses the first N;
- a tensor of no elements ignores every value field.

Problems are :class:`~jupyter_tfserving.core.status.ServingError` INVALID_ARGUMENT worded as TF
Serving words them (``tensor parsing error: <alias>``), plus the reason. Answers are written in
the typed fields (TF Serving's default, ``enable_serialization_as_tensor_content=false``) or in
``tensor_content`` when asked, except DT_STRING, which always goes in ``string_val``
(``tf.make_ndarray`` cannot read strings from ``tensor_content``).

``tf.Example`` inputs (``tensorflow.serving.Input``) become the data plane's
:class:`~jupyter_tfserving.core.servable.ExampleBatch`; results become ``PredictResponse``,
``ClassificationResponse``, ``RegressionResponse``, ``MultiInferenceResponse``,
``GetModelMetadataResponse`` (the ``SignatureDefMap`` packed in ``metadata["signature_def"]``)
and ``GetModelStatusResponse``. Each answer's ``model_spec`` names the model, the version that
answered and the signature (TF Serving leaves the signature empty in metadata answers).

Pure functions on messages of :mod:`.protos`; they run on worker threads for large messages and
on the event loop for small ones.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.dtypes import MAX_TENSOR_RANK
from ..core.servable import DEFAULT_SIGNATURE, Example, ExampleBatch, Feature, SignatureInfo
from ..core.signature_inputs import check_request_inputs
from ..core.state import VersionStatus
from ..core.status import Code, ServingError, invalid_argument
from ..dataplane import Classifications
from . import protos

_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class DType:
    """One DataType this codec holds in numpy: its numpy dtype (``object`` for DT_STRING), its
    typed value field, and how many field values make one element (2 for complex)."""

    name: str
    numpy: np.dtype[Any]
    field: str
    per_element: int = 1


def _bfloat16() -> np.dtype[Any] | None:
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - TensorFlow installs it
        return None
    return np.dtype(ml_dtypes.bfloat16)


@functools.cache
def dtypes() -> dict[int, DType]:
    """DataType enum number -> :class:`DType` (from ``types_pb2``, loaded once)."""
    value = protos.load().types_pb2.DataType.Value
    table = [
        DType("DT_FLOAT", np.dtype("<f4"), "float_val"),
        DType("DT_DOUBLE", np.dtype("<f8"), "double_val"),
        DType("DT_INT32", np.dtype("<i4"), "int_val"),
        DType("DT_UINT8", np.dtype("u1"), "int_val"),
        DType("DT_INT16", np.dtype("<i2"), "int_val"),
        DType("DT_INT8", np.dtype("i1"), "int_val"),
        DType("DT_STRING", np.dtype(object), "string_val"),
        DType("DT_COMPLEX64", np.dtype("<c8"), "scomplex_val", 2),
        DType("DT_INT64", np.dtype("<i8"), "int64_val"),
        DType("DT_BOOL", np.dtype(np.bool_), "bool_val"),
        DType("DT_UINT16", np.dtype("<u2"), "int_val"),
        DType("DT_COMPLEX128", np.dtype("<c16"), "dcomplex_val", 2),
        DType("DT_HALF", np.dtype("<f2"), "half_val"),
        DType("DT_UINT32", np.dtype("<u4"), "uint32_val"),
        DType("DT_UINT64", np.dtype("<u8"), "uint64_val"),
    ]
    bfloat16 = _bfloat16()
    if bfloat16 is not None:
        table.append(DType("DT_BFLOAT16", bfloat16, "half_val"))
    return {value(d.name): d for d in table}


@functools.cache
def _by_name() -> dict[str, tuple[int, DType]]:
    return {d.name: (number, d) for number, d in dtypes().items()}


def dtype_name(number: int) -> str:
    """``DT_FLOAT`` for 1; ``DataType <n>`` for a number the enum lacks."""
    try:
        return str(protos.load().types_pb2.DataType.Name(number))
    except ValueError:
        return f"DataType {number}"


def dtype_of_array(arr: np.ndarray) -> tuple[int, DType] | None:
    """The DataType of a numpy array (text, bytes and objects are DT_STRING), or None."""
    if arr.dtype.kind in "OSU":
        return _by_name()["DT_STRING"]
    native = arr.dtype
    if native.byteorder == ">":
        native = native.newbyteorder("<")
    for number, d in dtypes().items():
        if d.name != "DT_STRING" and native == d.numpy:
            return number, d
    return None


# ---------------------------------------------------------------------------------------------
# TensorProto -> numpy


class TensorError(Exception):
    """Why a TensorProto cannot be decoded (the caller names the tensor)."""

    def __init__(self, message: str, code: Code = Code.INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def tensor_shape(proto: Any, max_elements: int | None = None) -> tuple[tuple[int, ...], int]:
    """The shape and element count of a TensorProto's ``tensor_shape`` (TensorFlow's
    ``TensorShape::IsValid``; ``unknown_rank`` is ignored as TensorShape ignores it)."""
    dims = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if len(dims) > MAX_TENSOR_RANK:
        raise TensorError(f"shape has {len(dims)} dimensions, more than {MAX_TENSOR_RANK}")
    count = 1
    for size in dims:
        if size < 0:
            raise TensorError(f"shape {list(dims)} has negative dimensions")
        count *= size
        if count > _INT64_MAX:
            raise TensorError(f"shape {list(dims)} is too large (more than 2**63 - 1 entries)")
    if max_elements is not None and count > max_elements:
        raise TensorError(
            f"shape {list(dims)} holds {count} elements, more than this server's limit of "
            f"{max_elements} (max_tensor_elements)")
    return dims, count


def tensor_to_array(proto: Any, max_elements: int | None = None) -> np.ndarray:
    """Decode one TensorProto (see the module docstring). Raises :class:`TensorError`.

    ``tensor_content`` is not copied: the array is a read-only view of the message's bytes."""
    number = int(proto.dtype)
    if number == 0:
        raise TensorError("dtype is DT_INVALID (not set)")
    dtype = dtypes().get(number)
    if dtype is None:
        name = dtype_name(number)
        if name.startswith("DataType ") or name.endswith("_REF"):
            raise TensorError(f"unknown dtype {name}")
        raise TensorError(f"dtype {name} is not supported by this server", Code.UNIMPLEMENTED)
    shape, count = tensor_shape(proto, max_elements)
    if count == 0:
        try:
            return np.empty(shape, dtype=dtype.numpy)
        except ValueError:  # numpy refuses dimensions whose product overflows, even with a 0
            raise TensorError(f"shape {list(shape)} is too large for an array") from None
    content = proto.tensor_content
    if content:
        if dtype.name == "DT_STRING":
            return _decode_string_list(content, count).reshape(shape)
        expected = count * dtype.numpy.itemsize
        if len(content) != expected:
            raise TensorError(
                f"tensor_content holds {len(content)} bytes; shape {list(shape)} of "
                f"{dtype.name} takes {count} x {dtype.numpy.itemsize} = {expected}")
        return np.frombuffer(content, dtype=dtype.numpy).reshape(shape)
    return _from_field(proto, dtype, count).reshape(shape)


def _from_field(proto: Any, dtype: DType, count: int) -> np.ndarray:
    """The typed field's first ``count`` elements, the last one repeated when it holds fewer,
    zeros when it holds none (TensorFlow's ``FromProtoField``)."""
    values = getattr(proto, dtype.field)
    have = len(values) // dtype.per_element
    if have == 0:
        if dtype.name == "DT_STRING":
            out = np.empty(count, dtype=object)
            out[:] = b""
            return out
        return np.zeros(count, dtype=dtype.numpy)
    take = min(have, count)
    head = _field_values(values, dtype, take)
    if take == count:
        return head
    out = np.empty(count, dtype=dtype.numpy)
    out[:take] = head
    last = head[take - 1]
    if dtype.name == "DT_STRING":
        out[take:] = [last] * (count - take)
    else:
        out[take:] = last
    return out


def _field_values(values: Sequence[Any], dtype: DType, take: int) -> np.ndarray:
    if dtype.name == "DT_STRING":
        out = np.empty(take, dtype=object)
        out[:] = list(values[:take]) if take < len(values) else list(values)
        return out
    n = take * dtype.per_element
    raw = values[:n] if n < len(values) else values
    if dtype.field == "half_val":
        # half_val is int32 holding the 16 bits of each half / bfloat16 (C++ keeps the low 16).
        bits = np.array(raw, dtype=np.int64).astype(np.uint16)
        return bits.view(dtype.numpy)
    if dtype.per_element == 2:
        part = np.float32 if dtype.name == "DT_COMPLEX64" else np.float64
        return np.array(raw, dtype=part).view(dtype.numpy)
    if dtype.field == "int_val" and dtype.numpy.itemsize < 4:
        # int_val holds int32; narrower types take the low bits, as C++'s conversion does.
        return np.array(raw, dtype=np.int32).astype(dtype.numpy)
    return np.array(raw, dtype=dtype.numpy)


def _read_varint32(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise TensorError("tensor_content is not a valid DT_STRING list")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _decode_string_list(content: bytes, count: int) -> np.ndarray:
    """TensorFlow's ``port::DecodeStringList``: ``count`` varint32 lengths, then the bytes,
    which must be used up exactly."""
    pos = 0
    lengths = []
    for _ in range(count):
        size, pos = _read_varint32(content, pos)
        lengths.append(size)
    if sum(lengths) != len(content) - pos:
        raise TensorError(
            f"tensor_content's DT_STRING list holds {len(content) - pos} bytes of strings; its "
            f"{count} lengths add up to {sum(lengths)}")
    out = np.empty(count, dtype=object)
    for i, size in enumerate(lengths):
        out[i] = content[pos:pos + size]
        pos += size
    return out


def _encode_string_list(values: Iterable[bytes]) -> bytes:
    """The inverse of :func:`_decode_string_list` (tests, clients)."""
    items = list(values)
    head = bytearray()
    for item in items:
        size = len(item)
        while size >= 0x80:
            head.append((size & 0x7F) | 0x80)
            size >>= 7
        head.append(size)
    return bytes(head) + b"".join(items)


# ---------------------------------------------------------------------------------------------
# numpy -> TensorProto


def _as_bytes(value: Any, name: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, (bytearray, memoryview, np.bytes_)):
        return bytes(value)
    raise invalid_argument(
        f"Output {name} holds a {type(value).__name__}, which is not a DT_STRING value")


def array_into(proto: Any, value: Any, *, tensor_content: bool = False, name: str = "") -> None:
    """Write ``value`` into the (empty) TensorProto ``proto``: in the typed field of its dtype,
    or in ``tensor_content`` when asked (except strings). INVALID_ARGUMENT for a dtype that has
    no DataType here."""
    arr = np.asarray(value)
    found = dtype_of_array(arr)
    if found is None:
        raise invalid_argument(f"Output {name} has dtype {arr.dtype}, which has no DataType")
    number, dtype = found
    proto.dtype = number
    dims = proto.tensor_shape.dim
    for size in arr.shape:
        dims.add().size = size
    if arr.size == 0:
        return
    if dtype.name == "DT_STRING":
        proto.string_val.extend([_as_bytes(v, name) for v in arr.reshape(-1).tolist()])
        return
    flat = np.ascontiguousarray(arr, dtype=dtype.numpy).reshape(-1)
    if tensor_content:
        proto.tensor_content = flat.tobytes()
        return
    field = getattr(proto, dtype.field)
    if dtype.field == "half_val":
        field.extend(flat.view(np.uint16).tolist())
    elif dtype.per_element == 2:
        part = np.float32 if dtype.name == "DT_COMPLEX64" else np.float64
        field.extend(flat.view(part).tolist())
    else:
        field.extend(flat.tolist())


def array_to_tensor(value: Any, *, tensor_content: bool = False, name: str = "") -> Any:
    """A new TensorProto holding ``value`` (see :func:`array_into`)."""
    proto = protos.load().tensor_pb2.TensorProto()
    array_into(proto, value, tensor_content=tensor_content, name=name)
    return proto


# ---------------------------------------------------------------------------------------------
# Predict


def decode_inputs(inputs: Mapping[str, Any], signature: SignatureInfo,
                  max_elements: int | None = None) -> dict[str, np.ndarray]:
    """A PredictRequest's ``inputs`` as arrays for ``signature`` (TF Serving's
    ``PreProcessPrediction``): the aliases must be the signature's inputs, those with defaults
    may be left out (:func:`~jupyter_tfserving.core.signature_inputs.check_request_inputs`);
    every tensor must decode, with the dtype the signature declares; all of them together hold
    at most ``max_elements`` elements. Raises ServingError."""
    check_request_inputs(inputs.keys(), signature)
    total = 0
    for alias in sorted(inputs):
        try:
            total += tensor_shape(inputs[alias], max_elements)[1]
        except TensorError as exc:
            raise ServingError(exc.code, f"tensor parsing error: {alias}: {exc.message}") from None
    if max_elements is not None and total > max_elements:
        raise invalid_argument(
            f"The request's input tensors hold {total} elements, more than this server's "
            f"limit of {max_elements} (max_tensor_elements)")
    out: dict[str, np.ndarray] = {}
    by_name = _by_name()
    for alias in sorted(inputs):
        proto = inputs[alias]
        try:
            arr = tensor_to_array(proto)
        except TensorError as exc:
            raise ServingError(exc.code, f"tensor parsing error: {alias}: {exc.message}") from None
        want = by_name.get(signature.inputs[alias].dtype)
        if want is not None and want[0] != int(proto.dtype):
            raise invalid_argument(
                f"Expects arg {alias} to be {_short(want[1].name)} but "
                f"{_short(dtype_name(int(proto.dtype)))} is provided")
        out[alias] = arr
    return out


def _short(name: str) -> str:
    """TensorFlow's DataTypeString: DT_FLOAT -> float."""
    return name[3:].lower() if name.startswith("DT_") else name


def check_output_filter(output_filter: Sequence[str], signature: SignatureInfo) -> list[str]:
    """The outputs a predict answers with: ``output_filter`` checked as TF Serving checks it
    (no duplicates, every alias an output of the signature), or every output when empty."""
    if not output_filter:
        return list(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                f"the set {{{','.join(sorted(signature.outputs))}}}.")
    return list(output_filter)


def fill_model_spec(spec: Any, name: str, version: int | None,
                    signature_name: str | None) -> None:
    """TF Serving's ``MakeModelSpec``: the name, the version that answered, and the signature
    (an empty one is ``serving_default``; None leaves it unset)."""
    spec.Clear()
    spec.name = name
    if version is not None:
        spec.version.value = version
    if signature_name is not None:
        spec.signature_name = signature_name or DEFAULT_SIGNATURE


def predict_response(name: str, version: int, signature_name: str,
                     outputs: Mapping[str, Any], aliases: Iterable[str] | None = None, *,
                     tensor_content: bool = False) -> Any:
    """A PredictResponse with ``outputs`` (only ``aliases``, in that order, when given)."""
    response = protos.load().predict_pb2.PredictResponse()
    fill_model_spec(response.model_spec, name, version, signature_name)
    for alias in (aliases if aliases is not None else outputs):
        if alias not in outputs:
            raise ServingError(Code.INTERNAL, f"The model did not return output {alias}")
        array_into(response.outputs[alias], outputs[alias], tensor_content=tensor_content,
                   name=alias)
    return response


# ---------------------------------------------------------------------------------------------
# Examples


def _feature(proto: Any) -> Feature | None:
    kind = proto.WhichOneof("kind")
    if kind == "float_list":
        return Feature("float", list(proto.float_list.value))
    if kind == "int64_list":
        return Feature("int64", list(proto.int64_list.value))
    if kind == "bytes_list":
        return Feature("bytes", list(proto.bytes_list.value))
    return None  # a feature with no kind: absent, as tf.Example parsing treats it


def _example(proto: Any) -> tuple[Example, int]:
    features: dict[str, Feature] = {}
    values = 0
    for name, feature_proto in proto.features.feature.items():
        feature = _feature(feature_proto)
        if feature is not None:
            features[name] = feature
            values += len(feature.values)
    return features, values


def input_to_batch(proto: Any, max_elements: int | None = None) -> ExampleBatch:
    """A ``tensorflow.serving.Input`` (ExampleList or ExampleListWithContext) as an
    ExampleBatch. INVALID_ARGUMENT for an empty input or more than ``max_elements`` feature
    values in all."""
    kind = proto.WhichOneof("kind")
    context: Example | None = None
    if kind == "example_list":
        example_protos = proto.example_list.examples
    elif kind == "example_list_with_context":
        example_protos = proto.example_list_with_context.examples
        if proto.example_list_with_context.HasField("context"):
            context, _ = _example(proto.example_list_with_context.context)
    else:
        example_protos = []
    if not example_protos:
        raise invalid_argument("Input is empty.")
    examples: list[Example] = []
    total = sum(len(f.values) for f in (context or {}).values())
    for example_proto in example_protos:
        example, values = _example(example_proto)
        total += values
        if max_elements is not None and total > max_elements:
            raise invalid_argument(
                f"Too many values: the input holds more than this server's limit of "
                f"{max_elements} feature values (max_tensor_elements)")
        examples.append(example)
    return ExampleBatch(examples=examples, context=context)


def _example_into(proto: Any, example: Example) -> None:
    """Fill a (empty) ``tf.train.Example`` with ``example``'s features (str bytes values are
    written UTF-8 encoded)."""
    features = proto.features.feature
    for name, feature in example.items():
        if feature.kind == "float":
            features[name].float_list.value.extend(feature.values)
        elif feature.kind == "int64":
            features[name].int64_list.value.extend(feature.values)
        elif feature.kind == "bytes":
            features[name].bytes_list.value.extend(
                v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in feature.values)
        else:
            raise invalid_argument(f"Unsupported tf.Example feature kind: {feature.kind!r}")


def batch_into_input(proto: Any, batch: ExampleBatch) -> None:
    """Fill a (empty) ``tensorflow.serving.Input`` with ``batch``: an ExampleList, or an
    ExampleListWithContext when the batch has a context (the inverse of
    :func:`input_to_batch`)."""
    if batch.context is None:
        examples = proto.example_list.examples
    else:
        examples = proto.example_list_with_context.examples
        _example_into(proto.example_list_with_context.context, batch.context)
    for example in batch.examples:
        _example_into(examples.add(), example)


def classification_result_into(result: Any, classified: Classifications,
                               num_examples: int | None = None) -> None:
    """Fill a ClassificationResult from the data plane's classes and scores;
    INVALID_ARGUMENT when their number of rows is not ``num_examples``."""
    n, k = classified.num_examples, classified.num_classes
    _check_batch_size(num_examples, n)
    labels = classified.labels
    scores = classified.scores.tolist() if classified.scores is not None else None
    for i in range(n):
        classifications = result.classifications.add()
        for j in range(k):
            item = classifications.classes.add()
            if labels is not None:
                item.label = labels[i][j]
            if scores is not None:
                item.score = scores[i][j]


def regression_result_into(result: Any, values: np.ndarray,
                           num_examples: int | None = None) -> None:
    """Fill a RegressionResult from the data plane's values; INVALID_ARGUMENT when there are
    not ``num_examples`` of them."""
    _check_batch_size(num_examples, values.size)
    for value in values.tolist():
        result.regressions.add().value = value


def _check_batch_size(num_examples: int | None, n: int) -> None:
    if num_examples is not None and n != num_examples:
        raise invalid_argument(
            f"Input batch size did not match output batch size: {num_examples} vs. {n}")


def classify_response(name: str, version: int, signature_name: str,
                      classified: Classifications, num_examples: int | None = None) -> Any:
    response = protos.load().classification_pb2.ClassificationResponse()
    fill_model_spec(response.model_spec, name, version, signature_name)
    classification_result_into(response.result, classified, num_examples)
    return response


def regress_response(name: str, version: int, signature_name: str,
                     values: np.ndarray, num_examples: int | None = None) -> Any:
    response = protos.load().regression_pb2.RegressionResponse()
    fill_model_spec(response.model_spec, name, version, signature_name)
    regression_result_into(response.result, values, num_examples)
    return response


# ---------------------------------------------------------------------------------------------
# PredictionLog: request logs, bulk jobs' prediction_log files, warmup records

# PredictionLog's field for each method's log.
LOG_FIELDS = {"predict": "predict_log", "classify": "classify_log", "regress": "regress_log"}


@dataclass(frozen=True)
class LogSpec:
    """What a PredictionLog says of the call: ``method`` (``predict``, ``classify`` or
    ``regress``), and the model, the version that answered and the signature (its request's
    and response's ``model_spec``)."""

    method: str
    model: str
    version: int
    signature_name: str


def prediction_log(log: LogSpec) -> tuple[Any, Any]:
    """A new ``tensorflow.serving.PredictionLog`` and its call (the ``predict_log``,
    ``classify_log`` or ``regress_log`` of ``log.method``), whose request and response
    ``model_spec`` are filled from ``log``; the caller fills the rest. Imports TensorFlow
    (``tensorflow_serving``'s ``prediction_log_pb2`` does)."""
    from tensorflow_serving.apis import prediction_log_pb2

    entry = prediction_log_pb2.PredictionLog()
    call = getattr(entry, LOG_FIELDS[log.method])
    for spec in (call.request.model_spec, call.response.model_spec):
        fill_model_spec(spec, log.model, log.version, log.signature_name)
    return entry, call


# ---------------------------------------------------------------------------------------------
# Metadata, status


def signature_def_map(metadata: Mapping[str, Any]) -> Any:
    """The ``SignatureDefMap`` of a servable's ``metadata()`` (the JSON form TF Serving's REST
    metadata answer holds, ``{"signature_def": {"signature_def": {...}}}``)."""
    from google.protobuf import json_format

    sig_map = protos.load().get_model_metadata_pb2.SignatureDefMap()
    try:
        json_format.ParseDict(metadata.get("signature_def", {}), sig_map)
    except json_format.ParseError as exc:
        raise ServingError(Code.INTERNAL, f"The servable's metadata is malformed: {exc}") from None
    return sig_map


SIGNATURE_DEF_FIELD = "signature_def"


def check_metadata_fields(fields: Sequence[str]) -> None:
    """TF Serving's GetModelMetadata takes ``signature_def`` and nothing else."""
    if not fields:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(f"Metadata field {field} is not supported")


def metadata_response(name: str, version: int, metadata: Mapping[str, Any]) -> Any:
    """A GetModelMetadataResponse: ``metadata["signature_def"]`` is an ``Any`` holding the
    SignatureDefMap (``model_spec.signature_name`` stays empty, as in TF Serving)."""
    response = protos.load().get_model_metadata_pb2.GetModelMetadataResponse()
    fill_model_spec(response.model_spec, name, version, None)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map(metadata))
    return response


def status_response(statuses: Iterable[VersionStatus]) -> Any:
    """A GetModelStatusResponse listing ``statuses`` (TF Serving's state numbers; the error
    code and message of a failed load). Every version has its ``status``, an OK one too, as
    TF Serving's ``AddModelVersionStatusToResponse`` sets it (REST's JSON of the same answer
    shows ``"status": {"error_code": "OK", "error_message": ""}``)."""
    p = protos.load()
    response = p.get_model_status_pb2.GetModelStatusResponse()
    state_value = p.get_model_status_pb2.ModelVersionStatus.State.Value
    for status in statuses:
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = state_value(status.state.value)
        entry.status.SetInParent()
        if status.error is not None:
            entry.status.error_code = int(status.error.code)
            entry.status.error_message = status.error.message
    return response
