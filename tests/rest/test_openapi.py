"""The OpenAPI 3.1 document (``jupyter_tfserving/rest/openapi.json``) against the real server.

The document is checked for shape (openapi-spec-validator when it is installed, and structural
checks always), served byte for byte at ``P/api/openapi.json``, covers every route of the
extension's route table (both ways), and every documented operation is exercised on a real server
with a success and an error whose bodies validate against the schema the document declares for
that path, method and status. The last server tests hold the management API to the control plane's
docstrings where label operations meet the repository poller.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from tensorflow_serving.config import model_server_config_pb2
from tornado.routing import PathMatches

from jupyter_tfserving.core.archive import pack_directory
from jupyter_tfserving.rest import handlers as rest_handlers
from jupyter_tfserving.rest.routes import ROUTES
from tests.conftest import testdata_or_skip

DOC_BYTES = resources.files("jupyter_tfserving.rest").joinpath("openapi.json").read_bytes()
DOC: dict[str, Any] = json.loads(DOC_BYTES)
DOC_URI = "urn:jupyter-tfserving:openapi.json"
REGISTRY = Registry().with_resource(
    DOC_URI, Resource.from_contents(DOC, default_specification=DRAFT202012))
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
PREFIX = "tfserving"  # TFServingApp.url_prefix's default, as tests.conftest.RestClient uses
GZIP = {"Content-Type": "application/gzip"}

# (METHOD, path template) -> HTTP statuses seen in answers that validated against the document.
EXERCISED: dict[tuple[str, str], set[int]] = {}
# The tests that feed EXERCISED and passed (the coverage check needs all of them).
FEEDERS_DONE: set[str] = set()
FEEDERS = {"v1", "examples", "management", "jobs", "auth", "shadow", "logging"}


# ------------------------------------------------------------------------------ the document


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(*tokens: str) -> str:
    return "".join("/" + _escape(t) for t in tokens)


def _follow(pointer: str) -> Any:
    node: Any = DOC
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _deref(pointer: str) -> tuple[str, Any]:
    """The object at ``pointer``, following (non-schema) ``$ref`` objects; and its pointer."""
    node = _follow(pointer)
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/") and ref not in seen, ref
        seen.add(ref)
        pointer = ref[1:]
        node = _follow(pointer)
    return pointer, node


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for template, item in DOC["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), template, item[method]


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^{}]+\})", template)
    return re.compile("^" + "".join(
        f"(?P<{p[1:-1]}>[^/:]+)" if p.startswith("{") else re.escape(p) for p in parts) + "$")


TEMPLATES = {t: _template_regex(t) for t in DOC["paths"]}


def find_template(path: str) -> str:
    """The one documented path template a concrete path (query string allowed) matches."""
    path = path.split("?", 1)[0]
    matches = [t for t, rx in TEMPLATES.items() if rx.match(path)]
    assert len(matches) == 1, f"{path} matches documented paths {matches}"
    return matches[0]


def _parameters(template: str, method: str) -> list[dict[str, Any]]:
    item = DOC["paths"][template]
    params = item.get("parameters", []) + item[method.lower()].get("parameters", [])
    return [_follow(p["$ref"][1:]) if "$ref" in p else p for p in params]


def _validate(schema_pointer: str, instance: Any, what: str) -> None:
    validator = Draft202012Validator({"$ref": f"{DOC_URI}#{schema_pointer}"}, registry=REGISTRY)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, (
        f"{what} does not match the document ({schema_pointer}):\n"
        + "\n".join(f"- at {list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5])
        + f"\nbody: {json.dumps(instance)[:1000]}"
    )


def validate_answer(method: str, path: str, status: int, body: Any,
                    headers: dict[str, str]) -> str:
    """Check an answer against the document: the status is documented explicitly for the
    operation the path routes to, the media type is one it declares, the body validates
    against that media type's schema, and the documented headers are there and valid.
    Returns the path template."""
    content_type = headers.get("Content-Type")
    template = find_template(path)
    operation = DOC["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not documented"
    responses = operation["responses"]
    assert str(status) in responses, (
        f"{method} {template} answered {status}, which the document does not list "
        f"({sorted(responses)}); body {body!r:.500}")
    pointer, response = _deref(_pointer("paths", template, method.lower(), "responses",
                                        str(status)))
    media = (content_type or "").split(";")[0].strip()
    assert media in response.get("content", {}), (
        f"{method} {template} {status} answered {content_type!r}; the document declares "
        f"{sorted(response.get('content', {}))}")
    _validate(pointer + _pointer("content", media, "schema"), body,
              f"{method} {path} -> {status}")
    for name in response.get("headers", {}):
        assert name in headers, f"{method} {path} -> {status} lacks the header {name}"
        _validate(pointer + _pointer("headers", name, "schema"), headers[name],
                  f"header {name} of {method} {path} -> {status}")
    return template


def validate_request(method: str, path: str, body: Any) -> None:
    template = find_template(path)
    pointer, _ = _deref(_pointer("paths", template, method.lower(), "requestBody"))
    _validate(pointer + _pointer("content", "application/json", "schema"), body,
              f"request body of {method} {template}")


async def check(rest, method: str, path: str, body: Any = None, *, status: int,
                headers: dict[str, str] | None = None, auth: bool = True) -> Any:
    """Call the server, assert the status, validate the answer against the document and
    record the operation as exercised. JSON bodies of successful calls are validated against
    the documented request schema too. Returns the parsed answer."""
    if body is None and method != "GET":
        body = b""
    if isinstance(body, dict) and 200 <= status < 300:
        validate_request(method, path, body)
    code, data, answer_headers = await rest.call(path, body, method=method, headers=headers,
                                                 auth=auth)
    assert code == status, f"{method} {path}: expected {status}, got {code}: {data!r:.1000}"
    template = validate_answer(method, path, code, data, answer_headers)
    EXERCISED.setdefault((method, template), set()).add(code)
    return data


# ------------------------------------------------------------------------------ shape


def test_document_is_valid_openapi_31():
    assert DOC["openapi"] == "3.1.0"
    assert DOC["servers"][0]["url"] == "/tfserving"
    assert "base_url" in DOC["servers"][0]["description"]
    schemes = DOC["components"]["securitySchemes"]
    assert {(s["type"], s["in"]) for s in schemes.values()} == {
        ("apiKey", "header"), ("apiKey", "query"), ("apiKey", "cookie")}
    assert schemes["tokenHeader"]["name"] == "Authorization"
    assert schemes["tokenQuery"]["name"] == "token"

    # Every $ref resolves, and every schema is a valid 2020-12 schema.
    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(DOC):
        assert ref.startswith("#/"), ref
        _follow(ref[1:])  # raises KeyError when dangling
        REGISTRY.resolver().lookup(f"{DOC_URI}{ref}")
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)

    operation_ids = []
    for method, template, operation in _operations():
        where = f"{method} {template}"
        operation_ids.append(operation["operationId"])
        security = operation.get("security", DOC.get("security"))
        assert security and all(req for req in security), f"{where} has no security"
        assert all(set(req) <= set(schemes) for req in security), where
        responses = operation["responses"]
        successes = [s for s in responses if s.startswith("2")]
        assert len(successes) == 1, f"{where} documents successes {successes}"
        for status, response in responses.items():
            _, response = _deref(_pointer("paths", template, method.lower(), "responses",
                                          status))
            assert response.get("description"), f"{where} {status}"
            content = response.get("content")
            assert content, f"{where} {status} documents no body"
            if status.startswith("2"):
                for media in content.values():
                    schema = media["schema"]
                    assert "$ref" in schema or schema == {"type": "string"}, (
                        f"{where} {status}: put the success schema in components/schemas")
            else:
                assert content == {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}, f"{where} {status}"
        assert {"401", "403"} <= set(responses), f"{where} does not document 401 and 403"
        # Path parameters: exactly the template's, each required.
        names = {p["name"] for p in _parameters(template, method) if p["in"] == "path"}
        assert names == set(re.findall(r"\{([^{}]+)\}", template)), where
        assert all(p["required"] for p in _parameters(template, method) if p["in"] == "path")
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"

    error = DOC["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and error["properties"]["error"]["type"] == "string"
    assert DOC["components"]["schemas"]["ServableState"]["enum"] == [
        "START", "LOADING", "AVAILABLE", "UNLOADING", "END"]

    # TF Serving's three forms of every v1 model route.
    for base in ("/v1/models/{model}", "/v1/models/{model}/versions/{version}",
                 "/v1/models/{model}/labels/{label}"):
        assert "get" in DOC["paths"][base] and "get" in DOC["paths"][base + "/metadata"]
        for verb in ("predict", "classify", "regress"):
            assert "post" in DOC["paths"][f"{base}:{verb}"]


def test_document_passes_openapi_spec_validator():
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(DOC)


def test_schemas_are_strict():
    """Wrong shapes fail: the schemas are not so loose that they accept anything."""
    def fails(name: str, instance: Any) -> bool:
        v = Draft202012Validator({"$ref": f"{DOC_URI}#/components/schemas/{name}"},
                                 registry=REGISTRY)
        return not v.is_valid(instance)

    good_status = {"version": "1", "state": "AVAILABLE",
                   "status": {"error_code": "OK", "error_message": ""}}
    assert not fails("ModelStatusResponse", {"model_version_status": [good_status]})
    assert fails("ModelStatusResponse", {"model_version_status": [{**good_status,
                                                                   "state": "READY"}]})
    assert fails("ModelStatusResponse", {"model_version_status": [{**good_status,
                                                                   "version": 1}]})
    assert fails("ModelStatusResponse", {})
    assert fails("Error", {"message": "x"}) and fails("Error", {"error": 3})
    assert not fails("PredictResponse", {"predictions": [{"a": 1.0, "b": {"b64": "AA=="}}]})
    assert fails("PredictResponse", {"predictions": [1], "outputs": [1]})
    assert fails("PredictResponse", {"predictions": [None]})
    assert fails("PredictResponse", {"result": [1]})
    assert not fails("ClassifyResponse", {"results": [[["a", 0.5], ["", 1]]]})
    assert fails("ClassifyResponse", {"results": [[["a", 0.5, 1]]]})
    assert fails("ClassifyResponse", {"results": [[[0.5, "a"]]]})
    assert fails("RegressResponse", {"results": ["1"]})
    assert fails("ModelDescription", {"name": "m"})


# ------------------------------------------------------------------------------ routes


def _path_rules(router: Any) -> Iterator[tuple[re.Pattern[str], type]]:
    for rule in router.rules:
        if isinstance(rule.matcher, PathMatches):
            yield rule.matcher.regex, rule.target
        elif hasattr(rule.target, "rules"):
            yield from _path_rules(rule.target)


def _sample(template: str) -> str:
    return (template.replace("{model}", "m").replace("{version}", "1")
            .replace("{label}", "stable").replace("{job}", "j1"))


def test_route_table_and_document_agree():
    """Both ways: every row of the route table is a documented operation, and every documented
    operation is a row of the table (same method, same path template)."""
    table = {(r.method, r.path) for r in ROUTES}
    documented = {(method, template) for method, template, _ in _operations()}
    assert table - documented == set(), "routes missing from openapi.json"
    assert documented - table == set(), "documented operations that are not routes"
    assert len(table) == len(ROUTES), "a route is in the table twice"


def test_mounted_routes_are_the_table(jp_serverapp):
    """The server answers each documented operation with the handler built from its row of
    the table (not a catch-all), and that handler answers exactly its rows' methods."""
    base = jp_serverapp.base_url.rstrip("/") + "/" + PREFIX
    app = jp_serverapp.web_app
    rules = [(rx, h) for router in (app.default_router, app.wildcard_router)
             for rx, h in _path_rules(router)
             if isinstance(h, type) and h.__module__.startswith("jupyter_tfserving.")]
    assert rules, "the extension's routes are not in the server's handler table"
    for route in ROUTES:
        concrete = base + _sample(route.path)
        handler = next((h for rx, h in rules if rx.match(concrete)), None)
        assert handler is not None, f"{route.method} {route.path}: no route of the extension"
        assert issubclass(handler, rest_handlers.RoutedHandler), (
            f"{route.method} {route.path} falls through to {handler.__name__}")
        assert handler.routes.get(route.method) == route, (route, handler.routes)
        assert issubclass(handler, route.family)
        assert callable(getattr(handler, route.operation))


