"""The extension's route table, shared by ``TFServingApp`` and the kernel's embedded server."""

from __future__ import annotations

from typing import Any

from jupyter_server.utils import url_path_join

from .handlers import NotFoundHandler, PrometheusHandler, StatsHandler, V1Handler
from .management import ManagementHandler, OpenAPIHandler, UploadHandler


def api_handlers(prefix: str) -> list[tuple[str, Any]]:
    """Every route under ``prefix`` (``{base_url}{url_prefix}``), most specific first; the
    catch-all answers a JSON 404."""
    return [
        (url_path_join(prefix, "v1", "(.*)"), V1Handler),
        (url_path_join(prefix, "monitoring", "prometheus", "metrics"), PrometheusHandler),
        (url_path_join(prefix, "api", "stats"), StatsHandler),
        (url_path_join(prefix, "api", "openapi.json"), OpenAPIHandler),
        (url_path_join(prefix, "api", "models", "([^/:]+)", "versions/?"), UploadHandler),
        (url_path_join(prefix, "api", "(models.*|config:reload|config/tfserving)"),
         ManagementHandler),
        (url_path_join(prefix, "(.*)"), NotFoundHandler),
        (prefix.rstrip("/") + "()", NotFoundHandler),  # P itself, without a trailing slash
    ]
