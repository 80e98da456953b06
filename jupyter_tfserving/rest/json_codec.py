"""TensorFlow Serving's REST JSON formats (after ``tensorflow_serving/util/json_tensor.cc``).

Requests come in as the raw body bytes (this module is called on worker threads and does its own
JSON parsing); answers go out as compact UTF-8 JSON bytes. Every problem with a request is raised
as :class:`~jupyter_tfserving.core.status.ServingError` (INVALID_ARGUMENT, or UNIMPLEMENTED for a
dtype JSON cannot express); no other exception escapes for any request body.

Predict requests
    ``{"signature_name": s?, "instances": [...]}`` (row format) or ``{"signature_name": s?,
    "inputs": ...}`` (columnar format). :func:`parse_predict_request` checks the envelope,
    :func:`decode_inputs` turns the payload into one numpy array per signature input:

    - row format: each instance is the value of the single input for one row, or (always when the
      signature has several inputs) an object keyed by input name; a ``{"b64": ...}`` object is a
      value, not a named object. Rows are stacked along a new axis 0 and must all have one shape.
    - columnar format: ``inputs`` is the value of the single input, or an object keyed by input
      name. Nothing is stacked.
    - the names sent must be exactly the signature's inputs.
    - values are converted to the dtype the signature declares (``TensorInfo.dtype``): floats take
      JSON numbers (and the ``NaN`` / ``Infinity`` / ``-Infinity`` literals, not strings), integers
      take JSON integers inside the dtype's range, bools take ``true`` / ``false``, strings take
      JSON strings (UTF-8 encoded) or ``{"b64": ...}``; strings become ``object`` arrays of
      ``bytes``. Shapes are not checked against the signature (the model does that, as in TF
      Serving), only that the JSON is a dense, rectangular tensor.
    - a signature without inputs accepts ``{"inputs": {}}``, ``{"instances": []}`` and instances
      that are all empty objects, and decodes to ``{}`` (TF Serving refuses such signatures over
      REST; here they serve stateful models such as saved_model_counter's ``get_counter``).

Predict answers
    Row format: ``{"predictions": [...]}``, one element per index of axis 0: the value of the single
    output, or an object ``{name: value}`` when there are several outputs (which must then share
    the size of axis 0; a rank-0 output cannot be split into rows). Columnar format:
    ``{"outputs": value}`` or ``{"outputs": {name: value}}``. Floats are written as the shortest
    decimal that reads back to the same value in the tensor's own precision (float32 ``0.1`` is
    ``0.1``), NaN and infinities as ``NaN`` / ``Infinity`` / ``-Infinity``. String outputs whose
    name ends in ``_bytes`` are written as ``{"b64": ...}``; other strings as text, or as
    ``{"b64": ...}`` where they are not valid UTF-8.

Classify / regress
    ``{"signature_name": s?, "examples": [{feature: value | [values]}, ...], "context": {...}?}``,
    decoded by :func:`parse_examples_request` into an :class:`ExampleBatch`; answers are
    ``{"results": ...}`` (:func:`encode_classify_response`, :func:`encode_regress_response`).

Limits
    :func:`check_json_limits` refuses, from the raw bytes and before anything is parsed or
    allocated, a body nested deeper than ``max_depth`` or holding more than ``max_values``
    values. The parse functions take the same keyword arguments (None: not checked); the server
    passes its configured limits, there is no global setting.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..core.dtypes import FLOAT_DTYPES, INT_DTYPES, JSON_DTYPES, MAX_TENSOR_RANK
from ..core.servable import Example, ExampleBatch, Feature, SignatureInfo
from ..core.signature_inputs import input_size_mismatch
from ..core.status import Code, ServingError, invalid_argument
from ..dataplane import Classifications

__all__ = [
    "DEFAULT_MAX_JSON_DEPTH",
    "DEFAULT_MAX_VALUES",
    "PredictRequest",
    "check_json_limits",
    "parse_json_body",
    "parse_predict_request",
    "decode_inputs",
    "encode_predict_response",
    "parse_examples_request",
    "encode_classify_response",
    "encode_regress_response",
]

_SIGNATURE_KEY = "signature_name"
_INSTANCES_KEY = "instances"
_INPUTS_KEY = "inputs"
_EXAMPLES_KEY = "examples"
_CONTEXT_KEY = "context"
_B64_KEY = "b64"
_BYTES_SUFFIX = "_bytes"

# The defaults of TFServingApp.max_json_depth and TFServingApp.max_tensor_elements.
DEFAULT_MAX_JSON_DEPTH = 64
DEFAULT_MAX_VALUES = 1 << 24

# Longest excerpt of a JSON value quoted in an error message.
_MAX_QUOTE = 256

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# Largest integer a float32 holds exactly (TF Serving's IsLosslessDecimal<float>).
_FLOAT32_MAX_INT = 2**24 - 1
# Smallest magnitude that rounds to infinity in float32: max + half an ulp (2**104).
_FLOAT32_OVERFLOW = float(np.finfo(np.float32).max) + 2.0**103


@dataclass
class PredictRequest:
    """The envelope of a predict request, before the payload is matched to a signature.

    ``signature_name`` is ``""`` when the request names none (the caller substitutes
    ``serving_default``). ``payload`` is the raw JSON value of ``instances`` (``row_format``) or
    ``inputs``.
    """

    signature_name: str
    payload: Any
    row_format: bool


class _TensorError(Exception):
    """A problem decoding one JSON tensor; ``row`` is the index along axis 0 where known."""

    def __init__(self, message: str, row: int | None = None, code: Code = Code.INVALID_ARGUMENT):
        super().__init__(message)
        self.message = message
        self.row = row
        self.code = code


# ---------------------------------------------------------------------------------------------
# Limits

_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_JSON_WHITESPACE = b" \t\r\n"
# Structural bytes stay, every other byte becomes "a": each value is then a run of "a"s.
_ATOMS = bytes(c if c in b"[]{},:" else ord("a") for c in range(256))
# Bracket bytes scanned per numpy step (bounds the scan's memory for a body of brackets).
_DEPTH_CHUNK = 1 << 20


def check_json_limits(
    body: bytes | str,
    *,
    max_depth: int | None = DEFAULT_MAX_JSON_DEPTH,
    max_values: int | None = DEFAULT_MAX_VALUES,
) -> None:
    """Refuse a JSON body, before it is parsed, that nests arrays and objects deeper than
    ``max_depth`` levels (the top-level object is level 1) or holds more than ``max_values``
    values: numbers (and NaN/Infinity), strings, booleans and nulls, object keys not counted.
    For a predict request that is the values of every input tensor (a ``{"b64": ...}`` is one
    value), plus ``signature_name``; for classify and regress, the feature values.

    The scan is linear, runs in bytes methods and numpy (no recursion: a body of 100k ``[`` is
    refused in microseconds), and skips what the body's size and bracket count already rule out.
    Exact for valid JSON; malformed JSON may be refused here for a limit instead of by the
    parser. None skips a check. Raises INVALID_ARGUMENT.
    """
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    # n values take at least 2n - 1 bytes ("0,0,...,0").
    check_values = max_values is not None and (len(raw) + 1) // 2 > max_values
    check_depth = max_depth is not None and raw.count(b"[") + raw.count(b"{") > max_depth
    if not (check_depth or check_values):
        return
    text = _without_strings(raw)
    if (check_depth and max_depth is not None
            and _nested_deeper_than(text.translate(None, _NOT_BRACKETS), max_depth)):
        raise invalid_argument(
            f"JSON Parse error: the document is nested deeper than {max_depth} levels")
    if check_values and max_values is not None:
        count = _count_values(text)
        if count > max_values:
            raise invalid_argument(
                f"Too many values: the request holds {count} values, more than this server's "
                f"limit of {max_values} (max_tensor_elements)")


def _without_strings(raw: bytes) -> bytes:
    """``raw`` with every JSON string replaced by ``0``. Escaped backslashes, then escaped
    quotes, are dropped first, so every quote left delimits a string (in valid JSON)."""
    if b'"' not in raw:
        return raw
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"0".join(raw.split(b'"')[::2])


def _nested_deeper_than(brackets: bytes, max_depth: int) -> bool:
    """Whether the running level of ``brackets`` (only ``[]{}``) ever exceeds ``max_depth``."""
    codes = np.frombuffer(brackets, dtype=np.uint8)
    level = 0
    for start in range(0, len(codes), _DEPTH_CHUNK):
        chunk = codes[start:start + _DEPTH_CHUNK]
        steps = ((chunk == ord("[")) | (chunk == ord("{"))).astype(np.int32) * 2 - 1
        levels = np.cumsum(steps, dtype=np.int64) + level
        if levels.max() > max_depth:
            return True
        level = int(levels[-1])
    return False


def _count_values(text: bytes) -> int:
    """The values in ``text`` (a body without strings): runs of non-structural bytes, less the
    object keys (one per ``:``)."""
    atoms = text.translate(_ATOMS, _JSON_WHITESPACE)
    starts = atoms.startswith(b"a") + sum(atoms.count(p) for p in (b"[a", b"{a", b",a", b":a"))
    return starts - atoms.count(b":")


# ---------------------------------------------------------------------------------------------
# Parsing


_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")
_LONG_DIGIT_RUN = "0" * 19


def parse_json_body(
    body: bytes, *, max_depth: int | None = None, max_values: int | None = None
) -> dict[str, Any]:
    """Parse a request body that must hold one JSON object.

    Accepts UTF-8 (with or without BOM) and the ``NaN`` / ``Infinity`` / ``-Infinity`` literals,
    as TF Serving's rapidjson does. Raises INVALID_ARGUMENT ``"JSON Parse error: <reason>"`` for
    an empty body, malformed JSON or bad UTF-8, and ``"JSON Value: ... Is not object"`` when the
    document is not an object. ``max_depth`` and ``max_values``, when given, are checked first
    (:func:`check_json_limits`).
    """
    if max_depth is not None or max_values is not None:
        check_json_limits(body, max_depth=max_depth, max_values=max_values)
    if isinstance(body, str):
        text = body
    else:
        try:
            text = bytes(body).decode("utf-8-sig")
        except (UnicodeDecodeError, TypeError, ValueError) as e:
            raise invalid_argument(f"JSON Parse error: Invalid encoding in string. ({e})") from None
    if not text.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        # orjson parses a large tensor several times faster. It turns integers beyond 64 bits
        # into floats, so text with a run of 19+ digits goes to json; so does anything orjson
        # refuses (NaN and Infinity literals, errors): json's acceptance and messages are the
        # contract.
        if text.translate(_DIGITS_TO_ZERO).find(_LONG_DIGIT_RUN) >= 0:
            raise orjson.JSONDecodeError("long integer", text, 0)
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        doc = _parse_with_json(text)
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {_quote(doc)} Is not object")
    return doc


def _parse_with_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise invalid_argument(f"JSON Parse error: {e.msg} at offset: {e.pos}") from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: The document is nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal longer than Python's digit limit
        raise invalid_argument(f"JSON Parse error: {e}") from None


def _signature_name(doc: Mapping[str, Any]) -> str:
    name = doc.get(_SIGNATURE_KEY, "")
    if not isinstance(name, str):
        raise invalid_argument(
            f"JSON Value: {_quote(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def parse_predict_request(
    body: bytes, *, max_depth: int | None = None, max_values: int | None = None
) -> PredictRequest:
    """Parse the envelope of a predict request.

    Exactly one of ``instances`` (which must be a list) and ``inputs`` must be present, and
    ``signature_name``, when present, must be a string; otherwise INVALID_ARGUMENT with TF
    Serving's wording. Whether an empty ``instances`` list is acceptable depends on the signature
    and is decided by :func:`decode_inputs`. Limits as :func:`parse_json_body`.
    """
    doc = parse_json_body(body, max_depth=max_depth, max_values=max_values)
    signature_name = _signature_name(doc)
    has_instances = _INSTANCES_KEY in doc
    has_inputs = _INPUTS_KEY in doc
    if has_instances and has_inputs:
        raise invalid_argument(
            f"JSON Value: {_quote(doc)} Not formatted correctly expecting only one of "
            f"'{_INPUTS_KEY}' or '{_INSTANCES_KEY}' keys to exist "
        )
    if has_instances:
        instances = doc[_INSTANCES_KEY]
        if not isinstance(instances, list):
            raise invalid_argument(
                f"JSON Value: {_quote(doc)} Expecting '{_INSTANCES_KEY}' to be an list/array"
            )
        return PredictRequest(signature_name, instances, True)
    if has_inputs:
        return PredictRequest(signature_name, doc[_INPUTS_KEY], False)
    raise invalid_argument("Missing 'inputs' or 'instances' key")


# ---------------------------------------------------------------------------------------------
# Predict: JSON -> numpy


def decode_inputs(request: PredictRequest, signature: SignatureInfo) -> dict[str, np.ndarray]:
    """Decode the payload of ``request`` into one array per input of ``signature``.

    The result's keys are exactly the signature's input names; each array has the signature's
    dtype (strings: ``object`` arrays of ``bytes``). Raises INVALID_ARGUMENT for anything that is
    not a dense tensor of that dtype, for names that do not match the signature, and (row format)
    for rows of different shapes; UNIMPLEMENTED for a dtype with no JSON form (e.g. DT_BFLOAT16).
    """
    input_names = list(signature.inputs)
    for name in input_names:
        _check_dtype_supported(name, signature.inputs[name].dtype)
    if not input_names:
        return _decode_no_inputs(request)
    if request.row_format:
        return _decode_instances(request.payload, signature, input_names)
    return _decode_columnar(request.payload, signature, input_names)


def _decode_no_inputs(request: PredictRequest) -> dict[str, np.ndarray]:
    payload = request.payload
    if request.row_format:
        if all(isinstance(item, dict) and not item for item in payload):
            return {}
    elif isinstance(payload, dict) and not payload:
        return {}
    raise invalid_argument(
        "input size does not match signature: the signature has no inputs; send "
        '{"inputs": {}} or {"instances": []}'
    )


def _decode_instances(
    instances: list[Any], signature: SignatureInfo, input_names: list[str]
) -> dict[str, np.ndarray]:
    if not instances:
        raise invalid_argument(f"No values in '{_INSTANCES_KEY}' array")
    named = _is_named_object(instances[0])
    if not named and len(input_names) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    if not named:
        for i, item in enumerate(instances):
            if _is_named_object(item):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {i} of input list"
                )
        name = input_names[0]
        return {name: _decode_instances_column(instances, name, signature)}

    expected = set(input_names)
    for i, item in enumerate(instances):
        if not _is_named_object(item):
            raise invalid_argument(f"Expecting object but got list at item {i} of input list")
        if set(item) != expected:
            raise invalid_argument(
                f"Failed to process element: {i} of '{_INSTANCES_KEY}' list. "
                + input_size_mismatch(item.keys(), input_names)
            )
    return {
        name: _decode_instances_column([item[name] for item in instances], name, signature)
        for name in input_names
    }


def _decode_instances_column(column: list[Any], name: str, signature: SignatureInfo) -> np.ndarray:
    try:
        return _decode_tensor(column, signature.inputs[name].dtype)
    except _TensorError as e:
        where = f"element: {e.row}" if e.row is not None else "elements"
        raise ServingError(
            e.code,
            f"Failed to process {where} of '{_INSTANCES_KEY}' list for input: {name}. "
            f"Error: {e.message}",
        ) from None


def _decode_columnar(
    payload: Any, signature: SignatureInfo, input_names: list[str]
) -> dict[str, np.ndarray]:
    if not _is_named_object(payload):
        if len(input_names) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        name = input_names[0]
        return {name: _decode_columnar_value(payload, name, signature)}
    if set(payload) != set(input_names):
        raise invalid_argument(input_size_mismatch(payload.keys(), input_names))
    return {name: _decode_columnar_value(payload[name], name, signature) for name in input_names}


def _decode_columnar_value(value: Any, name: str, signature: SignatureInfo) -> np.ndarray:
    try:
        return _decode_tensor(value, signature.inputs[name].dtype)
    except _TensorError as e:
        raise ServingError(
            e.code, f"Failed to process '{_INPUTS_KEY}' for input: {name}. Error: {e.message}"
        ) from None


def _is_b64_object(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(value.get(_B64_KEY), str)
    )


def _is_named_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64_object(value)


def _check_dtype_supported(name: str, dtype: str) -> None:
    if dtype in JSON_DTYPES:
        return
    raise ServingError(
        Code.UNIMPLEMENTED,
        f"Conversion of JSON values to type: {dtype} (input: {name}) is not supported",
    )


def _decode_tensor(value: Any, dtype: str) -> np.ndarray:
    """One JSON value (scalar or nested lists) -> an array of ``dtype``; raises _TensorError."""
    shape = _dense_shape(value)
    leaves = _flatten(value, shape)
    row_size = math.prod(shape[1:]) if shape else 0
    types = set(map(type, leaves))
    if list in types:
        index = next(i for i, v in enumerate(leaves) if type(v) is list)
        raise _TensorError(
            f"Encountered list at unexpected level: {len(shape)} expected < {len(shape)}",
            _row_of(index, row_size),
        )
    if dtype in FLOAT_DTYPES:
        flat = _floats(leaves, types, dtype, row_size)
    elif dtype in INT_DTYPES:
        flat = _ints(leaves, types, dtype, row_size)
    elif dtype == "DT_BOOL":
        _check_types(leaves, types, {bool}, dtype, row_size)
        flat = np.array(leaves, dtype=np.bool_)
    else:
        flat = _strings(leaves, types, dtype, row_size)
    return flat.reshape(shape)


def _dense_shape(value: Any) -> list[int]:
    """The shape implied by following the first element of each nested list."""
    shape: list[int] = []
    while type(value) is list:
        if len(shape) == MAX_TENSOR_RANK:
            raise _TensorError(f"JSON lists are nested deeper than {MAX_TENSOR_RANK} levels")
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _flatten(value: Any, shape: list[int]) -> list[Any]:
    """The leaves of ``value`` in row-major order, checking every list against ``shape``."""
    rank = len(shape)
    if rank == 0:
        return [value]
    leaves: list[Any] = []

    def fill(items: list[Any], level: int, row: int | None) -> None:
        if len(items) != shape[level]:
            raise _TensorError(
                f"Encountered list at unexpected size: {len(items)} at level: {level} "
                f"expected size: {shape[level]}",
                row,
            )
        if level == rank - 1:
            leaves.extend(items)
            return
        for i, child in enumerate(items):
            child_row = i if level == 0 else row
            if type(child) is not list:
                raise _TensorError(
                    f"JSON Value: {_quote(child)} found at incorrect level: {level + 2} in the "
                    f"JSON DOM. Expected at level: {rank}",
                    child_row,
                )
            fill(child, level + 1, child_row)

    fill(value, 0, None)
    return leaves


def _row_of(index: int, row_size: int) -> int | None:
    return index // row_size if row_size else None


def _check_types(
    leaves: list[Any], types: set[type], allowed: set[type], dtype: str, row_size: int
) -> None:
    if types <= allowed:
        return
    index = next(i for i, v in enumerate(leaves) if type(v) not in allowed)
    raise _type_error(leaves[index], dtype, _row_of(index, row_size))


def _type_error(value: Any, dtype: str, row: int | None) -> _TensorError:
    return _TensorError(
        f"JSON Value: {_quote(value)} Type: {_json_type(value)} is not of expected type: {dtype}",
        row,
    )


def _floats(leaves: list[Any], types: set[type], dtype: str, row_size: int) -> np.ndarray:
    _check_types(leaves, types, {int, float}, dtype, row_size)
    np_dtype = FLOAT_DTYPES[dtype]
    finfo = np.finfo(np_dtype)
    # Largest integer the dtype holds exactly (nmant excludes the implicit leading bit).
    max_int = 2 ** (finfo.nmant + 1) - 1
    if int in types:
        for i, v in enumerate(leaves):
            if type(v) is int and abs(v) > max_int:
                raise _lossy_error(v, dtype, _row_of(i, row_size))
    values = np.array(leaves, dtype=np.float64)
    if np_dtype is np.float64:
        return values
    # A finite number that rounds to infinity in the narrower dtype is out of its range; numbers
    # that round to its largest value (e.g. float32 max printed as 3.4028235e+38) are not.
    # Up to the dtype's largest value nothing can overflow, and the check (and np.errstate,
    # which costs more than the conversion of a small tensor) is skipped.
    if np.abs(values).max(initial=0.0) <= float(finfo.max):
        return values.astype(np_dtype)
    with np.errstate(over="ignore"):
        narrowed = values.astype(np_dtype)
    overflow = np.isinf(narrowed) & np.isfinite(values)
    if overflow.any():
        i = int(np.argmax(overflow))
        raise _lossy_error(leaves[i], dtype, _row_of(i, row_size))
    return narrowed


def _lossy_error(value: Any, dtype: str, row: int | None) -> _TensorError:
    target = {"DT_HALF": "half", "DT_FLOAT": "float", "DT_DOUBLE": "double"}[dtype]
    return _TensorError(
        f"Cannot convert JSON value: {_quote(value)} to {target} without loss of precision.", row
    )


def _ints(leaves: list[Any], types: set[type], dtype: str, row_size: int) -> np.ndarray:
    _check_types(leaves, types, {int}, dtype, row_size)
    np_dtype = INT_DTYPES[dtype]
    if leaves:
        info = np.iinfo(np_dtype)
        if min(leaves) < info.min or max(leaves) > info.max:
            i = next(i for i, v in enumerate(leaves) if not info.min <= v <= info.max)
            raise _TensorError(
                f"JSON Value: {leaves[i]} is out of range for type: {dtype} "
                f"[{info.min}, {info.max}]",
                _row_of(i, row_size),
            )
    return np.array(leaves, dtype=np_dtype)


def _strings(leaves: list[Any], types: set[type], dtype: str, row_size: int) -> np.ndarray:
    _check_types(leaves, types, {str, dict}, dtype, row_size)
    out = np.empty(len(leaves), dtype=object)
    for i, v in enumerate(leaves):
        try:
            out[i] = _string_bytes(v)
        except _TensorError as e:
            e.row = _row_of(i, row_size)
            raise
    return out


def _string_bytes(value: str | dict[str, Any]) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise _TensorError(
                f"JSON Value: {_quote(value)} is not a valid UTF-8 string"
            ) from None
    if not _is_b64_object(value):
        raise _TensorError(
            f"JSON Value: {_quote(value)} not formatted correctly for base64 data"
        )
    return _b64decode(value[_B64_KEY])


def _b64decode(text: str) -> bytes:
    """Standard-alphabet base64, padding optional (as absl::Base64Unescape)."""
    try:
        stripped = text.rstrip("=")
        if len(stripped) % 4 == 1:
            raise ValueError("bad length")
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _TensorError("Unable to base64 decode") from None


# ---------------------------------------------------------------------------------------------
# Predict: numpy -> JSON


def encode_predict_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    """Write a predict answer: ``{"predictions": [...]}`` (row) or ``{"outputs": ...}``.

    Row format needs every output to have rank >= 1 and all outputs to share the size of axis 0;
    otherwise INVALID_ARGUMENT (as TF Serving's MakeJsonFromTensors). An empty ``outputs`` map and
    dtypes with no JSON form (complex, ...) are INVALID_ARGUMENT too.
    """
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    if not row_format:
        if len(arrays) == 1:
            ((name, arr),) = arrays.items()
            return _dump({"outputs": _to_json(name, arr)})
        return _dump({"outputs": {name: _to_json(name, arr) for name, arr in arrays.items()}})

    batch_size = -1
    for name, arr in arrays.items():
        if arr.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch_size >= 0 and arr.shape[0] != batch_size:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {arr.shape[0]} "
                f"expecting: {batch_size}"
            )
        batch_size = arr.shape[0]
    if len(arrays) == 1:
        ((name, arr),) = arrays.items()
        return _dump({"predictions": _to_json(name, arr)})
    columns = {name: _to_json(name, arr) for name, arr in arrays.items()}
    rows = [{name: column[i] for name, column in columns.items()} for i in range(batch_size)]
    return _dump({"predictions": rows})


def _to_json(name: str, arr: np.ndarray) -> Any:
    """The nested-list JSON form of ``arr`` (a scalar for rank 0)."""
    kind = arr.dtype.kind
    if kind == "f":
        return _float_values(arr)
    if kind in "iub":
        return arr.tolist()
    if kind in "OSU":
        as_b64 = name.endswith(_BYTES_SUFFIX)
        flat = arr.reshape(-1).tolist()
        out = np.empty(len(flat), dtype=object)
        for i, v in enumerate(flat):
            out[i] = _string_json(v, as_b64, name)
        return out.reshape(arr.shape).tolist()
    raise invalid_argument(
        f"Failed to write JSON value for tensor type: {arr.dtype} (output: {name})"
    )


def _float_values(arr: np.ndarray) -> Any:
    """Floats as Python floats whose repr is the shortest decimal for the array's precision."""
    if arr.dtype == np.float64:
        return arr.tolist()
    if arr.dtype.itemsize < 8:
        # numpy's str() of a float32/float16 is its shortest round-tripping decimal; read back as
        # float64 its repr is that same decimal, so json writes 0.1 and not 0.10000000149011612.
        return arr.astype(str).astype(np.float64).tolist()
    return arr.astype(np.float64).tolist()


def _string_json(value: Any, as_b64: bool, name: str) -> Any:
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise invalid_argument(
            f"Failed to write JSON value for tensor type: DT_STRING (output: {name} holds a "
            f"{type(value).__name__})"
        )
    if not as_b64:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {_B64_KEY: base64.b64encode(data).decode("ascii")}


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode(
        "utf-8", "surrogatepass"
    )


# ---------------------------------------------------------------------------------------------
# Classify / regress


def parse_examples_request(
    body: bytes, *, max_depth: int | None = None, max_values: int | None = None
) -> tuple[str, ExampleBatch]:
    """Parse a classify/regress request into ``(signature_name, batch)``.

    ``examples`` is required and must be a non-empty list of objects; ``context``, when present,
    must be an object. Each object maps a feature name to a value or a list of values: JSON
    integers (and ``true``/``false``, as 1/0) make an int64 feature, numbers with a fraction or
    exponent a float feature (a list mixing integers and such numbers is float), strings (UTF-8)
    and ``{"b64": ...}`` a bytes feature. A list must hold one kind of value; ``null``, nested
    lists and other objects are INVALID_ARGUMENT. A feature given as an empty list is left out of
    its example: TF Serving sends it as a feature with no kind, which tf.Example parsing treats
    as absent / empty. Limits as :func:`parse_json_body`.
    """
    doc = parse_json_body(body, max_depth=max_depth, max_values=max_values)
    signature_name = _signature_name(doc)
    context: dict[str, Feature] | None = None
    if _CONTEXT_KEY in doc:
        context = _parse_example(doc[_CONTEXT_KEY], _CONTEXT_KEY)
    if _EXAMPLES_KEY not in doc:
        raise invalid_argument(
            f"JSON Value: {_quote(doc)} key '{_EXAMPLES_KEY}' is expected and was not found"
        )
    examples = doc[_EXAMPLES_KEY]
    if not isinstance(examples, list):
        raise invalid_argument(
            f"JSON Value: {_quote(doc)} Expecting '{_EXAMPLES_KEY}' value to be an list/array"
        )
    if not examples:
        raise invalid_argument(
            f"JSON Value: {_quote(doc)} '{_EXAMPLES_KEY}' value is an empty array"
        )
    parsed: list[Example] = [
        _parse_example(example, f"example {i}") for i, example in enumerate(examples)
    ]
    return signature_name, ExampleBatch(examples=parsed, context=context)


def _parse_example(value: Any, where: str) -> dict[str, Feature]:
    if not isinstance(value, dict):
        raise invalid_argument(
            f"Example must be JSON object but got JSON {_json_type(value)} ({where})"
        )
    features: dict[str, Feature] = {}
    for name, content in value.items():
        feature = _parse_feature(name, content)
        if feature is not None:
            features[name] = feature
    return features


def _feature_kind(name: str, value: Any) -> str:
    kind_of = {bool: "int64", int: "int64", float: "float", str: "bytes"}.get(type(value))
    if kind_of is not None:
        return kind_of
    if _is_b64_object(value):
        return "bytes"
    raise invalid_argument(
        f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}"
    )


def _parse_feature(name: str, content: Any) -> Feature | None:
    values = content if isinstance(content, list) else [content]
    if not values:
        return None
    kinds = [_feature_kind(name, v) for v in values]
    kind_set = set(kinds)
    if kind_set == {"int64", "float"}:
        kind = "float"
    elif len(kind_set) == 1:
        kind = kinds[0]
    else:
        first = kinds[0]
        raise invalid_argument(
            f"Unexpected element type in feature: {name} expecting type: {first}"
        )

    if kind == "int64":
        ints = [int(v) for v in values]
        for v in ints:
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise invalid_argument(
                    f"Feature: {name} has element {v} outside the int64 range. "
                    "Only int64 is supported."
                )
        return Feature("int64", ints)
    if kind == "float":
        floats: list[float] = []
        for v in values:
            if type(v) is float:
                if math.isfinite(v) and abs(v) >= _FLOAT32_OVERFLOW:
                    raise invalid_argument(
                        f"Cannot convert JSON value: {_quote(v)} to float without loss of "
                        "precision."
                    )
                floats.append(v)
            else:
                if abs(v) > _FLOAT32_MAX_INT:
                    raise invalid_argument(
                        f"Cannot convert JSON value: {_quote(v)} to float without loss of "
                        "precision."
                    )
                floats.append(float(v))
        return Feature("float", floats)
    out: list[bytes] = []
    for v in values:
        try:
            out.append(_string_bytes(v))
        except _TensorError as e:
            raise invalid_argument(f"Feature: {name}: {e.message}") from None
    return Feature("bytes", out)


def encode_classify_response(result: Classifications) -> bytes:
    """Write ``{"results": [[[label, score], ...], ...]}``: one list of (label, score) pairs per
    example (``""`` / ``0.0`` where the signature has no classes / scores: the proto defaults
    TF Serving writes); scores as float32, as TF Serving's ClassificationResult holds them."""
    n, k = result.num_examples, result.num_classes
    label_rows = result.labels if result.labels is not None else [[""] * k for _ in range(n)]
    score_rows = (_float_values(result.scores) if result.scores is not None
                  else [[0.0] * k for _ in range(n)])
    results = [
        [[label, score] for label, score in zip(label_row, score_row, strict=True)]
        for label_row, score_row in zip(label_rows, score_rows, strict=True)
    ]
    return _dump({"results": results})


def encode_regress_response(values: np.ndarray) -> bytes:
    """Write ``{"results": [v, ...]}`` from a regression's float32 values."""
    return _dump({"results": _float_values(values)})


# ---------------------------------------------------------------------------------------------
# Helpers


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _quote(value: Any) -> str:
    """``value`` as JSON text for an error message, cut to a readable length."""
    try:
        text = json.dumps(value, allow_nan=True, separators=(",", ":"))
    except (RecursionError, ValueError, TypeError):
        text = "<value>"
    if len(text) > _MAX_QUOTE:
        text = text[:_MAX_QUOTE] + "..."
    return text