async def test_served_document_is_the_packaged_file(rest):
    code, _, headers = await rest.call("/api/openapi.json")
    assert code == 200
    response = await rest._client.fetch(rest.prefix + "/api/openapi.json", headers={
        "Authorization": f"token {rest.token}"})
    assert response.body == DOC_BYTES
    assert headers["Content-Type"].startswith("application/json")
    data = await check(rest, "GET", "/api/openapi.json", status=200)
    assert data == DOC


# ------------------------------------------------------------------------------ v1


async def test_v1_and_monitoring_answers_match_the_document(rest, publish):
    publish("half_plus_two", 1)
    publish("multi", 1)
    await rest.wait_for("half_plus_two", 1)
    await rest.wait_for("multi", 1)
    await check(rest, "PUT", "/api/models/multi/labels/stable", {"version": 1}, status=200)
    models = await check(rest, "GET", "/v1/models", status=200)
    assert [m["name"] for m in models["models"]] == ["half_plus_two", "multi"]

    for m, form in (("half_plus_two", ""), ("multi", "/versions/1"), ("multi", "/labels/stable")):
        base = f"/v1/models/{m}{form}"
        status = await check(rest, "GET", base, status=200)
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        meta = await check(rest, "GET", base + "/metadata", status=200)
        assert "serving_default" in meta["metadata"]["signature_def"]["signature_def"]
    await check(rest, "GET", "/v1/models/nope", status=404)
    await check(rest, "GET", "/v1/models/multi/versions/7", status=404)
    await check(rest, "GET", "/v1/models/multi/versions/99999999999999999999", status=400)
    await check(rest, "GET", "/v1/models/multi/labels/nope", status=400)
    await check(rest, "GET", "/v1/models/nope/metadata", status=404)
    await check(rest, "GET", "/v1/models/multi/versions/7/metadata", status=404)
    await check(rest, "GET", "/v1/models/multi/labels/nope/metadata", status=400)

    data = await check(rest, "POST", "/v1/models/half_plus_two:predict",
                       {"instances": [[1.0], [2.0]]}, status=200)
    assert data == {"predictions": [[2.5], [3.0]]}
    data = await check(rest, "POST", "/v1/models/half_plus_two:predict",
                       {"inputs": {"x": [[0.1]]}}, status=200)
    assert data == {"outputs": [[2.05]]}
    data = await check(rest, "POST", "/v1/models/multi/versions/1:predict", {"instances": [
        {"a": [1.0, 2.0], "b": 3, "s": "abc"}, {"a": [0.5, 0.5], "b": 1, "s": {"b64": "AP8="}}]},
        status=200)
    assert data["predictions"][1]["echo_bytes"] == {"b64": "AP8="}
    data = await check(rest, "POST", "/v1/models/multi/labels/stable:predict",
                       {"inputs": {"a": [[1.0, 1.0]], "b": [1], "s": ["x"]}}, status=200)
    assert data["outputs"]["upper"] == ["X"]
    data = await check(rest, "POST", "/v1/models/multi:predict",
                       {"signature_name": "scalar", "inputs": 2.0}, status=200)
    assert data == {"outputs": 6.0}
    await check(rest, "POST", "/v1/models/half_plus_two:predict", b"{not json", status=400)
    await check(rest, "POST", "/v1/models/half_plus_two:predict", {"instances": [["x"]]},
                status=400)
    await check(rest, "POST", "/v1/models/nope:predict", {"instances": [[1.0]]}, status=404)
    await check(rest, "POST", "/v1/models/multi/versions/7:predict", {"instances": [[1.0]]},
                status=404)
    await check(rest, "POST", "/v1/models/multi/labels/nope:predict", {"instances": [[1.0]]},
                status=400)

    text = await check(rest, "GET", "/monitoring/prometheus/metrics", status=200)
    assert ":tensorflow:serving:request_count" in text
    stats = await check(rest, "GET", "/api/stats", status=200)
    assert {m["name"] for m in stats["models"]} == {"half_plus_two", "multi"}
    assert any(v["request_count"] > 0 and v["latency_us"]["p50"] is not None
               for m in stats["models"] for v in m["versions"])
    FEEDERS_DONE.add("v1")


