"""Unit tests for jupyter_tfserving.rest.json_codec (TF Serving's REST JSON formats)."""

from __future__ import annotations

import base64
import contextlib
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jupyter_tfserving.core.servable import (
    CLASSIFY_METHOD,
    ExampleBatch,
    Feature,
    SignatureInfo,
    TensorInfo,
)
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.dataplane import classifications, regressions
from jupyter_tfserving.rest.json_codec import (
    PredictRequest,
    decode_inputs,
    encode_classify_response,
    encode_predict_response,
    encode_regress_response,
    parse_examples_request,
    parse_json_body,
    parse_predict_request,
)


def encode_classify(outputs: dict) -> bytes:
    """A classify answer from a signature's outputs, checked by the data plane as it checks
    them before the REST encoder writes them."""
    return encode_classify_response(classifications(outputs))


def encode_regress(outputs: dict) -> bytes:
    return encode_regress_response(regressions(outputs))


def sig(inputs: dict[str, str], outputs: dict[str, str] | None = None) -> SignatureInfo:
    return SignatureInfo(
        inputs={name: TensorInfo(dtype, None, f"{name}:0") for name, dtype in inputs.items()},
        outputs={name: TensorInfo(dtype, None) for name, dtype in (outputs or {}).items()},
    )


HALF_PLUS_TWO = SignatureInfo(
    inputs={"x": TensorInfo("DT_FLOAT", (-1, 1), "x:0")},
    outputs={"y": TensorInfo("DT_FLOAT", (-1, 1), "y:0")},
)
TWO_INPUTS = sig({"x": "DT_FLOAT", "x2": "DT_FLOAT"})


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def decode(obj: Any, signature: SignatureInfo = HALF_PLUS_TWO) -> dict[str, np.ndarray]:
    return decode_inputs(parse_predict_request(body(obj)), signature)


def decode_error(obj: Any, signature: SignatureInfo = HALF_PLUS_TWO) -> ServingError:
    with pytest.raises(ServingError) as info:
        decode(obj, signature)
    return info.value


def invalid(fn: Any, *args: Any) -> str:
    """Run fn(*args), expect INVALID_ARGUMENT, return the message."""
    with pytest.raises(ServingError) as info:
        fn(*args)
    assert info.value.code == Code.INVALID_ARGUMENT, info.value
    return info.value.message


def as_json(data: bytes) -> Any:
    return json.loads(data)


# ------------------------------------------------------------------------------------------------
# TF Serving's own request/answer pairs (shared/testdata/tfserving/README.md), at the codec level


def test_readme_predict_row() -> None:
    request = parse_predict_request(b'{"instances": [2.0, 3.0, 4.0]}')
    assert request == PredictRequest("", [2.0, 3.0, 4.0], True)
    inputs = decode_inputs(request, HALF_PLUS_TWO)
    assert list(inputs) == ["x"]
    assert inputs["x"].dtype == np.float32
    assert inputs["x"].shape == (3,)
    np.testing.assert_array_equal(inputs["x"], [2.0, 3.0, 4.0])
    y = np.array([3.0, 3.5, 4.0], dtype=np.float32)
    assert encode_predict_response({"y": y}, row_format=True) == b'{"predictions":[3.0,3.5,4.0]}'
    assert as_json(encode_predict_response({"y": y}, True)) == {"predictions": [3.0, 3.5, 4.0]}


def test_readme_predict_columnar() -> None:
    request = parse_predict_request(b'{"inputs": [2.0, 3.0, 4.0]}')
    assert request.row_format is False
    inputs = decode_inputs(request, HALF_PLUS_TWO)
    np.testing.assert_array_equal(inputs["x"], np.array([2.0, 3.0, 4.0], np.float32))
    y = np.array([3.0, 3.5, 4.0], dtype=np.float32)
    assert as_json(encode_predict_response({"y": y}, False)) == {"outputs": [3.0, 3.5, 4.0]}


def test_readme_predict_1_2_5() -> None:
    inputs = decode({"instances": [1.0, 2.0, 5.0]})
    y = 0.5 * inputs["x"] + 2
    assert as_json(encode_predict_response({"y": y}, True)) == {"predictions": [2.5, 3.0, 4.5]}


def test_readme_classify() -> None:
    name, batch = parse_examples_request(
        b'{"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}'
    )
    assert name == "classify_x_to_y"
    assert batch == ExampleBatch(examples=[{"x": Feature("float", [2.0])}], context=None)
    scores = np.array([[3.0]], dtype=np.float32)
    assert as_json(encode_classify({"scores": scores})) == {"results": [[["", 3.0]]]}


