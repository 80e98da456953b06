"""End to end against a real Jupyter server with models the tests export themselves: TF
Serving's v1 JSON in every form, bad input, and the Jupyter login in front of every route."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest


async def _serve(rest, publish) -> None:
    publish("half_plus_two", 1)
    publish("multi", 1)
    publish("keras", 1)
    for name in ("half_plus_two", "multi", "keras"):
        await rest.wait_for(name, 1)


async def test_predict_row_and_columnar(rest, publish):
    await _serve(rest, publish)
    code, data, headers = await rest.call("/v1/models/half_plus_two:predict",
                                          {"instances": [[1.0], [2.0], [5.0]]})
    assert (code, data) == (200, {"predictions": [[2.5], [3.0], [4.5]]})
    assert headers["X-Model-Version"] == "1"
    assert headers["Content-Type"].startswith("application/json")
    code, data, _ = await rest.call("/v1/models/half_plus_two/versions/1:predict",
                                    {"inputs": {"x": [[0.1]]}})
    assert (code, data) == (200, {"outputs": [[2.05]]})


async def test_keras_model_matches_its_own_output(rest, publish, exported_models: Path):
    await _serve(rest, publish)
    probe = np.load(exported_models / "keras_probe.npy")
    code, data, _ = await rest.call("/v1/models/keras:predict",
                                    {"instances": np.eye(3).tolist()})
    assert code == 200, data
    np.testing.assert_allclose(np.asarray(data["predictions"]), probe, rtol=1e-6, atol=1e-6)


async def test_multi_input_output_and_b64(rest, publish):
    await _serve(rest, publish)
    instances = [
        {"a": [1.0, 2.0], "b": 3, "s": "abc"},
        {"a": [0.5, 0.25], "b": -1, "s": {"b64": base64.b64encode(b"\x00\xffz").decode()}},
    ]
    code, data, _ = await rest.call("/v1/models/multi:predict", {"instances": instances})
    assert code == 200, data
    first, second = data["predictions"]
    assert first["total"] == 6.0 and first["doubled"] == [2.0, 4.0] and first["upper"] == "ABC"
    assert base64.b64decode(first["echo_bytes"]["b64"]) == b"abc"
    assert second["total"] == -0.25
    assert base64.b64decode(second["echo_bytes"]["b64"]) == b"\x00\xffz"
    code, data, _ = await rest.call("/v1/models/multi:predict", {
        "inputs": {"a": [[1.0, 1.0]], "b": [1], "s": ["x"]}})
    assert code == 200, data
    assert data["outputs"]["total"] == [3.0] and data["outputs"]["upper"] == ["X"]
    code, data, _ = await rest.call("/v1/models/multi:predict",
                                    {"signature_name": "scalar", "inputs": 2.0})
    assert (code, data) == (200, {"outputs": 6.0})


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"", "JSON Parse error"),
        (b"{not json", "JSON Parse error"),
        (b"[1, 2]", "Is not object"),
        (b'{"instances": [[1.0]], "inputs": [[1.0]]}', "only one of"),
        (b'{"signature_name": "serving_default"}', "instances"),
        (b'{"instances": [[1.0], [2.0, 3.0]]}', ""),
        (b'{"instances": [["a"]]}', ""),
        (b'{"instances": [[null]]}', ""),
        (b'{"instances": [{"nope": [1.0]}]}', ""),
        (b'{"signature_name": "nope", "instances": [[1.0]]}', 'signature name: "nope" not found'),
        (b'{"signature_name": 7, "instances": [[1.0]]}', ""),
    ],
)
async def test_bad_predict_input_is_400_and_other_models_keep_serving(
    rest, publish, body, fragment
):
    await _serve(rest, publish)
    code, data, headers = await rest.call("/v1/models/half_plus_two:predict", body, method="POST")
    assert code == 400, data
    assert set(data) == {"error"} and fragment in data["error"]
    assert "Traceback" not in data["error"]
    assert "X-Model-Version" not in headers
    code, data, _ = await rest.call("/v1/models/multi:predict",
                                    {"signature_name": "scalar", "inputs": 1.0})
    assert (code, data) == (200, {"outputs": 3.0})


@pytest.mark.parametrize(
    "method, path, code",
    [
        ("GET", "/v1/models/half_plus_two:predict", 400),
        ("POST", "/v1/models/half_plus_two", 400),
        ("GET", "/v1/models/half_plus_two/versions/abc", 400),
        ("GET", "/v1/models/half_plus_two/versions/1/labels/x", 400),
        ("POST", "/v1/models/half_plus_two:explain", 400),
        ("GET", "/v1/models/half_plus_two/versions/99999999999999999999999", 400),
        ("DELETE", "/v1/models/half_plus_two", 400),
        ("GET", "/v1/models/half_plus_two/versions/7", 404),
        ("GET", "/v1/models/half_plus_two/versions/7/metadata", 404),
        ("GET", "/nothing/here", 404),
    ],
)
async def test_malformed_routes(rest, publish, method, path, code):
    await _serve(rest, publish)
    got, data, _ = await rest.call(path, b"{}" if method == "POST" else None, method=method)
    assert got == code, data
    assert set(data) == {"error"}


async def test_list_models(rest, publish):
    await _serve(rest, publish)
    code, data, _ = await rest.call("/v1/models")
    assert code == 200
    names = [m["name"] for m in data["models"]]
    assert names == ["half_plus_two", "keras", "multi"]
    assert data["models"][0]["model_version_status"][0]["state"] == "AVAILABLE"


async def test_metadata_of_exported_model(rest, publish):
    await _serve(rest, publish)
    code, data, _ = await rest.call("/v1/models/multi/metadata")
    assert code == 200
    assert data["model_spec"] == {"name": "multi", "signature_name": "", "version": "1"}
    sigs = data["metadata"]["signature_def"]["signature_def"]
    assert set(sigs["serving_default"]["inputs"]) == {"a", "b", "s"}
    assert sigs["serving_default"]["inputs"]["b"]["dtype"] == "DT_INT32"
    assert set(sigs["scalar"]["outputs"]) == {"w"}


ROUTES = [
    ("GET", "/v1/models"),
    ("GET", "/v1/models/half_plus_two"),
    ("GET", "/v1/models/half_plus_two/versions/1"),
    ("GET", "/v1/models/half_plus_two/metadata"),
    ("POST", "/v1/models/half_plus_two:predict"),
    ("POST", "/v1/models/half_plus_two:classify"),
    ("POST", "/v1/models/half_plus_two:regress"),
    ("GET", "/elsewhere"),
]


@pytest.mark.parametrize("method, path", ROUTES)
async def test_every_route_requires_the_login(rest, publish, method, path):
    await _serve(rest, publish)
    body = json.dumps({"instances": [[1.0]]}) if method == "POST" else None
    for headers in ({}, {"Authorization": "token wrong"}):
        code, data, _ = await rest.call(path, body, method=method, headers=headers, auth=False)
        assert code in (401, 403), (path, headers, code)
        assert "error" in data
    # ?token= in the query works like the header.
    code, _, _ = await rest.call(f"{path}?token={rest.token}", body, method=method, auth=False)
    assert code not in (401, 403)