async def test_classify_and_regress_answers_match_the_document(rest):
    testdata = testdata_or_skip()
    version_dir = testdata / "saved_model_half_plus_two_cpu" / "00000123"
    published = await check(rest, "POST", "/api/models/default/versions?version=123",
                            pack_directory(str(version_dir)), headers=GZIP, status=201)
    assert (published["name"], published["version"]) == ("default", 123)
    await rest.wait_for("default", 123)
    await check(rest, "PUT", "/api/models/default/labels/stable", {"version": "123"}, status=200)

    classify = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}, {"x": [1.0]}]}
    regress = {"signature_name": "regress_x_to_y2", "context": {"x": 4.0},
               "examples": [{"x": 2.0}, {"other": 1}]}
    for form in ("", "/versions/123", "/labels/stable"):
        data = await check(rest, "POST", f"/v1/models/default{form}:classify", classify,
                           status=200)
        assert data == {"results": [[["", 3.0]], [["", 2.5]]]}
        data = await check(rest, "POST", f"/v1/models/default{form}:regress", regress,
                           status=200)
        assert data == {"results": [4.0, 5.0]}
    # A predict signature is neither a classification nor a regression signature.
    await check(rest, "POST", "/v1/models/default:classify", {"examples": [{"x": 2.0}]},
                status=400)
    await check(rest, "POST", "/v1/models/default:regress", {"examples": []}, status=400)
    await check(rest, "POST", "/v1/models/default/versions/9:classify", classify, status=404)
    await check(rest, "POST", "/v1/models/default/versions/9:regress", regress, status=404)
    await check(rest, "POST", "/v1/models/default/labels/nope:classify", classify, status=400)
    await check(rest, "POST", "/v1/models/default/labels/nope:regress", regress, status=400)
    FEEDERS_DONE.add("examples")


