"""Every route the extension registers, every method its handler implements: refused without
the Jupyter login, and refused by jupyter_server's authorizer when it says no.

The routes come from the table the extension mounts (``rest.routes.ROUTES``), so a route added
later without authentication or authorization fails here."""

from __future__ import annotations

import re

import pytest
from jupyter_server.auth.authorizer import Authorizer

from jupyter_tfserving.rest.routes import ROUTES, api_handlers

METHODS = ("GET", "POST", "PUT", "DELETE")
PARAMETERS = {"{model}": "demo", "{version}": "1", "{label}": "stable"}
# Paths outside the table (TF Serving's 400 under /v1/, JSON 404 elsewhere, the bare prefix).
FALLBACKS = ("/v1/nothing", "/anything", "")


def sample(template: str) -> str:
    """A concrete path for a route template of the table."""
    for parameter, value in PARAMETERS.items():
        template = template.replace(parameter, value)
    return template


def _cases() -> list[tuple[str, str]]:
    """Every row of the route table, every other method on its path, and the fallbacks."""
    paths = {sample(route.path) for route in ROUTES} | set(FALLBACKS)
    return sorted((path, method) for path in paths for method in METHODS)


CASES = _cases()


def test_every_route_is_covered():
    assert {(sample(r.path), r.method) for r in ROUTES} <= set(CASES)
    assert len(api_handlers("/tfserving")) == len({r.path for r in ROUTES}) + len(FALLBACKS)
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