def test_readme_regress() -> None:
    name, batch = parse_examples_request(
        b'{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}'
    )
    assert name == "regress_x_to_y"
    assert batch.examples == [{"x": Feature("float", [2.0])}]
    outputs = np.array([[3.0]], dtype=np.float32)
    assert encode_regress({"outputs": outputs}) == b'{"results":[3.0]}'


def test_readme_empty_body() -> None:
    assert invalid(parse_predict_request, b"").startswith("JSON Parse error: ")


# ------------------------------------------------------------------------------------------------
# The envelope


@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"{", b"[1, 2", b'{"instances": [1,]}', b"nul", b'{"a" 1}', b"\xff\xfe{}"],
)
def test_parse_errors(raw: bytes) -> None:
    message = invalid(parse_json_body, raw)
    assert message.startswith("JSON Parse error: ")


def test_empty_document_message() -> None:
    assert invalid(parse_json_body, b"") == "JSON Parse error: The document is empty"


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"x"', b"null", b"true", b"[{}]"])
def test_body_must_be_object(raw: bytes) -> None:
    assert "Is not object" in invalid(parse_json_body, raw)


def test_parse_accepts_bom_and_nan_literals() -> None:
    assert parse_json_body(b"\xef\xbb\xbf{}") == {}
    doc = parse_json_body(b'{"a": [NaN, Infinity, -Infinity]}')
    assert math.isnan(doc["a"][0]) and doc["a"][1:] == [math.inf, -math.inf]


def test_deep_nesting_is_a_parse_error() -> None:
    raw = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert invalid(parse_predict_request, raw).startswith("JSON Parse error: ")


def test_huge_integer_literal() -> None:
    raw = b'{"inputs": ' + b"9" * 10_000 + b"}"
    assert invalid(parse_predict_request, raw).startswith("JSON Parse error: ")


def test_missing_instances_and_inputs() -> None:
    assert invalid(parse_predict_request, b'{"signature_name": "s"}') == (
        "Missing 'inputs' or 'instances' key"
    )


def test_both_instances_and_inputs() -> None:
    message = invalid(parse_predict_request, b'{"instances": [1], "inputs": [1]}')
    assert "expecting only one of 'inputs' or 'instances' keys to exist" in message


@pytest.mark.parametrize("value", [1, None, {"a": 1}, ["s"]])
def test_signature_name_must_be_string(value: Any) -> None:
    message = invalid(parse_predict_request, body({"signature_name": value, "inputs": [1]}))
    assert "'signature_name' key must be a string value." in message
    message = invalid(parse_examples_request, body({"signature_name": value, "examples": [{}]}))
    assert "'signature_name' key must be a string value." in message


def test_signature_name_is_kept() -> None:
    request = parse_predict_request(body({"signature_name": "sig", "inputs": {"x": 1}}))
    assert request == PredictRequest("sig", {"x": 1}, False)


@pytest.mark.parametrize("value", [1, "abc", {"x": [1]}, None])
def test_instances_must_be_a_list(value: Any) -> None:
    assert "to be an list/array" in invalid(parse_predict_request, body({"instances": value}))


def test_empty_instances() -> None:
    assert "No values in 'instances' array" in decode_error({"instances": []}).message


def test_long_values_are_cut_in_messages() -> None:
    message = invalid(parse_predict_request, body({"instances": [0.5] * 10_000, "inputs": 1}))
    assert len(message) < 500


# ------------------------------------------------------------------------------------------------
# Row format


def test_row_named_objects_single_input() -> None:
    inputs = decode({"instances": [{"x": [1.0]}, {"x": [2.0]}]})
    assert inputs["x"].shape == (2, 1)
    np.testing.assert_array_equal(inputs["x"], [[1.0], [2.0]])


def test_row_stacks_along_new_axis() -> None:
    inputs = decode({"instances": [[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[9, 10], [11, 12]]]})
    assert inputs["x"].shape == (3, 2, 2)
    assert inputs["x"][2, 1, 0] == 11.0


def test_row_multi_input() -> None:
    inputs = decode({"instances": [{"x": 1.0, "x2": [1, 2]}, {"x2": [3, 4], "x": 2.0}]}, TWO_INPUTS)
    np.testing.assert_array_equal(inputs["x"], [1.0, 2.0])
    np.testing.assert_array_equal(inputs["x2"], [[1, 2], [3, 4]])
    assert inputs["x"].dtype == inputs["x2"].dtype == np.float32


def test_row_multi_input_needs_objects() -> None:
    message = decode_error({"instances": [1.0, 2.0]}, TWO_INPUTS).message
    assert message.startswith("instances is a plain list, but expecting list of objects")