# ------------------------------------------------------------------------------ management


async def _wait_state(rest, model: str, version: int, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        code, data, _ = await rest.call(f"/api/models/{model}")
        assert code == 200, data
        entry = next((v for v in data["versions"] if v["version"] == version), None)
        if entry is not None and entry["state"] == state:
            return data
        assert time.monotonic() < deadline, f"{model}/{version} not {state}: {data}"
        await asyncio.sleep(0.05)


# The repository is scanned once at start and then by each operation (ControlPlane.reload):
# without the poller thread, which races label operations (see the tests below), the answers
# are deterministic.
NO_POLLER = pytest.mark.parametrize("tfserving_config", [{"file_system_poll_wait_seconds": 0}])


@NO_POLLER
async def test_management_answers_match_the_document(tfserving_config, rest,
                                                     exported_models: Path):
    name = "half_plus_two"
    api = f"/api/models/{name}"
    published = await check(rest, "POST", f"{api}/versions",
                            pack_directory(str(exported_models / name / "1")), headers=GZIP,
                            status=201)
    assert (published["name"], published["version"]) == (name, 1)
    await rest.wait_for(name, 1)

    listed = await check(rest, "GET", "/api/models", status=200)
    assert [m["name"] for m in listed["models"]] == [name]
    described = await check(rest, "GET", api, status=200)
    assert described["versions"][0]["version"] == 1
    assert described["traffic"] == {"1": 1.0} and described["canary"] is None
    await check(rest, "GET", "/api/models/nope", status=404)

    # Labels.
    described = await check(rest, "PUT", f"{api}/labels/stable", {"version": 1}, status=200)
    assert described["labels"] == {"stable": 1}
    assert described["versions"][0]["labels"] == ["stable"]
    await check(rest, "PUT", f"{api}/labels/stable", {"version": 5}, status=400)
    await check(rest, "PUT", f"{api}/labels/stable", {"version": True}, status=400)
    await check(rest, "PUT", f"{api}/labels/stable", b"not json", status=400)
    await check(rest, "PUT", f"{api}/labels/bad!label", {"version": 1}, status=400)
    await check(rest, "PUT", "/api/models/nope/labels/stable", {"version": 1}, status=404)

    # Publishing.
    archive = pack_directory(str(exported_models / name / "2"))
    published = await check(rest, "POST", f"{api}/versions", archive, headers=GZIP, status=201)
    assert (published["name"], published["version"]) == (name, 2)
    assert published["model"]["name"] == name
    await check(rest, "POST", f"{api}/versions?version=2", archive, headers=GZIP, status=409)
    await check(rest, "POST", f"{api}/versions?version=x", archive, headers=GZIP, status=400)
    await check(rest, "POST", f"{api}/versions", b"", headers=GZIP, status=400)
    await check(rest, "POST", f"{api}/versions", b"not a tar archive", headers=GZIP,
                status=400)
    await check(rest, "POST", f"{api}/versions?rollout=sideways", archive, headers=GZIP,
                status=400)
    await check(rest, "POST", f"{api}/versions?rollout=canary&weight=x", archive,
                headers=GZIP, status=400)
    await rest.wait_for(name, 2)

    # Canary, promote, rollback. The stable label keeps version 1 loaded beside 2.
    await check(rest, "POST", f"{api}:canary", {"weight": 2}, status=400)
    await check(rest, "POST", f"{api}:canary", {"version": 1}, status=400)
    await check(rest, "POST", f"{api}:canary", {"weight": 0.5, "version": "x"}, status=400)
    await check(rest, "POST", "/api/models/nope:canary", {"weight": 0.5}, status=404)
    described = await check(rest, "POST", f"{api}:canary", {"weight": 0.25}, status=200)
    assert described["canary"] == {"version": 2, "weight": 0.25}
    assert described["labels"] == {"canary": 2, "stable": 1}
    assert described["traffic"] == {"1": 0.75, "2": 0.25}
    await check(rest, "POST", f"/v1/models/{name}/labels/canary:predict",
                {"instances": [[1.0]]}, status=200)

    await check(rest, "POST", f"{api}/versions/2:unload", status=400)  # it carries canary
    await check(rest, "POST", f"{api}/versions/99:unload", status=404)

    described = await check(rest, "POST", f"{api}:promote", status=200)
    assert described["labels"] == {"stable": 2} and described["previous_stable"] == 1
    assert described["canary"] is None and described["traffic"] == {"2": 1.0}
    await check(rest, "POST", f"{api}:promote", status=400)  # no canary any more
    await check(rest, "POST", "/api/models/nope:promote", status=404)
    # The old stable stays loaded for rollback (ControlPlane.promote's docstring).
    described = await check(rest, "GET", api, status=200)
    assert {v["version"]: v["state"] for v in described["versions"]}[1] == "AVAILABLE"

    described = await check(rest, "POST", f"{api}:rollback", status=200)
    assert described["labels"] == {"stable": 1} and described["previous_stable"] is None
    assert described["traffic"] == {"1": 1.0}
    await check(rest, "POST", f"{api}:rollback", status=400)  # nothing left to roll back
    await check(rest, "POST", "/api/models/nope:rollback", status=404)
    # Rollback during a canary ends it; stable keeps all the traffic.
    described = await check(rest, "POST", f"{api}:canary", {"weight": 0.5, "version": 2},
                            status=200)
    assert described["labels"] == {"canary": 2, "stable": 1}
    described = await check(rest, "POST", f"{api}:rollback", status=200)
    assert described["labels"] == {"stable": 1} and described["canary"] is None
    assert described["traffic"] == {"1": 1.0}
    # Promote names a version (serve() without a canary): it becomes stable directly.
    await check(rest, "POST", f"{api}:promote", {"version": 99}, status=400)
    described = await check(rest, "POST", f"{api}:promote", {"version": 2}, status=200)
    assert described["labels"] == {"stable": 2} and described["previous_stable"] == 1
    described = await check(rest, "POST", f"{api}:rollback", status=200)
    assert described["labels"] == {"stable": 1} and described["previous_stable"] is None

    described = await check(rest, "DELETE", f"{api}/labels/stable", status=200)
    assert described["labels"] == {}
    await check(rest, "DELETE", f"{api}/labels/stable", status=404)
    await check(rest, "DELETE", f"{api}/labels/bad!label", status=400)
    await check(rest, "DELETE", "/api/models/nope/labels/stable", status=404)

    # Unload and load: with latest(1), version 2 serves; unloading it is remembered.
    await _wait_state(rest, name, 2, "AVAILABLE")
    described = await check(rest, "POST", f"{api}/versions/2:unload", status=200)
    assert described["unloaded"] == [2]
    assert {v["version"]: v["unloaded"] for v in described["versions"]}[2] is True
    await _wait_state(rest, name, 2, "END")
    await check(rest, "POST", f"{api}/versions/2:load", b"", status=200)
    await check(rest, "POST", f"{api}/versions/2:load", b"", status=400)  # not unloaded
    await check(rest, "POST", "/api/models/nope/versions/1:load", status=404)
    described = await _wait_state(rest, name, 2, "AVAILABLE")
    assert described["unloaded"] == []

    handoff = await check(rest, "GET", "/api/config/tfserving", status=200)
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(handoff["model_config"], config)
    (entry,) = config.model_config_list.config
    assert entry.name == name and handoff["skipped"] == []
    assert set(entry.model_version_policy.specific.versions) == {
        v["version"] for v in described["versions"] if v["state"] == "AVAILABLE"}
    assert set(entry.version_labels.values()) <= set(entry.model_version_policy.specific.versions)

    reloaded = await check(rest, "POST", "/api/config:reload", status=200)
    assert reloaded["config_error"] is None
    assert reloaded["config_file"] and reloaded["config_file"].endswith("models.config")
    assert [m["name"] for m in reloaded["models"]] == [name]
    # A config file that does not parse: its error is in the answer, the last good one is used.
    Path(reloaded["config_file"]).write_text("model_config_list { garbage")
    reloaded = await check(rest, "POST", "/api/config:reload", status=200)
    assert isinstance(reloaded["config_error"], str)
    assert [m["name"] for m in reloaded["models"]] == [name]
    FEEDERS_DONE.add("management")


async def test_job_answers_match_the_document(rest, publish, jp_root_dir: Path):
    import io

    import numpy as np

    publish("half_plus_two", 1)
    await rest.wait_for("half_plus_two", 1)
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6, dtype=np.float32).reshape(-1, 1))
    stored = await check(rest, "POST", "/api/datasets?format=npy", buffer.getvalue(),
                         status=201)
    await check(rest, "POST", "/api/datasets?format=npz", b"not an npz", status=400)
    body = {"id": "j1", "model": "half_plus_two", "inputs": [stored["path"]], "output": "o",
            "batch_size": 2, "rows_per_shard": 3}
    started = await check(rest, "POST", "/api/jobs", body, status=201)
    assert started["id"] == "j1" and started["shards_total"] == 2
    await check(rest, "POST", "/api/jobs", {**body, "id": None, "model": "nope"}, status=404)
    await check(rest, "POST", "/api/jobs", {"model": "half_plus_two"}, status=400)
    while (job := await check(rest, "GET", "/api/jobs/j1", status=200))["state"] == "running":
        await asyncio.sleep(0.05)
    assert job["state"] == "completed" and job["rows_done"] == 6
    listed = await check(rest, "GET", "/api/jobs", status=200)
    assert [j["id"] for j in listed["jobs"]] == ["j1"]
    await check(rest, "GET", "/api/jobs/nope", status=404)
    resumed = await check(rest, "POST", "/api/jobs/j1:resume", status=200)
    assert resumed["id"] == "j1"
    await check(rest, "POST", "/api/jobs/nope:resume", status=404)
    while (await check(rest, "GET", "/api/jobs/j1", status=200))["state"] == "running":
        await asyncio.sleep(0.05)
    await check(rest, "DELETE", "/api/jobs/j1", status=200)  # ended: forgotten
    await check(rest, "DELETE", "/api/jobs/j1", status=404)
    FEEDERS_DONE.add("jobs")


