"""A bare Jupyter server extension for the HTTP ceiling: ``POST {base_url}bench/echo``.

Loaded beside jupyter_tfserving by ``benchmarks.run`` with
``--ServerApp.jpserver_extensions={'benchmarks.echo_extension': True}`` (PYTHONPATH holds the
repository root). Its handler is a jupyter_server ``APIHandler`` authenticated and authorized
exactly like the tfserving routes (token, ``auth_resource = "tfserving"``, POST = write) and
answers the same bytes as half_plus_two's predict of ``[[1.0]]``, without touching the body,
the model manager or any thread pool: what remains is tornado + jupyter_server's per-request
cost, i.e. the ceiling that any handler on this server can reach.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

ECHO_PATH = "bench/echo"
ANSWER = b'{"predictions":[[2.5]]}'


class EchoHandler(APIHandler):
    auth_resource = "tfserving"

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(ANSWER)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "benchmarks.echo_extension"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    route = url_path_join(web_app.settings["base_url"], ECHO_PATH)
    web_app.add_handlers(".*$", [(route, EchoHandler)])