def test_row_multi_input_key_mismatch() -> None:
    message = decode_error({"instances": [{"x": 1.0, "x2": 1.0}, {"x": 2.0}]}, TWO_INPUTS).message
    assert message == (
        "Failed to process element: 1 of 'instances' list. input size does not match signature: "
        "1!=2 len({x}) != len({x,x2}). Sent extra: {}. Missing but required: {x2}."
    )


def test_row_extra_key() -> None:
    message = decode_error({"instances": [{"x": 1.0, "z": 2.0}]}).message
    assert "Sent extra: {z}. Missing but required: {}." in message


def test_row_object_after_values() -> None:
    message = decode_error({"instances": [1.0, {"x": 2.0}]}).message
    assert message == "Expecting value/list but got object at item 1 of input list"


def test_row_value_after_objects() -> None:
    message = decode_error({"instances": [{"x": 2.0}, 1.0]}).message
    assert message == "Expecting object but got list at item 1 of input list"


@pytest.mark.parametrize(
    "instances, fragment",
    [
        ([[1.0, 2.0], [3.0]], "Encountered list at unexpected size: 1 at level: 1"),
        ([[1.0], 2.0], "found at incorrect level"),
        ([1.0, [2.0]], "Encountered list at unexpected level"),
        ([[[1.0]], [[1.0, 2.0]]], "unexpected size"),
        ([[], [1.0]], "unexpected size"),
    ],
)
def test_row_ragged(instances: list[Any], fragment: str) -> None:
    message = decode_error({"instances": instances}).message
    assert "element: 1 of 'instances' list for input: x" in message
    assert fragment in message


def test_row_ragged_named() -> None:
    message = decode_error({"instances": [{"x": [1.0]}, {"x": [1.0, 2.0]}]}).message
    assert "element: 1 of 'instances' list for input: x" in message


def test_row_b64_value_is_not_a_named_object() -> None:
    signature = sig({"image_bytes": "DT_STRING"})
    inputs = decode(
        {"instances": [{"b64": base64.b64encode(b"\x00\x01").decode()}, {"b64": "YQ=="}]},
        signature,
    )
    arr = inputs["image_bytes"]
    assert arr.dtype == object and arr.shape == (2,)
    assert arr.tolist() == [b"\x00\x01", b"a"]


def test_row_b64_inside_named_object() -> None:
    signature = sig({"b": "DT_STRING", "n": "DT_INT64"})
    inputs = decode({"instances": [{"b": {"b64": "YQ=="}, "n": 1}]}, signature)
    assert inputs["b"].tolist() == [b"a"]
    assert inputs["n"].tolist() == [1] and inputs["n"].dtype == np.int64


# ------------------------------------------------------------------------------------------------
# Columnar format


def test_columnar_scalar() -> None:
    inputs = decode({"inputs": 2.5})
    assert inputs["x"].shape == () and inputs["x"].dtype == np.float32 and inputs["x"] == 2.5


def test_columnar_named() -> None:
    inputs = decode({"inputs": {"x": [[1.0], [2.0]]}})
    assert inputs["x"].shape == (2, 1)


def test_columnar_multi_input() -> None:
    inputs = decode({"inputs": {"x": [1.0, 2.0], "x2": [[1.0], [2.0], [3.0]]}}, TWO_INPUTS)
    assert inputs["x"].shape == (2,) and inputs["x2"].shape == (3, 1)


def test_columnar_multi_input_plain_value() -> None:
    message = decode_error({"inputs": [1.0, 2.0]}, TWO_INPUTS).message
    assert message.startswith("inputs is a plain value/list, but expecting an object")


def test_columnar_missing_input() -> None:
    message = decode_error({"inputs": {"x": [1.0]}}, TWO_INPUTS).message
    assert message == (
        "input size does not match signature: 1!=2 len({x}) != len({x,x2}). "
        "Sent extra: {}. Missing but required: {x2}."
    )


def test_columnar_extra_input() -> None:
    message = decode_error({"inputs": {"x": [1.0], "x2": [1.0], "x3": 1}}, TWO_INPUTS).message
    assert message == (
        "input size does not match signature: 3!=2 len({x,x2,x3}) != len({x,x2}). "
        "Sent extra: {x3}. Missing but required: {}."
    )


def test_columnar_ragged() -> None:
    message = decode_error({"inputs": [[1.0, 2.0], [3.0]]}).message
    assert "Failed to process 'inputs' for input: x" in message
    assert "unexpected size" in message


def test_columnar_b64_single_string_input() -> None:
    inputs = decode({"inputs": {"b64": "aGVsbG8="}}, sig({"s": "DT_STRING"}))
    assert inputs["s"].shape == () and inputs["s"].item() == b"hello"