async def test_shadow_answers_match_the_document(rest, publish, exported_models: Path):
    name, api = await _stable_1_and_version_2(rest, publish, exported_models)
    await check(rest, "GET", f"{api}/shadow", status=404)  # it never had one
    await check(rest, "POST", f"{api}:shadow", {"fraction": 0}, status=404)
    await check(rest, "POST", f"{api}:shadow", {"version": 1, "fraction": 1.0},
                status=400)  # version 1 serves
    await check(rest, "POST", f"{api}:shadow", {"version": 2, "fraction": 1.5}, status=400)
    await check(rest, "POST", f"{api}:shadow", {"version": 2}, status=400)
    await check(rest, "POST", f"{api}:shadow", {"version": 9, "fraction": 1}, status=400)
    await check(rest, "POST", f"{api}:shadow", b"not json", status=400)
    await check(rest, "POST", "/api/models/nope:shadow", {"version": 1, "fraction": 1},
                status=404)
    report = await check(rest, "POST", f"{api}:shadow", {"version": 2, "fraction": 1.0},
                         status=200)
    assert report["active"] and report["candidate_version"] == 2 and report["pairs"] == 0
    for x in (1.0, 2.0, 3.0):
        await check(rest, "POST", f"/v1/models/{name}:predict", {"instances": [[x]]},
                    status=200)
    deadline = time.monotonic() + 30
    while (report := await check(rest, "GET", f"{api}/shadow", status=200))["pairs"] < 3:
        assert time.monotonic() < deadline, report
        await asyncio.sleep(0.05)
    # Versions 1 and 2 compute y = x / 2 + 2 in two ways: the same answers.
    assert report["agreement"] == 1.0 and report["outputs"]["y"]["max_abs_diff"] == 0.0
    stats = await check(rest, "GET", "/api/stats", status=200)
    assert {m["name"]: m["shadow"]["pairs"] for m in stats["models"]} == {name: 3}
    report = await check(rest, "POST", f"{api}:shadow", {"fraction": 0}, status=200)
    assert not report["active"] and report["end_reason"] == "stopped"
    await check(rest, "GET", "/api/models/nope/shadow", status=404)
    FEEDERS_DONE.add("shadow")


