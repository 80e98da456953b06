"""End to end against a real Jupyter server: TF Serving's own test models, answering the
requests in shared/testdata/tfserving/README.md exactly as TF Serving does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TESTDATA, testdata_or_skip

CONFIG = """
model_config_list {
  config { name: "default" base_path: "%(d)s/saved_model_half_plus_two_cpu"
           model_platform: "tensorflow" }
  config { name: "half_plus_three" base_path: "%(d)s/saved_model_half_plus_three"
           model_platform: "tensorflow" }
  config { name: "counter" base_path: "%(d)s/saved_model_counter" model_platform: "tensorflow" }
  config { name: "tf2" base_path: "%(d)s/saved_model_half_plus_two_tf2_cpu"
           model_platform: "tensorflow" }
  config { name: "matrix" base_path: "%(d)s/matrix_half_plus_two" model_platform: "tensorflow" }
  config { name: "with_config"
           base_path: "%(d)s/saved_model_half_plus_two_cpu_with_saved_model_config"
           model_platform: "tensorflow" }
  config {
    name: "saved_model_half_plus_two_2_versions"
    base_path: "%(d)s/saved_model_half_plus_two_2_versions"
    model_platform: "tensorflow"
    model_version_policy { all {} }
    version_labels { key: "stable" value: 123 }
    version_labels { key: "canary" value: 124 }
  }
  config { name: "bad" base_path: "%(d)s/bad_half_plus_two" model_platform: "tensorflow" }
}
"""

MODELS = ["default", "half_plus_three", "counter", "tf2", "matrix", "with_config"]


@pytest.fixture
def tfserving_config(tmp_path: Path) -> dict:
    testdata_or_skip()
    config = tmp_path / "models.config"
    config.write_text(CONFIG % {"d": TESTDATA})
    return {"model_config_file": str(config)}


async def _serve(rest) -> None:
    for name in MODELS:
        await rest.wait_for(name, 1 if name == "matrix" else 123)
    await rest.wait_for("saved_model_half_plus_two_2_versions", 124)
    await rest.wait_for("saved_model_half_plus_two_2_versions", 123)
    await rest.wait_for("bad", 123, state="END")


async def test_readme_predict_pairs(rest):
    await _serve(rest)
    assert await _post(rest, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]}) == (
        200, {"predictions": [3.0, 3.5, 4.0]})
    assert await _post(rest, "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]}) == (
        200, {"outputs": [3.0, 3.5, 4.0]})
    assert await _post(rest, "/v1/models/default:predict", {"instances": [1.0, 2.0, 5.0]}) == (
        200, {"predictions": [2.5, 3.0, 4.5]})
    assert await _post(rest, "/v1/models/half_plus_three:predict",
                       {"instances": [1.0, 2.0, 5.0]}) == (200, {"predictions": [3.5, 4.0, 5.5]})
    code, data = await _post(rest, "/v1/models/with_config:predict", {"instances": [1.0, 2.0, 5.0]})
    assert (code, data) == (200, {"predictions": [2.5, 3.0, 4.5]})
    # The TF2 export's x has the fixed shape [1].
    code, data = await _post(rest, "/v1/models/tf2:predict", {"inputs": {"x": [5.0]}})
    assert code == 200, data
    assert _flat(data["outputs"]) == [4.5]


async def test_readme_classify_and_regress(rest):
    await _serve(rest)
    assert await _post(rest, "/v1/models/default:classify",
                       {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}) == (
        200, {"results": [[["", 3.0]]]})
    assert await _post(rest, "/v1/models/default:regress",
                       {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}) == (
        200, {"results": [3.0]})
    # y2 = 0.5 x + 3; the context's x reaches the examples that have none of their own.
    assert await _post(rest, "/v1/models/default:regress",
                       {"signature_name": "regress_x_to_y2", "context": {"x": 4.0},
                        "examples": [{"x": 2.0}, {"other": 1}]}) == (200, {"results": [4.0, 5.0]})
    # A predict signature is not a regression signature.
    code, data = await _post(rest, "/v1/models/default:regress", {"examples": [{"x": 2.0}]})
    assert code == 400 and "tensorflow/serving/regress" in data["error"]


async def test_readme_status_and_metadata(rest):
    await _serve(rest)
    code, data, _ = await rest.call("/v1/models/default")
    ok = {"error_code": "OK", "error_message": ""}
    assert (code, data) == (200, {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": ok}
    ]})
    code, data, _ = await rest.call("/v1/models/default/metadata")
    assert code == 200
    assert data == json.loads((TESTDATA / "half_plus_two_model_metadata.json").read_text())
    code, data, _ = await rest.call(
        "/v1/models/saved_model_half_plus_two_2_versions/versions/123/metadata"
    )
    assert code == 200
    assert data == json.loads(
        (TESTDATA / "saved_model_half_plus_two_2_versions_metadata.json").read_text())


async def test_readme_error_answers(rest):
    await _serve(rest)
    assert await _post(rest, "/v1/models/half:predict", {"instances": [1.0]}) == (
        404, {"error": "Servable not found for request: Latest(half)"})
    assert await _post(rest, "/v1/models/default/versions/99:predict", {"instances": [1.0]}) == (
        404, {"error": "Servable not found for request: Specific(default, 99)"})
    code, data, _ = await rest.call("/v1/models/foo")
    assert (code, data) == (404, {"error": "Could not find any versions of model foo"})
    assert await _post(rest, "/v1/models/saved_model_half_plus_two_2_versions/labels/X:predict",
                       {"instances": [1.0]}) == (
        400, {"error": "Unrecognized servable version label: X"})
    code, data, _ = await rest.call("/v1/models/default:predict", b"", method="POST")
    assert code == 400 and data["error"].startswith("JSON Parse error")


async def test_versions_and_labels_routes(rest):
    await _serve(rest)
    base = "/v1/models/saved_model_half_plus_two_2_versions"
    for suffix, version in (("/versions/123", "123"), ("/versions/124", "124"),
                            ("/labels/stable", "123"), ("/labels/canary", "124"),
                            ("", "123")):  # with a `stable` label, unversioned requests go there
        code, data, headers = await rest.call(f"{base}{suffix}:predict", {"instances": [1.0]})
        assert (code, data) == (200, {"predictions": [2.5]}), suffix
        assert headers["X-Model-Version"] == version, suffix
        code, data, _ = await rest.call(f"{base}{suffix}")
        assert code == 200
        if suffix:
            assert [s["version"] for s in data["model_version_status"]] == [version]
        else:
            assert [s["version"] for s in data["model_version_status"]] == ["124", "123"]
    code, data, _ = await rest.call(f"{base}/labels/nope")
    assert code == 400


async def test_counter_is_stateful(rest):
    await _serve(rest)
    await _post(rest, "/v1/models/counter:predict",
                {"signature_name": "reset_counter", "inputs": {}})
    for expected in (1.0, 2.0):
        code, data = await _post(rest, "/v1/models/counter:predict",
                                 {"signature_name": "incr_counter", "inputs": {}})
        assert code == 200, data
        assert _flat(data["outputs"]) == [expected]
    code, data = await _post(rest, "/v1/models/counter:predict",
                             {"signature_name": "get_counter", "inputs": {}})
    assert code == 200 and _flat(data["outputs"]) == [2.0]


async def test_matrix_model(rest):
    await _serve(rest)
    x = [[[float(i + 3 * j) for i in range(3)] for j in range(3)]]
    code, data = await _post(rest, "/v1/models/matrix:predict", {"instances": x})
    assert code == 200, data
    assert data["predictions"] == [[[0.5 * v + 2 for v in row] for row in x[0]]]


async def test_bad_model_is_end_with_error_and_others_serve(rest):
    await _serve(rest)
    code, data, _ = await rest.call("/v1/models/bad")
    assert code == 200
    [entry] = data["model_version_status"]
    assert entry["state"] == "END"
    assert entry["status"]["error_code"] != "OK" and entry["status"]["error_message"]
    assert await _post(rest, "/v1/models/default:predict", {"instances": [2.0]}) == (
        200, {"predictions": [3.0]})


@pytest.fixture
def placeholder_env(monkeypatch):
    testdata_or_skip()
    monkeypatch.setenv("TEST_HALF_PLUS_TWO_DIR", str(TESTDATA / "saved_model_half_plus_two_cpu"))
    monkeypatch.setenv("TEST_HALF_PLUS_THREE_DIR", str(TESTDATA / "saved_model_half_plus_three"))


@pytest.mark.parametrize(
    "tfserving_config", [{"model_config_file": str(TESTDATA / "good_model_config.txt")}]
)
async def test_good_model_config_with_env_placeholders(placeholder_env, rest):
    # TF Serving's own test config names its base paths with ${VAR} placeholders.
    await rest.wait_for("half_plus_two", 123)
    await rest.wait_for("half_plus_three", 123)
    assert await _post(rest, "/v1/models/half_plus_three:predict", {"instances": [1.0]}) == (
        200, {"predictions": [3.5]})
    assert await _post(rest, "/v1/models/half_plus_two:predict", {"instances": [1.0]}) == (
        200, {"predictions": [2.5]})


async def _post(rest, path: str, body: dict) -> tuple[int, object]:
    code, data, _ = await rest.call(path, body)
    return code, data


def _flat(value) -> list:
    out: list = []
    stack = [value]
    while stack:
        v = stack.pop(0)
        if isinstance(v, list):
            stack[0:0] = v
        else:
            out.append(v)
    return out