def test_empty_lists_keep_their_shape() -> None:
    assert decode({"inputs": []})["x"].shape == (0,)
    assert decode({"inputs": [[], []]})["x"].shape == (2, 0)
    assert decode({"instances": [[], []]})["x"].shape == (2, 0)
    strings = decode({"inputs": [[]]}, sig({"s": "DT_STRING"}))["s"]
    assert strings.shape == (1, 0) and strings.dtype == object


def test_too_many_dimensions() -> None:
    """At most 32 dimensions (core.dtypes.MAX_TENSOR_RANK: TensorFlow's numpy conversion of
    strings crashes the process past 32), for every dtype."""
    for depth, dtype in ((33, "DT_FLOAT"), (33, "DT_STRING"), (70, "DT_FLOAT")):
        value: Any = "a" if dtype == "DT_STRING" else 1.0
        for _ in range(depth):
            value = [value]
        message = decode_error({"inputs": value}, sig({"x": dtype})).message
        assert "nested deeper than 32" in message
    value = 1.0
    for _ in range(32):
        value = [value]
    assert decode({"inputs": value})["x"].ndim == 32


# ------------------------------------------------------------------------------------------------
# Signatures without inputs


@pytest.mark.parametrize(
    "request_obj", [{"inputs": {}}, {"instances": []}, {"instances": [{}, {}]}]
)
def test_no_inputs_accepted(request_obj: dict[str, Any]) -> None:
    assert decode(request_obj, sig({})) == {}


@pytest.mark.parametrize(
    "request_obj", [{"inputs": []}, {"inputs": {"x": 1}}, {"instances": [1]}, {"inputs": None}]
)
def test_no_inputs_rejects_values(request_obj: dict[str, Any]) -> None:
    error = decode_error(request_obj, sig({}))
    assert error.code == Code.INVALID_ARGUMENT
    assert "signature has no inputs" in error.message


# ------------------------------------------------------------------------------------------------
# dtypes


def test_float_accepts_ints_and_literals() -> None:
    raw = b'{"inputs": [1, 2.5, NaN, Infinity, -Infinity, -0.0]}'
    arr = decode_inputs(parse_predict_request(raw), HALF_PLUS_TWO)["x"]
    assert arr.dtype == np.float32
    assert arr[0] == 1.0 and arr[1] == 2.5 and np.isnan(arr[2])
    assert arr[3] == np.inf and arr[4] == -np.inf and np.signbit(arr[5])


@pytest.mark.parametrize("value", ["NaN", "1.0", True, False, None, {"a": 1}, {"b64": "AA=="}])
def test_float_rejects_non_numbers(value: Any) -> None:
    message = decode_error({"inputs": [1.0, value]}).message
    assert "is not of expected type: DT_FLOAT" in message


def test_float_type_error_wording() -> None:
    message = decode_error({"inputs": "abc"}).message
    assert message.endswith('JSON Value: "abc" Type: String is not of expected type: DT_FLOAT')
    message = decode_error({"inputs": [None]}).message
    assert "JSON Value: null Type: Null is not of expected type: DT_FLOAT" in message
    message = decode_error({"inputs": [True]}).message
    assert "Type: True is not of expected type" in message


@pytest.mark.parametrize(
    "dtype, value",
    [("DT_FLOAT", 2**24), ("DT_FLOAT", 1e39), ("DT_FLOAT", -3.5e38), ("DT_HALF", 70000.0),
     ("DT_HALF", 4096), ("DT_DOUBLE", 2**53 + 1)],
)
def test_lossy_floats(dtype: str, value: Any) -> None:
    message = decode_error({"inputs": [value]}, sig({"x": dtype})).message
    assert "without loss of precision" in message


def test_float_edges() -> None:
    arr = decode({"inputs": [2**24 - 1, -(2**24 - 1), 3.4028235e38, -3.4028235e38]})["x"]
    assert arr.dtype == np.float32 and arr[0] == 2**24 - 1
    assert arr[2] == np.finfo(np.float32).max and arr[3] == np.finfo(np.float32).min
    assert decode({"inputs": [1e300]}, sig({"x": "DT_DOUBLE"}))["x"].dtype == np.float64
    half = decode({"inputs": [0.5, 2047]}, sig({"x": "DT_HALF"}))["x"]
    assert half.dtype == np.float16 and half.tolist() == [0.5, 2047.0]


