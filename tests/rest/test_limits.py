"""Hostile input against a real server: bodies over ``max_request_bytes`` / ``max_upload_bytes``
(413), JSON nested deeper than ``max_json_depth`` or holding more than ``max_tensor_elements``
values (400), numbers outside their dtype, NaN and infinities, huge batches. Every refusal is
TF Serving's ``{"error": ...}`` body, and afterwards another model still answers correctly.

The module's server runs with small limits (``LIMITS``); tests that need others say so with an
indirect ``tfserving_config`` parameter. The scan behind the depth and value limits
(``json_codec.check_json_limits``) is also held to a reference on generated documents.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from traitlets import TraitError

from jupyter_tfserving.app import TFServingApp
from jupyter_tfserving.core.archive import pack_directory
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.rest.json_codec import (
    DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_VALUES,
    check_json_limits,
    parse_json_body,
    parse_predict_request,
)

KIB = 1024
LIMITS = {
    "max_request_bytes": 256 * KIB,
    "max_upload_bytes": 1024 * KIB,
    "max_json_depth": 8,
    "max_tensor_elements": 1000,
}
# Room for the huge-batch tests: 100k rows of half_plus_two.
BIG_BATCH = {**LIMITS, "max_request_bytes": 4096 * KIB, "max_tensor_elements": 200_000}
ROWS = 100_000


@pytest.fixture
def tfserving_config(request: pytest.FixtureRequest) -> dict:
    return dict(getattr(request, "param", LIMITS))


async def _serve(rest, publish) -> None:
    publish("half_plus_two", 1)
    publish("multi", 1)
    for name in ("half_plus_two", "multi"):
        await rest.wait_for(name, 1)


async def assert_still_serving(rest) -> None:
    """The other models answer correctly: ``multi`` (row and columnar) and ``half_plus_two``."""
    code, data, _ = await rest.call("/v1/models/multi:predict",
                                    {"signature_name": "scalar", "inputs": 1.0})
    assert (code, data) == (200, {"outputs": 3.0})
    code, data, _ = await rest.call("/v1/models/multi:predict", {
        "instances": [{"a": [1.0, 2.0], "b": 3, "s": "abc"}]})
    assert code == 200 and data["predictions"][0]["total"] == 6.0, data
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict", {"instances": [[1.0]]})
    assert (code, data) == (200, {"predictions": [[2.5]]})


def assert_error(code: int, data: Any, status: int, fragment: str = "") -> str:
    assert code == status, (code, data)
    assert isinstance(data, dict) and set(data) == {"error"}, data
    message = data["error"]
    assert isinstance(message, str) and fragment in message, message
    assert "Traceback" not in message and ".py" not in message
    return message


# ------------------------------------------------------------------------------ configuration


def test_limits_are_traits_that_become_plain_options(tmp_path: Path):
    traits = TFServingApp.class_traits(config=True)
    for name in ("max_request_bytes", "max_json_depth", "max_tensor_elements"):
        assert traits[name].help, name
    assert "ServerApp.max_body_size" in traits["max_request_bytes"].help
    options = TFServingApp(model_root=str(tmp_path)).service_options()
    assert (options.max_request_bytes, options.max_json_depth, options.max_tensor_elements) == (
        64 << 20, DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_VALUES)
    app = TFServingApp(model_root=str(tmp_path), max_request_bytes=10, max_json_depth=3,
                       max_tensor_elements=7, max_upload_bytes=11)
    options = app.service_options()
    assert (options.max_request_bytes, options.max_json_depth, options.max_tensor_elements,
            options.max_upload_bytes) == (10, 3, 7, 11)
    for name in ("max_request_bytes", "max_json_depth", "max_tensor_elements",
                 "max_upload_bytes"):
        with pytest.raises(TraitError):
            TFServingApp(model_root=str(tmp_path), **{name: 0})


# ------------------------------------------------------------------------------ body size


async def test_oversized_predict_body_is_413(rest, publish):
    await _serve(rest, publish)
    limit = LIMITS["max_request_bytes"]
    doc = json.dumps({"instances": [[1.0]]}).encode()
    # Exactly at the limit (JSON whitespace pads it) is accepted; one byte more is not.
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict",
                                    doc[:-1] + b" " * (limit - len(doc)) + b"}")
    assert (code, data) == (200, {"predictions": [[2.5]]})
    for path in ("/v1/models/half_plus_two:predict", "/v1/models/half_plus_two:classify",
                 "/v1/models/half_plus_two/versions/1:regress", "/v1/models/nope:predict",
                 "/v1/models/half_plus_two:explain"):
        code, data, headers = await rest.call(path, doc[:-1] + b" " * (limit + 1 - len(doc))
                                              + b"}")
        message = assert_error(code, data, 413, "max_request_bytes")
        assert f"({limit + 1} bytes)" in message and str(limit) in message
        assert "X-Model-Version" not in headers
    # A huge body that is not even JSON is refused for its size, unparsed.
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict", b"\xff" * (4 * limit))
    assert_error(code, data, 413, "max_request_bytes")
    await assert_still_serving(rest)


async def test_oversized_management_bodies_are_413(rest, publish):
    await _serve(rest, publish)
    big = json.dumps({"version": 1, "pad": "x" * LIMITS["max_request_bytes"]})
    for method, path in (("PUT", "/api/models/multi/labels/stable"),
                         ("POST", "/api/models/multi:canary"),
                         ("POST", "/api/models/multi:promote"),
                         ("POST", "/api/config:reload"),
                         ("DELETE", "/api/models/multi/labels/stable")):
        code, data, _ = await rest.call(path, big, method=method)
        assert_error(code, data, 413, "max_request_bytes")
    code, data, _ = await rest.call("/api/models/multi")
    assert code == 200 and data["versions"][0]["labels"] == [], data
    await assert_still_serving(rest)


async def test_oversized_upload_is_413_and_a_smaller_one_is_published(
        rest, publish, exported_models: Path, tmp_path: Path):
    await _serve(rest, publish)
    limit = LIMITS["max_upload_bytes"]
    code, data, _ = await rest.call("/api/models/up/versions", b"\0" * (limit + 1),
                                    headers={"Content-Type": "application/gzip"})
    message = assert_error(code, data, 413, "max_upload_bytes")
    assert str(limit) in message
    # An upload body is held to max_upload_bytes, not to max_request_bytes.
    version = tmp_path / "padded"
    shutil.copytree(exported_models / "half_plus_two" / "1", version)
    (version / "assets.extra").mkdir(exist_ok=True)
    (version / "assets.extra" / "padding").write_bytes(os.urandom(limit // 4))
    archive = pack_directory(str(version))
    assert LIMITS["max_request_bytes"] < len(archive) < limit
    code, data, _ = await rest.call("/api/models/up/versions", archive,
                                    headers={"Content-Type": "application/gzip"})
    assert code == 201, data
    await rest.wait_for("up", 1)
    code, data, _ = await rest.call("/v1/models/up:predict", {"instances": [[3.0]]})
    assert (code, data) == (200, {"predictions": [[3.5]]})
    await assert_still_serving(rest)


async def test_login_comes_before_the_size_limit(rest, publish):
    await _serve(rest, publish)
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict",
                                    b" " * (LIMITS["max_request_bytes"] + 1), auth=False)
    assert code in (401, 403) and "error" in data


# ------------------------------------------------------------------------------ JSON shape


@pytest.mark.parametrize("path", ["/v1/models/half_plus_two:predict",
                                  "/v1/models/half_plus_two:classify",
                                  "/v1/models/half_plus_two/labels/x:regress"])
async def test_deep_nesting_is_400_and_fast(rest, publish, path):
    await _serve(rest, publish)
    depth = 100_000
    body = b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"
    started = time.monotonic()
    code, data, _ = await rest.call(path, body)
    assert time.monotonic() - started < 5
    assert_error(code, data, 400,
                 f"JSON Parse error: the document is nested deeper than "
                 f"{LIMITS['max_json_depth']} levels")
    await assert_still_serving(rest)


async def test_nesting_at_the_limit_is_accepted(rest, publish):
    await _serve(rest, publish)
    depth = LIMITS["max_json_depth"]
    # {"instances": [[...[1.0]...]]}: the object is level 1, so depth - 1 lists reach the limit.
    inner = "[" * (depth - 1) + "1.0" + "]" * (depth - 1)
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict", '{"instances": ' + inner
                                    + "}", method="POST")
    assert code == 200 and len(json.dumps(data["predictions"])) == len(inner), data
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict",
                                    '{"instances": [' + inner + "]}", method="POST")
    assert_error(code, data, 400, "nested deeper than")
    # Brackets inside strings are not nesting.
    code, data, _ = await rest.call("/v1/models/multi:predict", {
        "instances": [{"a": [1.0, 2.0], "b": 3, "s": "[" * 500 + '\\"{' * 100}]})
    assert code == 200 and data["predictions"][0]["upper"] == "[" * 500 + '\\"{' * 100, data


async def test_management_json_limits(rest, publish):
    await _serve(rest, publish)
    deep = {"version": 1}
    for _ in range(LIMITS["max_json_depth"]):
        deep = {"nested": deep}
    code, data, _ = await rest.call("/api/models/multi/labels/stable", deep, method="PUT")
    assert_error(code, data, 400, "nested deeper than")
    code, data, _ = await rest.call("/api/models/multi:canary",
                                    {"weight": 0.5, "pad": list(range(2000))})
    assert_error(code, data, 400, "max_tensor_elements")
    await assert_still_serving(rest)


@pytest.mark.parametrize("form", ["instances", "inputs", "named"])
async def test_too_many_values_is_400_naming_the_limit(rest, publish, form):
    await _serve(rest, publish)
    limit = LIMITS["max_tensor_elements"]
    path = "/v1/models/half_plus_two:predict"
    if form == "instances":
        ok, bad = {"instances": [[1.0]] * limit}, {"instances": [[1.0]] * (limit + 1)}
    elif form == "inputs":
        ok, bad = {"inputs": [[1.0]] * limit}, {"inputs": [[1.0]] * (limit + 1)}
    else:
        path = "/v1/models/multi:predict"
        row = {"a": [1.0, 2.0], "b": 1, "s": "x"}  # 4 values a row
        ok, bad = {"instances": [row] * (limit // 4)}, {"instances": [row] * (limit // 4 + 1)}
    code, data, _ = await rest.call(path, ok)
    assert code == 200, data
    code, data, _ = await rest.call(path, bad)
    message = assert_error(code, data, 400, "max_tensor_elements")
    assert str(limit) in message
    await assert_still_serving(rest)


async def test_too_many_example_values_is_400(rest, publish):
    await _serve(rest, publish)
    examples = [{"x": [1.0] * 10} for _ in range(LIMITS["max_tensor_elements"] // 10 + 1)]
    for verb in ("classify", "regress"):
        code, data, _ = await rest.call(f"/v1/models/half_plus_two:{verb}",
                                        {"examples": examples})
        assert_error(code, data, 400, "max_tensor_elements")
    await assert_still_serving(rest)


# ------------------------------------------------------------------------------ values


@pytest.mark.parametrize(
    "instance, fragment",
    [
        ({"a": [1.0, 2.0], "b": 2**31, "s": "x"}, "out of range for type: DT_INT32"),
        ({"a": [1.0, 2.0], "b": -(2**31) - 1, "s": "x"}, "out of range for type: DT_INT32"),
        ({"a": [1.0, 2.0], "b": 2**64, "s": "x"}, "out of range for type: DT_INT32"),
        ({"a": [1.0, 2.0], "b": 10**400, "s": "x"}, ""),
        ({"a": [1e39, 2.0], "b": 1, "s": "x"}, "to float without loss of precision"),
        ({"a": [-1e39, 2.0], "b": 1, "s": "x"}, "to float without loss of precision"),
        ({"a": [2**25 + 1, 2.0], "b": 1, "s": "x"}, "to float without loss of precision"),
        ({"a": [1.0, 2.0], "b": 1.5, "s": "x"}, "is not of expected type: DT_INT32"),
        ({"a": [1.0, 2.0], "b": 1, "s": 7}, "is not of expected type: DT_STRING"),
        ({"a": ["NaN", 2.0], "b": 1, "s": "x"}, "is not of expected type: DT_FLOAT"),
        ({"a": [1.0, 2.0], "b": 1, "s": {"b64": "!!!"}}, "Unable to base64 decode"),
    ],
)
async def test_values_outside_their_dtype_are_400(rest, publish, instance, fragment):
    await _serve(rest, publish)
    code, data, headers = await rest.call("/v1/models/multi:predict",
                                          json.dumps({"instances": [instance]}), method="POST")
    assert_error(code, data, 400, fragment)
    assert "X-Model-Version" not in headers
    await assert_still_serving(rest)


async def test_dtype_edges_are_accepted(rest, publish):
    await _serve(rest, publish)
    code, data, _ = await rest.call("/v1/models/multi:predict", {"instances": [
        {"a": [3.4028234663852886e38, 0.0], "b": 2**31 - 1, "s": ""},
        {"a": [-(2**24 - 1), 1e-45], "b": -(2**31), "s": {"b64": base64.b64encode(b"\0").decode()}},
    ]})
    assert code == 200, data
    first, second = data["predictions"]
    assert first["doubled"][0] == math.inf  # 2 * float32 max overflows in the model, not here
    assert second["doubled"][0] == -(2**25 - 2)
    assert base64.b64decode(second["echo_bytes"]["b64"]) == b"\0"


async def test_nan_and_infinity_literals_as_tf_serving(rest, publish):
    await _serve(rest, publish)
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict",
                                    b'{"instances": [[NaN], [Infinity], [-Infinity], [1.0]]}')
    assert code == 200, data
    values = [row[0] for row in data["predictions"]]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 2.5]
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict",
                                    b'{"inputs": {"x": [[-Infinity]]}}')
    assert (code, data) == (200, {"outputs": [[-math.inf]]})
    # Not for integers, and strings are not numbers.
    for body in (b'{"instances": [{"a": [1.0, 2.0], "b": NaN, "s": "x"}]}',
                 b'{"instances": [{"a": [1.0, 2.0], "b": Infinity, "s": "x"}]}'):
        code, data, _ = await rest.call("/v1/models/multi:predict", body)
        assert_error(code, data, 400, "DT_INT32")
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict",
                                    b'{"instances": [["Infinity"]]}')
    assert_error(code, data, 400, "is not of expected type: DT_FLOAT")
    await assert_still_serving(rest)


async def test_only_ascii_digits_are_version_numbers(rest, publish):
    """"١" (ARABIC-INDIC DIGIT ONE) is a digit to str.isdigit() and int(), not a version."""
    await _serve(rest, publish)
    one = "%D9%A1"
    code, data, _ = await rest.call(f"/v1/models/half_plus_two/versions/{one}")
    assert_error(code, data, 400, "Malformed request")
    code, data, _ = await rest.call(f"/v1/models/half_plus_two/versions/{one}:predict",
                                    {"instances": [[1.0]]})
    assert_error(code, data, 400, "Malformed request")
    code, data, _ = await rest.call(f"/api/models/half_plus_two/versions/{one}:unload", b"")
    assert_error(code, data, 404, "Not found")
    code, data, _ = await rest.call("/api/models/half_plus_two/labels/stable",
                                    {"version": "\u0661"}, method="PUT")
    assert_error(code, data, 400, "Invalid version")
    code, data, _ = await rest.call(f"/api/models/up/versions?version={one}", b"x")
    assert_error(code, data, 400, "Invalid version")
    code, data, _ = await rest.call("/api/models/half_plus_two")
    assert code == 200 and data["unloaded"] == [] and data["labels"] == {}, data
    await assert_still_serving(rest)


def test_the_openapi_document_lists_413_where_bodies_are_read():
    from jupyter_tfserving.rest.management import openapi_document

    doc = json.loads(openapi_document())
    for template, item in doc["paths"].items():
        for method, operation in item.items():
            if method in ("post", "put", "delete"):
                assert operation["responses"]["413"] == {
                    "$ref": "#/components/responses/PayloadTooLarge"}, (method, template)
            elif isinstance(operation, dict) and "responses" in operation:
                assert "413" not in operation["responses"], (method, template)


# ------------------------------------------------------------------------------ huge batches


@pytest.mark.parametrize(
    "tfserving_config, expected",
    [
        pytest.param({**BIG_BATCH, "enable_large_batch_splitting": False}, 400, id="split-off"),
        pytest.param({**BIG_BATCH, "enable_large_batch_splitting": True}, 400,
                     id="split-on-queue-too-short"),
        pytest.param({**BIG_BATCH, "enable_large_batch_splitting": True,
                      "max_enqueued_batches": 128}, 200, id="split-on"),
        pytest.param({**BIG_BATCH, "enable_batching": False}, 200, id="unbatched"),
    ],
    indirect=["tfserving_config"],
)
async def test_huge_batch(rest, publish, tfserving_config, expected):
    await _serve(rest, publish)
    body = b'{"instances": [' + b",".join([b"[1.0]"] * ROWS) + b"]}"
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict", body)
    if expected == 400:
        assert_error(code, data, 400, "is larger than maximum input batch size")
    else:
        assert code == 200, str(data)[:500]
        assert len(data["predictions"]) == ROWS
        assert all(row == [2.5] for row in data["predictions"])
    code, data, _ = await rest.call("/v1/models/half_plus_two:predict", b'{"inputs": ['
                                    + b",".join([b"[2.0]"] * ROWS) + b"]}")
    if expected == 200:
        assert code == 200 and data["outputs"][-1] == [3.0]
    await assert_still_serving(rest)


# ------------------------------------------------------------------------------ the scan itself


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=40,
)


def _reference(value: Any, level: int = 1) -> tuple[int, int]:
    """(deepest level, values) of a parsed document, the plain recursive way."""
    if isinstance(value, (list, dict)):
        children = value.values() if isinstance(value, dict) else value
        found = [_reference(child, level + 1) for child in children]
        return max([level] + [d for d, _ in found]), sum(n for _, n in found)
    return level - 1, 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES, st.sampled_from([None, 1, "\t"]))
def test_scan_matches_a_reference(value: Any, indent: Any) -> None:
    body = json.dumps(value, indent=indent).encode()
    depth, count = _reference(value)
    check_json_limits(body, max_depth=depth, max_values=count)
    if depth:
        with pytest.raises(ServingError, match=f"nested deeper than {depth - 1} levels"):
            check_json_limits(body, max_depth=depth - 1, max_values=None)
    if count:
        with pytest.raises(ServingError, match="max_tensor_elements") as info:
            check_json_limits(body, max_depth=None, max_values=count - 1)
        assert info.value.code == Code.INVALID_ARGUMENT
        assert f"holds {count} values" in info.value.message


def test_scan_is_linear_on_hostile_bodies() -> None:
    for body in (b"[" * 1_000_000, b"{" * 1_000_000, b'"\\"' * 1_000_000,
                 b'["' + b'\\"[' * 1_000_000, b"[" + b"0," * 1_000_000 + b"0]"):
        started = time.perf_counter()
        try:
            check_json_limits(body, max_depth=64, max_values=10_000)
        except ServingError as exc:
            assert exc.code == Code.INVALID_ARGUMENT
        assert time.perf_counter() - started < 1.0, body[:20]


def test_parse_functions_take_the_limits() -> None:
    body = b'{"instances": [[[1.0]]]}'
    assert parse_predict_request(body).payload == [[[1.0]]]
    assert parse_predict_request(body, max_depth=4, max_values=1).payload == [[[1.0]]]
    with pytest.raises(ServingError, match="nested deeper than 3 levels"):
        parse_predict_request(body, max_depth=3)
    with pytest.raises(ServingError, match="max_tensor_elements"):
        parse_json_body(b'{"a": [1, 2, 3]}', max_values=2)
    assert parse_json_body(b'{"a": [1, 2, 3]}', max_values=3) == {"a": [1, 2, 3]}
