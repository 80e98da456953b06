"""The one route table of the REST front end, and the tornado routes built from it.

Each :class:`Route` is (method, path under P, handler family, operation, authorizer action).
:func:`api_handlers` turns the table into tornado URL specs for ``TFServingApp`` and the kernel's
embedded server; the OpenAPI document (``openapi.json``) documents exactly these routes, which a
test checks both ways. Paths use OpenAPI's template syntax: ``{model}``, ``{label}`` and
``{job}`` are one path segment without ``:``, ``{version}`` is ASCII digits (anything else
under ``P/v1/`` is TF Serving's 400 "Malformed request", elsewhere a JSON 404).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jupyter_server.utils import url_path_join

from .handlers import (
    MalformedHandler,
    NotFoundHandler,
    RoutedHandler,
    V1Handler,
)
from .management import ManagementHandler, UploadHandler


@dataclass(frozen=True)
class Route:
    """One operation of the REST API."""

    method: str
    path: str  # under P, in OpenAPI template syntax
    family: type[RoutedHandler]  # the handler class whose ``operation`` method answers it
    operation: str
    action: str  # jupyter_server authorizer action on the "tfserving" resource


def _v1(method: str, tail: str, operation: str, action: str) -> list[Route]:
    """A v1 operation on a model, on a version of it, and on a label of it."""
    return [Route(method, f"/v1/models/{{model}}{where}{tail}", V1Handler, operation, action)
            for where in ("", "/versions/{version}", "/labels/{label}")]


ROUTES: tuple[Route, ...] = (
    *_v1("GET", "", "model_status", "read"),
    *_v1("GET", "/metadata", "model_metadata", "read"),
    *_v1("POST", ":predict", "predict", "write"),
    *_v1("POST", ":classify", "classify", "write"),
    *_v1("POST", ":regress", "regress", "write"),
    Route("GET", "/v1/models", V1Handler, "list_models", "read"),
    Route("GET", "/monitoring/prometheus/metrics", ManagementHandler, "prometheus", "read"),
    Route("GET", "/api/stats", ManagementHandler, "stats", "read"),
    Route("GET", "/api/openapi.json", ManagementHandler, "openapi", "read"),
    Route("GET", "/api/models", ManagementHandler, "list_models", "read"),
    Route("GET", "/api/models/{model}", ManagementHandler, "describe_model", "read"),
    Route("POST", "/api/models/{model}/versions", UploadHandler, "publish", "write"),
    Route("POST", "/api/models/{model}/versions/{version}:unload", ManagementHandler,
          "unload_version", "write"),
    Route("POST", "/api/models/{model}/versions/{version}:load", ManagementHandler,
          "load_version", "write"),
    Route("PUT", "/api/models/{model}/labels/{label}", ManagementHandler, "set_label", "write"),
    Route("DELETE", "/api/models/{model}/labels/{label}", ManagementHandler, "remove_label",
          "write"),
    Route("POST", "/api/models/{model}:canary", ManagementHandler, "canary", "write"),
    Route("POST", "/api/models/{model}:promote", ManagementHandler, "promote", "write"),
    Route("POST", "/api/models/{model}:rollback", ManagementHandler, "rollback", "write"),
    Route("POST", "/api/models/{model}:shadow", ManagementHandler, "set_shadow", "write"),
    Route("GET", "/api/models/{model}/shadow", ManagementHandler, "shadow_report", "read"),
    Route("POST", "/api/models/{model}:logging", ManagementHandler, "set_logging", "write"),
    Route("GET", "/api/models/{model}/requests", ManagementHandler, "logged_requests", "read"),
    Route("POST", "/api/config:reload", ManagementHandler, "reload_config", "write"),
    Route("GET", "/api/config/tfserving", ManagementHandler, "tfserving_config", "read"),
    Route("GET", "/api/jobs", ManagementHandler, "list_jobs", "read"),
    Route("POST", "/api/jobs", ManagementHandler, "start_job", "write"),
    Route("GET", "/api/jobs/{job}", ManagementHandler, "get_job", "read"),
    Route("DELETE", "/api/jobs/{job}", ManagementHandler, "cancel_job", "write"),
    Route("POST", "/api/jobs/{job}:resume", ManagementHandler, "resume_job", "write"),
    Route("POST", "/api/datasets", UploadHandler, "store_dataset", "write"),
)

_PARAMETER = re.compile(r"\{(model|version|label|job)\}")
_SEGMENT = {"model": r"[^/:]+", "label": r"[^/:]+", "job": r"[^/:]+", "version": r"[0-9]+"}


def path_regex(path: str) -> str:
    """The tornado pattern of an OpenAPI path template (named groups; a trailing slash is
    allowed where the path does not end with a ``:verb``)."""
    out, last = [], 0
    for match in _PARAMETER.finditer(path):
        out.append(re.escape(path[last:match.start()]))
        out.append(f"(?P<{match.group(1)}>{_SEGMENT[match.group(1)]})")
        last = match.end()
    out.append(re.escape(path[last:]))
    tail = path.rsplit("/", 1)[-1]
    return "".join(out) + ("" if ":" in tail else "/?")


def api_handlers(prefix: str) -> list[tuple[str, Any]]:
    """Every route under ``prefix`` (``{base_url}{url_prefix}``): one tornado handler class per
    path of the table (its family, answering the table's methods there), then TF Serving's 400
    for anything else under ``P/v1/``, then a JSON 404."""
    by_path: dict[str, list[Route]] = {}
    for route in ROUTES:
        by_path.setdefault(route.path, []).append(route)
    rules: list[tuple[str, Any]] = []
    for path, routes in by_path.items():
        families = {r.family for r in routes}
        assert len(families) == 1, f"{path}: one handler family per path"
        family = families.pop()
        handler = type(family.__name__, (family,), {
            "routes": {r.method: r for r in routes},
            "__module__": family.__module__,
        })
        rules.append((url_path_join(prefix, path_regex(path)), handler))
    rules += [
        (url_path_join(prefix, "v1", "(?P<rest>.*)"), MalformedHandler),
        (url_path_join(prefix, "(?P<rest>.*)"), NotFoundHandler),
        (prefix.rstrip("/") + "(?P<rest>)", NotFoundHandler),  # P itself, no trailing slash
    ]
    return rules