@pytest.mark.parametrize(
    "dtype, np_dtype, lo, hi",
    [
        ("DT_INT8", np.int8, -128, 127),
        ("DT_INT16", np.int16, -(2**15), 2**15 - 1),
        ("DT_INT32", np.int32, -(2**31), 2**31 - 1),
        ("DT_INT64", np.int64, -(2**63), 2**63 - 1),
        ("DT_UINT8", np.uint8, 0, 255),
        ("DT_UINT16", np.uint16, 0, 2**16 - 1),
        ("DT_UINT32", np.uint32, 0, 2**32 - 1),
        ("DT_UINT64", np.uint64, 0, 2**64 - 1),
    ],
)
def test_int_ranges(dtype: str, np_dtype: Any, lo: int, hi: int) -> None:
    signature = sig({"x": dtype})
    arr = decode({"inputs": [lo, hi]}, signature)["x"]
    assert arr.dtype == np_dtype and arr.tolist() == [lo, hi]
    for bad in (lo - 1, hi + 1):
        message = decode_error({"inputs": [lo, bad]}, signature).message
        assert f"JSON Value: {bad} is out of range for type: {dtype}" in message


@pytest.mark.parametrize("value", [1.0, 1.5, "1", True, None, {"b64": "AA=="}])
def test_int_rejects_non_integers(value: Any) -> None:
    message = decode_error({"inputs": [1, value]}, sig({"x": "DT_INT32"})).message
    assert "is not of expected type: DT_INT32" in message


def test_bool() -> None:
    arr = decode({"inputs": [[True, False]]}, sig({"x": "DT_BOOL"}))["x"]
    assert arr.dtype == np.bool_ and arr.tolist() == [[True, False]]
    for bad in (1, 0, "true", None):
        message = decode_error({"inputs": [True, bad]}, sig({"x": "DT_BOOL"})).message
        assert "is not of expected type: DT_BOOL" in message


def test_strings() -> None:
    signature = sig({"s": "DT_STRING"})
    arr = decode({"inputs": [["héllo", {"b64": "AP8="}], ["", {"b64": ""}]]}, signature)["s"]
    assert arr.dtype == object and arr.shape == (2, 2)
    assert arr.tolist() == [["héllo".encode(), b"\x00\xff"], [b"", b""]]
    assert all(type(v) is bytes for v in arr.ravel())


def test_b64_padding_optional() -> None:
    signature = sig({"s": "DT_STRING"})
    assert decode({"inputs": {"b64": "YWI"}}, signature)["s"].item() == b"ab"


@pytest.mark.parametrize("text", ["!!!!", "YQ=a", "Y", "YWJj\n", "é"])
def test_bad_b64(text: str) -> None:
    message = decode_error({"inputs": [{"b64": text}]}, sig({"s": "DT_STRING"})).message
    assert "Unable to base64 decode" in message


@pytest.mark.parametrize(
    "value", [{"b64": 1}, {"b64": "YQ==", "x": 1}, {"c": "YQ=="}, {}]
)
def test_non_b64_object_for_string(value: Any) -> None:
    message = decode_error({"inputs": [value]}, sig({"s": "DT_STRING"})).message
    assert "not formatted correctly for base64 data" in message


@pytest.mark.parametrize("value", [1, 1.5, True, None])
def test_string_rejects_non_strings(value: Any) -> None:
    message = decode_error({"inputs": ["a", value]}, sig({"s": "DT_STRING"})).message
    assert "is not of expected type: DT_STRING" in message


def test_lone_surrogate_string() -> None:
    raw = b'{"inputs": ["\\ud800"]}'
    with pytest.raises(ServingError) as info:
        decode_inputs(parse_predict_request(raw), sig({"s": "DT_STRING"}))
    assert info.value.code == Code.INVALID_ARGUMENT


@pytest.mark.parametrize("dtype", ["DT_BFLOAT16", "DT_COMPLEX64", "DT_RESOURCE", "DT_VARIANT"])
def test_unsupported_dtype(dtype: str) -> None:
    error = decode_error({"inputs": [1.0]}, sig({"x": dtype}))
    assert error.code == Code.UNIMPLEMENTED
    assert dtype in error.message


# ------------------------------------------------------------------------------------------------
# Predict answers


def test_float32_shortest_formatting() -> None:
    y = np.array([0.1, 3.0, 1 / 3, 1e-8, 16777216.0, -2.5, 0.0], dtype=np.float32)
    text = encode_predict_response({"y": y}, False).decode()
    assert text == '{"outputs":[0.1,3.0,0.33333334,1e-08,16777216.0,-2.5,0.0]}'
    assert np.array_equal(np.array(json.loads(text)["outputs"], dtype=np.float32), y)


def test_float64_and_half_formatting() -> None:
    out = encode_predict_response({"y": np.array([0.1, 1 / 3])}, False)
    assert out == b'{"outputs":[0.1,0.3333333333333333]}'
    out = encode_predict_response({"y": np.array([0.1, 3], dtype=np.float16)}, False)
    assert out == b'{"outputs":[0.1,3.0]}'


