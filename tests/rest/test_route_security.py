"""Every route the extension registers, every method its handler implements: refused without
the Jupyter login, and refused by jupyter_server's authorizer when it says no.

The routes come from the same table the extension mounts (``rest.routes.api_handlers``), so a
route added later without authentication or authorization fails here."""

from __future__ import annotations

import re

import pytest
from jupyter_server.auth.authorizer import Authorizer

from jupyter_tfserving.rest.routes import api_handlers

METHODS = ("get", "post", "put", "delete")
# A concrete path (after the prefix) for each route pattern's capture groups.
SAMPLES = {
    "v1": "/v1/models/demo:predict",
    "metrics": "/monitoring/prometheus/metrics",
    "stats": "/api/stats",
    "openapi.json": "/api/openapi.json",
    "versions": "/api/models/demo/versions",
    "models": "/api/models/demo/labels/stable",
    "catch-all": "/anything",
    "bare": "",
}


def _sample(pattern: str) -> str:
    for key, path in SAMPLES.items():
        if key in pattern:
            return path
    if pattern.endswith("(.*)"):
        return SAMPLES["catch-all"]
    if pattern.endswith("()"):
        return SAMPLES["bare"]
    raise AssertionError(f"no sample path for route {pattern}: add one to SAMPLES")


def _implemented(handler: type, method: str) -> bool:
    return any(method in c.__dict__ for c in handler.__mro__
               if c.__module__.startswith("jupyter_tfserving"))


def _cases() -> list[tuple[str, str]]:
    return sorted({(_sample(pattern), method.upper())
                   for pattern, handler in api_handlers("/tfserving")
                   for method in METHODS if _implemented(handler, method)})


CASES = _cases()


def test_every_route_is_covered():
    assert len({p for p, _ in CASES}) == len(api_handlers("/tfserving"))
    assert ("/v1/models/demo:predict", "POST") in CASES
    assert ("/api/models/demo/labels/stable", "PUT") in CASES


@pytest.mark.parametrize(("path", "method"), CASES)
async def test_refused_without_the_login(rest, path, method):
    body = b"{}" if method in ("POST", "PUT") else None
    code, data, _ = await rest.call(path, body, method=method, auth=False)
    assert code in (401, 403), (path, method, code, data)
    assert isinstance(data, dict) and set(data) == {"error"}
    code, data, _ = await rest.call(path, body, method=method,
                                    headers={"Authorization": "token not-the-token"})
    assert code in (401, 403), (path, method, code, data)


class DenyTFServing(Authorizer):
    """Says no to everything on the ``tfserving`` resource."""

    def is_authorized(self, handler, user, action, resource):
        return resource != "tfserving"


@pytest.fixture
def jp_server_config(jp_server_config):
    return {**jp_server_config,
            "ServerApp": {**jp_server_config["ServerApp"], "authorizer_class": DenyTFServing}}


@pytest.mark.parametrize(("path", "method"), CASES)
async def test_refused_by_the_authorizer(rest, path, method):
    body = b"{}" if method in ("POST", "PUT") else None
    code, data, _ = await rest.call(path, body, method=method)
    assert code == 403, (path, method, code, data)
    assert isinstance(data, dict) and set(data) == {"error"}
    assert not re.search(r"Traceback|\.py\b", data["error"])