async def test_request_log_answers_match_the_document(rest, publish):
    publish("half_plus_two", 1)
    await rest.wait_for("half_plus_two", 1)
    api = "/api/models/half_plus_two"
    stats = await check(rest, "GET", "/api/stats", status=200)
    assert stats["models"][0]["logging"] is None  # it never logged
    status = await check(rest, "POST", f"{api}:logging", {"sampling_rate": 1.0}, status=200)
    assert status["filename_prefix"] == ".logs/half_plus_two/requests"
    await check(rest, "POST", f"{api}:logging", {"sampling_rate": 2}, status=400)
    await check(rest, "POST", f"{api}:logging", {}, status=400)
    await check(rest, "POST", f"{api}:logging", {"sampling_rate": 1, "filename_prefix": "/x"},
                status=400)
    await check(rest, "POST", f"{api}:logging", {"sampling_rate": 1, "filename_prefix": "../x"},
                status=403)
    await check(rest, "POST", "/api/models/nope:logging", {"sampling_rate": 1}, status=404)
    await check(rest, "POST", "/v1/models/half_plus_two:predict", {"instances": [[1.0]]},
                status=200)
    data = await check(rest, "GET", f"{api}/requests?n=5", status=200)
    assert [r["inputs"] for r in data["requests"]] == [{"x": [[1.0]]}]
    await check(rest, "GET", f"{api}/requests?n=0", status=400)
    await check(rest, "GET", f"{api}/requests?format=csv", status=400)
    await check(rest, "GET", "/api/models/nope/requests", status=404)
    path = f"{api}/requests?format=tfrecord"
    response = await rest._client.fetch(rest.prefix + path,
                                        headers={"Authorization": f"token {rest.token}"})
    assert response.body  # one record, framed
    template = validate_answer("GET", path, response.code, "(TFRecord bytes)",
                               dict(response.headers))
    EXERCISED.setdefault(("GET", template), set()).add(response.code)
    stats = await check(rest, "GET", "/api/stats", status=200)
    assert stats["models"][0]["logging"]["logged"] == 1
    FEEDERS_DONE.add("logging")