def test_nan_and_infinity() -> None:
    y = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    assert encode_predict_response({"y": y}, True) == b'{"predictions":[NaN,Infinity,-Infinity]}'


def test_ints_and_bools() -> None:
    out = encode_predict_response(
        {"i": np.array([[1, -2]], np.int8), "u": np.array([2**64 - 1], np.uint64),
         "b": np.array([True])},
        True,
    )
    assert as_json(out) == {"predictions": [{"i": [1, -2], "u": 2**64 - 1, "b": True}]}
    assert b"true" in out


def test_string_outputs() -> None:
    texts = np.array([b"abc", "é".encode(), b"\xff"], dtype=object)
    assert as_json(encode_predict_response({"s": texts}, False)) == {
        "outputs": ["abc", "é", {"b64": "/w=="}]
    }
    assert as_json(encode_predict_response({"s_bytes": texts}, False)) == {
        "outputs": [{"b64": "YWJj"}, {"b64": "w6k="}, {"b64": "/w=="}]
    }
    assert as_json(encode_predict_response({"s": np.array([[b"a"]], dtype="S1")}, True)) == {
        "predictions": [["a"]]
    }
    assert as_json(encode_predict_response({"s": np.array(["x"])}, True)) == {"predictions": ["x"]}


def test_non_ascii_output_is_utf8() -> None:
    out = encode_predict_response({"s": np.array(["héllo".encode()], dtype=object)}, False)
    assert out == '{"outputs":["héllo"]}'.encode()


def test_row_multi_output() -> None:
    out = encode_predict_response(
        {"y": np.array([[1.5], [2.5]], np.float32), "label_bytes": np.array([b"a", b"b"], object)},
        True,
    )
    assert as_json(out) == {
        "predictions": [
            {"y": [1.5], "label_bytes": {"b64": "YQ=="}},
            {"y": [2.5], "label_bytes": {"b64": "Yg=="}},
        ]
    }


def test_row_inconsistent_batch() -> None:
    message = invalid(
        encode_predict_response, {"a": np.zeros(2), "b": np.zeros((3, 1))}, True
    )
    assert message == "Tensor name: b has inconsistent batch size: 3 expecting: 2"


def test_row_scalar_output() -> None:
    message = invalid(encode_predict_response, {"a": np.float32(1.0)}, True)
    assert message.startswith("Tensor name: a has no shape information")


def test_columnar_outputs() -> None:
    assert encode_predict_response({"a": np.float32(1.5)}, False) == b'{"outputs":1.5}'
    out = encode_predict_response({"a": np.zeros((2, 0)), "b": np.array(7, np.int64)}, False)
    assert as_json(out) == {"outputs": {"a": [[], []], "b": 7}}


def test_row_empty_batch() -> None:
    assert as_json(encode_predict_response({"a": np.zeros((0, 3))}, True)) == {"predictions": []}


def test_encode_errors() -> None:
    assert "empty tensor map" in invalid(encode_predict_response, {}, True)
    assert "tensor type" in invalid(
        encode_predict_response, {"c": np.array([1j], np.complex64)}, False
    )
    assert "DT_STRING" in invalid(
        encode_predict_response, {"o": np.array([None], dtype=object)}, False
    )


# ------------------------------------------------------------------------------------------------
# Examples (classify / regress)


def test_examples_feature_kinds() -> None:
    _, batch = parse_examples_request(
        body(
            {
                "examples": [
                    {
                        "i": 3,
                        "il": [1, -2, 2**63 - 1],
                        "f": 1.5,
                        "fe": 1e3,
                        "mixed": [1, 2.5],
                        "s": "héllo",
                        "b": {"b64": "AP8="},
                        "sl": ["a", {"b64": "Yg=="}],
                        "flag": [True, False],
                    }
                ]
            }
        )
    )
    (example,) = batch.examples
    assert example == {
        "i": Feature("int64", [3]),
        "il": Feature("int64", [1, -2, 2**63 - 1]),
        "f": Feature("float", [1.5]),
        "fe": Feature("float", [1000.0]),
        "mixed": Feature("float", [1.0, 2.5]),
        "s": Feature("bytes", ["héllo".encode()]),
        "b": Feature("bytes", [b"\x00\xff"]),
        "sl": Feature("bytes", [b"a", b"b"]),
        "flag": Feature("int64", [1, 0]),
    }
    assert type(example["mixed"].values[0]) is float
    assert type(example["flag"].values[0]) is int


def test_examples_context() -> None:
    name, batch = parse_examples_request(
        body({"signature_name": "s", "context": {"c": [1.0]}, "examples": [{"x": 1.0}, {}]})
    )
    assert name == "s"
    assert batch.context == {"c": Feature("float", [1.0])}
    assert batch.examples == [{"x": Feature("float", [1.0])}, {}]


