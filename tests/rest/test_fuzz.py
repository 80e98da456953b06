"""Property-based fuzzing of every route against a real server.

Hypothesis sends arbitrary requests to every route of the extension: the v1 status, metadata,
predict, classify and regress routes in all three forms (``/v1/models/{m}``,
``.../versions/{v}``, ``.../labels/{l}``), the management routes, Prometheus, stats and the
OpenAPI document, with arbitrary JSON values, JSON-shaped envelopes and arbitrary bytes as
bodies, arbitrary path segments (``..``, ``%2e%2e``, bad escapes, unicode, very long ones),
arbitrary methods and query strings. Every answer must be:

- no 5xx except the documented 503 (queue full) and 504 (deadline);
- for an error, exactly ``{"error": str}``, with no traceback nor a file path of the server;

and afterwards a model that the fuzzed management calls never target still answers correctly.

When schemathesis is installed, its cases generated from the project's OpenAPI document
(``jupyter_tfserving/rest/openapi.json``, served at ``P/api/openapi.json``) run against the same
kind of server, checking the same and that status codes, content types, headers and bodies
conform to the document.

The server runs on pytest-jupyter's event loop; the test awaits a worker thread in which
hypothesis runs a plain ``@given`` function whose requests go back to that loop with
``asyncio.run_coroutine_threadsafe`` (schemathesis sends them with requests, to the port).

The default run is small (a few dozen examples per property). For a longer one set
``JTFS_FUZZ_EXAMPLES=N``: N examples for each property, e.g.
``JTFS_FUZZ_EXAMPLES=2000 pytest tests/rest/test_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import jupyter_tfserving

EXAMPLES = int(os.environ.get("JTFS_FUZZ_EXAMPLES", "0") or 0)
SENTINEL = "sentinel"
CALL_TIMEOUT = 120
PACKAGE_DIR = str(Path(jupyter_tfserving.__file__).resolve().parent)
# Text that must never reach a client unless the client sent it first.
LEAKS = ("Traceback", 'File "', PACKAGE_DIR, sys.prefix, "site-packages")
ALLOWED_5XX = {503, 504}


def fuzz_settings(default: int) -> settings:
    return settings(max_examples=EXAMPLES or default, deadline=None,
                    suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------ strategies

SPECIAL_SEGMENTS = [
    "..", ".", "%2e%2e", "%2E%2E%2F", "%2F", "%00", "%ff", "%", "%zz", "~", "a:b", ":predict",
    "models", "half_plus_two", "multi", SENTINEL, "1", "0", "-1", "99999999999999999999999",
    "versions", "labels", "metadata", "stable", "canary", "%E2%80%AE", "%D9%A1", "x" * 3000,
]
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
SEGMENTS = st.one_of(
    st.sampled_from(SPECIAL_SEGMENTS),
    TEXT.map(lambda s: quote(s, safe="")),
    TEXT.map(lambda s: quote(s, safe=":@!$&'()*+,;=")),
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=100, max_size=600)
    .map(lambda s: quote(s, safe="")),
)
MODELS = st.one_of(st.sampled_from(["half_plus_two", "multi", SENTINEL, "nope"]), SEGMENTS)
VERSIONS = st.one_of(st.integers(0, 3).map(str), st.integers(-5, 2**70).map(str), SEGMENTS)
LABELS = st.one_of(st.sampled_from(["stable", "canary", "x"]), SEGMENTS)
QUERIES = st.one_of(
    st.just(""),
    st.lists(st.tuples(TEXT, TEXT), max_size=3).map(lambda kv: "?" + urlencode(kv)),
    st.lists(st.tuples(st.sampled_from(["version", "token", "signature_name"]),
                       st.one_of(VERSIONS, TEXT)), max_size=2).map(lambda kv: "?" + urlencode(kv)),
    SEGMENTS.map(lambda s: "?" + s),
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers()
    | st.integers(-(2**70), 2**70) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)
B64 = st.binary(max_size=12).map(lambda b: {"b64": base64.b64encode(b).decode()})
NUMBERS = st.one_of(st.floats(), st.integers(-(2**40), 2**40), st.sampled_from([2**31, 1e39]))
ROWS = st.one_of(
    st.lists(st.lists(NUMBERS, max_size=3), max_size=5),
    st.lists(st.fixed_dictionaries({}, optional={
        "a": st.lists(NUMBERS, max_size=3), "b": st.one_of(NUMBERS, JSON_VALUES),
        "s": st.one_of(st.text(max_size=8), B64, JSON_VALUES)}), max_size=4),
    st.lists(JSON_VALUES, max_size=4),
)
ENVELOPES = st.fixed_dictionaries({}, optional={
    "instances": st.one_of(ROWS, JSON_VALUES),
    "inputs": st.one_of(ROWS, JSON_VALUES, st.dictionaries(
        st.sampled_from(["x", "a", "b", "s", "v"]), st.one_of(ROWS, NUMBERS, JSON_VALUES))),
    "signature_name": st.one_of(st.sampled_from(["serving_default", "scalar", "", "nope"]),
                                JSON_VALUES),
    "examples": st.one_of(st.lists(st.dictionaries(
        st.sampled_from(["x", "a", "f"]), st.one_of(NUMBERS, st.lists(NUMBERS, max_size=3),
                                                     st.text(max_size=5), B64, JSON_VALUES)),
        max_size=3), JSON_VALUES),
    "context": JSON_VALUES,
    "version": st.one_of(VERSIONS, JSON_VALUES),
    "weight": st.one_of(st.floats(), JSON_VALUES),
})


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


BODIES = st.one_of(
    ENVELOPES.map(_dump),
    JSON_VALUES.map(_dump),
    st.binary(max_size=300),
    st.sampled_from([b"", b"{", b"\xef\xbb\xbf{}", b'{"instances": [[NaN]]}', b"\xff\xfe",
                     b'{"instances": ' + b"[" * 5000, b"[" * 100_000 + b"]" * 100_000,
                     b'{"a": "\\ud800"}', b"\0" * 100]),
)
CONTENT_TYPES = st.sampled_from([None, "application/json", "application/gzip", "text/plain",
                                 "application/x-www-form-urlencoded", "multipart/form-data"])
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])


@st.composite
def v1_requests(draw: Callable) -> tuple[str, str, bytes | None]:
    model = draw(MODELS)
    form = draw(st.sampled_from(["", "version", "label"]))
    path = f"/v1/models/{model}"
    if form == "version":
        path += f"/versions/{draw(VERSIONS)}"
    elif form == "label":
        path += f"/labels/{draw(LABELS)}"
    suffix = draw(st.one_of(
        st.sampled_from(["", "/metadata", ":predict", ":classify", ":regress", "/"]),
        SEGMENTS.map(lambda s: ":" + s), SEGMENTS.map(lambda s: "/" + s)))
    read = suffix in ("", "/metadata", "/")
    method = draw(st.one_of(st.just("GET" if read else "POST"), METHODS))
    body = draw(BODIES) if method in ("POST", "PUT", "DELETE", "PATCH") else None
    return method, path + suffix + draw(QUERIES), body


@st.composite
def management_requests(draw: Callable) -> tuple[str, str, bytes | None]:
    # Never aimed at the sentinel: it must keep serving exactly as published.
    model = draw(MODELS.filter(lambda m: m != SENTINEL))
    route = draw(st.sampled_from([
        ("GET", "/api/models"), ("GET", "/api/models/{m}"), ("POST", "/api/models/{m}/versions"),
        ("POST", "/api/models/{m}/versions/{v}:unload"),
        ("POST", "/api/models/{m}/versions/{v}:load"),
        ("PUT", "/api/models/{m}/labels/{l}"), ("DELETE", "/api/models/{m}/labels/{l}"),
        ("POST", "/api/models/{m}:canary"), ("POST", "/api/models/{m}:promote"),
        ("POST", "/api/models/{m}:rollback"), ("POST", "/api/config:reload"),
        ("GET", "/api/config/tfserving"),
        ("GET", "/api/models/{m}/{x}"), ("POST", "/api/models/{m}:{x}"),
        ("POST", "/api/{x}"),
    ]))
    method = draw(st.one_of(st.just(route[0]), METHODS))
    path = route[1].format(m=model, v=draw(VERSIONS), l=draw(LABELS), x=draw(SEGMENTS))
    body = draw(BODIES) if method in ("POST", "PUT", "DELETE", "PATCH") else None
    return method, path + draw(QUERIES), body


@st.composite
def other_requests(draw: Callable) -> tuple[str, str, bytes | None]:
    # Not the bare prefix P itself (no "/" after it): the extension's routes start at P/, and
    # jupyter_server answers P with its own HTML 404 page.
    path = draw(st.one_of(
        st.sampled_from(["/monitoring/prometheus/metrics", "/api/stats", "/api/openapi.json",
                         "/monitoring/prometheus", "/v1", "/v1/", "/v1/models", "/"]),
        st.lists(SEGMENTS, min_size=1, max_size=5).map(lambda segs: "/" + "/".join(segs)),
    ))
    method = draw(st.one_of(st.just("GET"), METHODS))
    body = draw(BODIES) if method in ("POST", "PUT", "DELETE", "PATCH") else None
    return method, path + draw(QUERIES), body


# ------------------------------------------------------------------------------ checks


def check_answer(method: str, path: str, body: bytes | None, code: int, data: Any) -> None:
    where = f"{method} {path[:300]!r} body {body[:200] if body else body!r}"
    assert code < 500 or code in ALLOWED_5XX, f"{where} -> {code}: {data!r:.1000}"
    if code < 400 or method == "HEAD":
        return
    assert isinstance(data, dict) and set(data) == {"error"}, f"{where} -> {code}: {data!r:.500}"
    message = data["error"]
    assert isinstance(message, str), f"{where} -> {code}: {data!r:.500}"
    sent = path + (body or b"").decode("utf-8", "replace")
    for leak in LEAKS:
        assert leak not in message or leak in sent, f"{where} -> {code} leaks {leak!r}: {message}"


async def _serve(rest, publish) -> None:
    publish("half_plus_two", 1)
    publish("half_plus_two", 1, as_name=SENTINEL)
    publish("multi", 1)
    for name in ("half_plus_two", "multi", SENTINEL):
        await rest.wait_for(name, 1)


async def assert_sentinel_serves(rest) -> None:
    code, data, headers = await rest.call(f"/v1/models/{SENTINEL}:predict",
                                          {"instances": [[1.0], [4.0]]})
    assert (code, data) == (200, {"predictions": [[2.5], [4.0]]})
    assert headers["X-Model-Version"] == "1"
    code, data, _ = await rest.call(f"/v1/models/{SENTINEL}:predict", {"inputs": {"x": [[0.0]]}})
    assert (code, data) == (200, {"outputs": [[2.0]]})
    code, data, _ = await rest.call(f"/v1/models/{SENTINEL}")
    assert code == 200 and [s["state"] for s in data["model_version_status"]] == ["AVAILABLE"]


async def _fuzz(rest, strategy: st.SearchStrategy, examples: int) -> Counter[int]:
    """Run ``strategy``'s requests through the server from a hypothesis thread; returns how
    often each status was answered."""
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()

    def send(method: str, path: str, body: bytes | None, content_type: str | None):
        headers = {"Content-Type": content_type} if content_type else {}
        call = rest.call(path, body, method=method, headers=headers)
        return asyncio.run_coroutine_threadsafe(call, loop).result(CALL_TIMEOUT)

    @fuzz_settings(examples)
    @given(request=strategy, content_type=CONTENT_TYPES)
    def run(request: tuple[str, str, bytes | None], content_type: str | None) -> None:
        method, path, body = request
        code, data, _ = send(method, path, body, content_type)
        statuses[code] += 1
        check_answer(method, path, body, code, data)

    await loop.run_in_executor(None, run)
    print(f"statuses: {dict(sorted(statuses.items()))}")
    return statuses


# Each property must reach past the login and routing: these statuses show up in its answers.
async def test_fuzz_v1_routes(rest, publish):
    await _serve(rest, publish)
    statuses = await _fuzz(rest, v1_requests(), 120)
    assert {200, 400, 404} <= set(statuses), statuses
    await assert_sentinel_serves(rest)


async def test_fuzz_management_routes(rest, publish):
    await _serve(rest, publish)
    statuses = await _fuzz(rest, management_requests(), 80)
    assert {200, 400, 404} <= set(statuses), statuses
    await assert_sentinel_serves(rest)


async def test_fuzz_other_routes(rest, publish):
    await _serve(rest, publish)
    statuses = await _fuzz(rest, other_requests(), 60)
    assert {200, 404} <= set(statuses), statuses
    await assert_sentinel_serves(rest)


# ------------------------------------------------------------------------------ schemathesis


async def test_schemathesis_against_the_openapi_document(rest, publish, jp_http_port,
                                                         jp_base_url):
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.specs.openapi import checks as openapi_checks

    from jupyter_tfserving.rest.management import openapi_document

    await _serve(rest, publish)
    base_url = f"http://127.0.0.1:{jp_http_port}{jp_base_url.rstrip('/')}/tfserving"
    auth = {"Authorization": f"token {rest.token}"}
    # Login is covered elsewhere; a generated wrong ?token= or cookie would only answer 403.
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    schema = schemathesis.openapi.from_dict(json.loads(openapi_document()), config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    strategy = st.one_of([op.as_strategy(generation_mode=mode)
                          for op in operations for mode in modes])
    conformance = [openapi_checks.status_code_conformance,
                   openapi_checks.content_type_conformance,
                   openapi_checks.response_headers_conformance,
                   openapi_checks.response_schema_conformance]
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()

    @fuzz_settings(150)
    @given(case=strategy)
    def run(case) -> None:
        targets = {str(v) for v in (case.path_parameters or {}).values()}
        assume(case.method.upper() == "GET" or SENTINEL not in targets)
        response = case.call(base_url=base_url, headers=auth, timeout=CALL_TIMEOUT)
        statuses[response.status_code] += 1
        try:
            data: Any = response.json()
        except ValueError:
            data = response.text
        check_answer(case.method.upper(), response.request.path_url, None,
                     response.status_code, data)
        case.validate_response(response, checks=conformance)

    await loop.run_in_executor(None, run)
    print(f"statuses: {dict(sorted(statuses.items()))}")
    assert {200, 400, 404} <= set(statuses), statuses
    await assert_sentinel_serves(rest)