async def _stable_1_and_version_2(rest, publish, exported_models: Path) -> tuple[str, str]:
    """half_plus_two with version 1 labelled stable and version 2 uploaded through the API,
    both AVAILABLE; returns the model's name and its management path."""
    name = "half_plus_two"
    api = f"/api/models/{name}"
    publish(name, 1)
    await rest.wait_for(name, 1)
    await check(rest, "PUT", f"{api}/labels/stable", {"version": 1}, status=200)
    await check(rest, "POST", f"{api}/versions", pack_directory(str(exported_models / name / "2")),
                headers=GZIP, status=201)
    await rest.wait_for(name, 2)
    return name, api


async def test_label_removal_is_not_undone_by_the_repository_poller(rest, publish,
                                                                     exported_models: Path):
    """ControlPlane.remove_label: the label is gone from the answer (and stays gone). Label
    operations right after one another must not race the poller applying the config file
    written by the previous one."""
    name, api = await _stable_1_and_version_2(rest, publish, exported_models)
    stale = None
    deadline = time.monotonic() + 8
    attempt = 0
    while stale is None and time.monotonic() < deadline:
        attempt += 1
        described = await check(rest, "POST", f"{api}:canary", {"weight": 0.5}, status=200)
        if described["labels"] != {"canary": 2, "stable": 1}:
            stale = ("POST :canary", described)
            break
        described = await check(rest, "DELETE", f"{api}/labels/canary", status=200)
        if described["labels"] != {"stable": 1} or described["canary"] is not None:
            stale = ("DELETE labels/canary", described)
    if stale is None:
        return
    # The next label operation writes what the poller put back to models.config for good.
    await check(rest, "PUT", f"{api}/labels/other", {"version": 1}, status=200)
    await asyncio.sleep(0.5)
    later = await check(rest, "GET", api, status=200)
    what, answer = stale
    raise AssertionError(
        f"{what} (attempt {attempt}, alternating POST {api}:canary and DELETE "
        f"{api}/labels/canary) answered 200 with labels={answer['labels']} "
        f"canary={answer['canary']}: the repository poller applied labels it had read from "
        "models.config before this operation changed them. After a PUT of another label and "
        f"0.5 s, the model's labels are {later['labels']}.")