def test_examples_empty_list_feature_is_omitted() -> None:
    _, batch = parse_examples_request(body({"examples": [{"x": [], "y": 1}]}))
    assert batch.examples == [{"y": Feature("int64", [1])}]


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ({}, "key 'examples' is expected and was not found"),
        ({"examples": {"x": 1}}, "Expecting 'examples' value to be an list/array"),
        ({"examples": []}, "'examples' value is an empty array"),
        ({"examples": [1]}, "Example must be JSON object but got JSON Number"),
        ({"examples": [[{"x": 1}]]}, "Example must be JSON object but got JSON Array"),
        ({"examples": [{}], "context": [1]}, "Example must be JSON object but got JSON Array"),
        ({"examples": [{}], "context": None}, "Example must be JSON object but got JSON Null"),
        ({"examples": [{"x": None}]}, "Feature: x has element with unexpected JSON type: Null"),
        ({"examples": [{"x": [[1]]}]}, "Feature: x has element with unexpected JSON type: Array"),
        ({"examples": [{"x": {"a": 1}}]}, "unexpected JSON type: Object"),
        ({"examples": [{"x": [1, "a"]}]}, "Unexpected element type in feature: x"),
        ({"examples": [{"x": ["a", 1.0]}]}, "expecting type: bytes"),
        ({"examples": [{"x": [2**63]}]}, "int64"),
        ({"examples": [{"x": [1e39]}]}, "without loss of precision"),
        ({"examples": [{"x": [0.5, 2**24]}]}, "without loss of precision"),
        ({"examples": [{"x": {"b64": "!"}}]}, "Unable to base64 decode"),
    ],
)
def test_examples_errors(doc: dict[str, Any], fragment: str) -> None:
    assert fragment in invalid(parse_examples_request, body(doc))


def test_examples_nan_literal() -> None:
    _, batch = parse_examples_request(b'{"examples": [{"x": [NaN, -Infinity]}]}')
    values = batch.examples[0]["x"].values
    assert batch.examples[0]["x"].kind == "float"
    assert math.isnan(values[0]) and values[1] == -math.inf


def test_classify_answers() -> None:
    classes = np.array([[b"a", b"b"], [b"c", b"\xff"]], dtype=object)
    scores = np.array([[0.1, 0.9], [0.5, 0.25]], dtype=np.float32)
    assert as_json(encode_classify({"classes": classes, "scores": scores})) == {
        "results": [[["a", 0.1], ["b", 0.9]], [["c", 0.5], ["\ufffd", 0.25]]]
    }
    assert as_json(encode_classify({"classes": classes})) == {
        "results": [[["a", 0.0], ["b", 0.0]], [["c", 0.0], ["\ufffd", 0.0]]]
    }
    assert as_json(encode_classify({"scores": np.array([1.5, 2.5])})) == {
        "results": [[["", 1.5]], [["", 2.5]]]
    }


def test_classify_errors() -> None:
    assert "'classes' and/or 'scores'" in invalid(encode_classify, {"y": np.zeros(1)})
    message = invalid(
        encode_classify,
        {"classes": np.array([[b"a"]], object), "scores": np.zeros((1, 2), np.float32)},
    )
    assert "should match in shape" in message
    assert "[batch_size num_classes]" in invalid(
        encode_classify, {"scores": np.zeros((1, 1, 1))}
    )
    assert "DT_FLOAT" in invalid(encode_classify, {"scores": np.array([[b"a"]])})
    assert "DT_STRING" in invalid(encode_classify, {"classes": np.zeros((1, 1))})


def test_regress_answers() -> None:
    assert encode_regress({"outputs": np.array([0.1, 2.0], np.float32)}) == (
        b'{"results":[0.1,2.0]}'
    )
    assert encode_regress({"outputs": np.array([[0.1], [1 / 3]])}) == (
        b'{"results":[0.1,0.33333334]}'
    )


def test_regress_errors() -> None:
    assert "'outputs'" in invalid(encode_regress, {"y": np.zeros(1)})
    message = invalid(encode_regress, {"outputs": np.zeros((2, 2))})
    assert "[batch_size] or [batch_size, 1] but got [2, 2]" in message
    assert "DT_FLOAT" in invalid(encode_regress, {"outputs": np.array([b"a"])})