async def test_rollback_does_not_unload_the_version_it_rolls_back_to(rest, publish,
                                                                    exported_models: Path):
    """ControlPlane.rollback: with no canary, the previous stable version (kept loaded since
    :promote) becomes stable again and takes all the traffic. rollback clears the pin
    (previous_stable) in memory before it writes the new stable label to models.config; a
    repository scan in between must not see the old label without the pin and unload that
    version."""
    name, api = await _stable_1_and_version_2(rest, publish, exported_models)
    deadline = time.monotonic() + 8
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        # Both versions AVAILABLE, stable on 1 (the label race above may disturb a cycle).
        described = await _wait_state(rest, name, 1, "AVAILABLE")
        if described["labels"] != {"stable": 1}:
            await asyncio.sleep(0.2)
            continue
        code, described, _ = await rest.call(f"{api}:canary", {"weight": 0.5, "version": 2})
        if code != 200:
            continue
        code, described, _ = await rest.call(f"{api}:promote", b"", method="POST")
        if code != 200 or described["previous_stable"] != 1:
            continue
        described = await check(rest, "POST", f"{api}:rollback", status=200)
        states = {v["version"]: v["state"] for v in described["versions"]}
        assert described["labels"] == {"stable": 1} and described["traffic"] == {"1": 1.0}, (
            f"POST {api}:rollback (attempt {attempt}) answered 200 with "
            f"labels={described['labels']} traffic={described['traffic']} and version "
            f"states {states}: a repository scan between clearing previous_stable and writing "
            "the stable label unloaded the version rolled back to.")


# ------------------------------------------------------------------------------ login


async def test_every_operation_requires_the_login(rest):
    """Every documented operation answers 403 ({"error": ...}) without a login or with a
    wrong token, and the ?token= query parameter is a login too."""
    for method, template, _ in _operations():
        path = _sample(template)
        body = None if method == "GET" else b"{}"
        await check(rest, method, path, body, status=403, auth=False)
        await check(rest, method, path, body, status=403, auth=False,
                    headers={"Authorization": "token wrong"})
    await check(rest, "GET", f"/v1/models?token={rest.token}", status=200, auth=False)
    await check(rest, "GET", f"/api/models?token={rest.token}", status=200, auth=False)
    FEEDERS_DONE.add("auth")


def test_every_operation_was_exercised():
    """Each documented operation answered at least one success and one error above, all of
    which validated against the document."""
    if FEEDERS_DONE != FEEDERS:
        pytest.skip(f"needs the tests that exercise the server to run and pass "
                    f"(missing: {sorted(FEEDERS - FEEDERS_DONE)})")
    for method, template, operation in _operations():
        statuses = EXERCISED.get((method, template), set())
        success = {int(s) for s in operation["responses"] if s.startswith("2")}
        assert statuses & success, f"{method} {template}: no success exercised"
        assert any(s >= 400 for s in statuses), f"{method} {template}: no error exercised"