# ------------------------------------------------------------------------------------------------
# Properties

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS | st.fixed_dictionaries({"b64": st.text(max_size=8)}),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["x", "x2", "b64", "s", "i"]) | st.text(max_size=3),
                      children, max_size=3),
    max_leaves=20,
)
DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "signature_name": JSON_VALUES,
        "instances": JSON_VALUES,
        "inputs": JSON_VALUES,
        "examples": JSON_VALUES,
        "context": JSON_VALUES,
    },
)
FUZZ_SIGNATURES = [
    HALF_PLUS_TWO,
    TWO_INPUTS,
    sig({}),
    sig({"s": "DT_STRING"}),
    sig({"b": "DT_BOOL", "i": "DT_INT8", "s": "DT_STRING"}),
    sig({"x": "DT_UINT64"}),
    sig({"x": "DT_HALF", "i": "DT_INT64"}),
    sig({"x": "DT_BFLOAT16"}),
]


def exercise(raw: bytes) -> None:
    """Every entry point on one body: only ServingError may come out."""
    for parse in (parse_json_body, parse_examples_request):
        with contextlib.suppress(ServingError):
            parse(raw)
    try:
        request = parse_predict_request(raw)
    except ServingError:
        return
    for signature in FUZZ_SIGNATURES:
        with contextlib.suppress(ServingError):
            decode_inputs(request, signature)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(DOCUMENTS, JSON_VALUES))
def test_fuzz_json_documents(doc: Any) -> None:
    exercise(json.dumps(doc).encode("utf-8", "surrogatepass"))


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=64)
    | st.text(max_size=64).map(lambda text: text.encode("utf-8", "surrogatepass"))
)
def test_fuzz_raw_bytes(raw: bytes) -> None:
    exercise(raw)


@settings(max_examples=200, deadline=None)
@given(st.one_of(DOCUMENTS, JSON_VALUES))
def test_fuzz_predictions_encode_after_decode(doc: Any) -> None:
    """Whatever decodes also encodes back (row and columnar) without a stray exception."""
    try:
        request = parse_predict_request(json.dumps(doc).encode("utf-8", "surrogatepass"))
    except ServingError:
        return
    for signature in FUZZ_SIGNATURES:
        try:
            inputs = decode_inputs(request, signature)
        except ServingError:
            continue
        for row_format in (True, False):
            with contextlib.suppress(ServingError):
                json.loads(encode_predict_response(inputs, row_format))


# JSON cannot say how long the axes after a zero-length one are ([] for a [0, 2] tensor), so
# round trips use non-empty axes; test_empty_lists_keep_their_shape covers what can be kept.
ARRAY_SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, ARRAY_SHAPES, elements=st.floats(width=32)))
def test_round_trip_float32(arr: np.ndarray) -> None:
    encoded = encode_predict_response({"x": arr}, row_format=False)
    request = parse_predict_request(encoded.replace(b'"outputs"', b'"inputs"', 1))
    decoded = decode_inputs(request, sig({"x": "DT_FLOAT"}))["x"]
    assert decoded.dtype == np.float32 and decoded.shape == arr.shape
    np.testing.assert_array_equal(decoded, arr)
    numbers = ~np.isnan(arr)  # JSON's NaN has no sign
    assert np.array_equal(np.signbit(decoded)[numbers], np.signbit(arr)[numbers])


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.int32, ARRAY_SHAPES))
def test_round_trip_int32(arr: np.ndarray) -> None:
    encoded = encode_predict_response({"x": arr}, row_format=False)
    request = parse_predict_request(encoded.replace(b'"outputs"', b'"inputs"', 1))
    decoded = decode_inputs(request, sig({"x": "DT_INT32"}))["x"]
    assert decoded.dtype == np.int32 and decoded.shape == arr.shape
    np.testing.assert_array_equal(decoded, arr)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
                  elements=st.floats(width=32)))
def test_round_trip_row_format(arr: np.ndarray) -> None:
    encoded = encode_predict_response({"x": arr}, row_format=True)
    request = parse_predict_request(encoded.replace(b'"predictions"', b'"instances"', 1))
    decoded = decode_inputs(request, sig({"x": "DT_FLOAT"}))["x"]
    np.testing.assert_array_equal(decoded, arr)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=5))
def test_round_trip_bytes(values: list[bytes]) -> None:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    encoded = encode_predict_response({"x_bytes": arr}, row_format=False)
    request = parse_predict_request(encoded.replace(b'"outputs"', b'"inputs"', 1))
    decoded = decode_inputs(request, sig({"x_bytes": "DT_STRING"}))["x_bytes"]
    assert decoded.tolist() == values


def test_signature_method_is_irrelevant() -> None:
    signature = SignatureInfo(HALF_PLUS_TWO.inputs, HALF_PLUS_TWO.outputs, CLASSIFY_METHOD)
    assert decode({"inputs": [1.0]}, signature)["x"].tolist() == [1.0]
