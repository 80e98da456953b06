"""The embedded fallback: the same ModelService and REST routes, inside the kernel process.

Used by ``serve()`` when no server extension is reachable (plain IPython, another front end;
DESIGN §1). It runs a tornado HTTP server on 127.0.0.1 (a free port) on a daemon thread with its
own event loop, behind a random token checked by jupyter_server's own ``IdentityProvider``, with
exactly the handlers the extension mounts, so clients cannot tell the difference. The server
stack (tornado, jupyter_server's handlers) is imported only here, only when it starts.

The options are the extension's (``TFServingApp.service_options``, its defaults and limits).
The repository is ``$JUPYTER_TFSERVING_MODEL_ROOT`` if set, else the extension's default
(``<jupyter data dir>/tfserving/models``), so models served here are there when a Jupyter server
starts later. One embedded server per process (:func:`get_embedded_server`); it stops at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import os
import secrets
import socket
import threading
from typing import Any

from ..core import defaults

ENV_MODEL_ROOT = "JUPYTER_TFSERVING_MODEL_ROOT"
PREFIX = defaults.URL_PREFIX


def default_model_root() -> str:
    return os.environ.get(ENV_MODEL_ROOT) or defaults.default_model_root()


class EmbeddedServer:
    """A ModelService with the REST API on ``127.0.0.1:<port>``, on a background thread."""

    def __init__(self, model_root: str | None = None, *,
                 file_system_poll_wait_seconds: float = defaults.FILE_SYSTEM_POLL_WAIT_SECONDS
                 ) -> None:
        self.model_root = os.path.abspath(model_root or default_model_root())
        self.token = secrets.token_hex(24)
        self.poll_wait = file_system_poll_wait_seconds
        self.port = 0
        self.service: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http_server: Any = None

    @property
    def url(self) -> str:
        """The API prefix P of this server."""
        return f"http://127.0.0.1:{self.port}/{PREFIX}"

    def start(self, timeout: float = 30.0) -> None:
        """Build the service, start polling and serving; returns once the port listens."""
        from jupyter_server.auth.authorizer import AllowAllAuthorizer
        from jupyter_server.auth.identity import IdentityProvider
        from jupyter_server.serverapp import ServerApp
        from tornado import httpserver, web

        from ..app import TFServingApp
        from ..rest.handlers import SERVICE_SETTING
        from ..rest.routes import api_handlers
        from ..service import ModelService

        # the extension's own options builder: its defaults, limits and signing key
        options = TFServingApp(model_root=self.model_root,
                               file_system_poll_wait_seconds=self.poll_wait).service_options()
        # no Jupyter server: jobs may use the kernel's working directory, as its notebook does
        options = dataclasses.replace(options, job_roots=(os.getcwd(),))
        self.service = ModelService(options)
        body_limit = ServerApp.class_traits()["max_body_size"].default_value
        app = web.Application(
            api_handlers(f"/{PREFIX}"),
            **{
                SERVICE_SETTING: self.service,
                "identity_provider": IdentityProvider(token=self.token),
                "authorizer": AllowAllAuthorizer(),
                "base_url": "/",
                "cookie_secret": secrets.token_bytes(32),
                "xsrf_cookies": True,
                # a notebook's output is no place for an access log
                "log_function": lambda handler: None,
            },
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        self.service.start()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            # a Jupyter server's own body limit, so the handlers answer what they answer there
            # (uploads stream and raise their connection's limit to max_upload_bytes)
            self._http_server = httpserver.HTTPServer(app, max_body_size=body_limit)
            self._http_server.add_sockets([sock])
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="tfserving-embedded", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("The embedded jupyter_tfserving server did not start")
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop serving HTTP, then let in-flight requests finish and unload the models."""
        loop, self._loop = self._loop, None
        if loop is not None:
            async def shutdown() -> None:
                if self._http_server is not None:
                    self._http_server.stop()
                    # keep-alive connections would otherwise hang their clients until timeout
                    await self._http_server.close_all_connections()
                loop.stop()

            loop.call_soon_threadsafe(lambda: loop.create_task(shutdown()))
            if self._thread is not None:
                self._thread.join(10)
        if self.service is not None:
            self.service.stop()
            self.service = None


_server: EmbeddedServer | None = None
_lock = threading.Lock()


def get_embedded_server() -> tuple[EmbeddedServer, bool]:
    """The process's embedded server, started on first use; (server, started_now)."""
    global _server
    with _lock:
        if _server is not None and _server.service is not None:
            return _server, False
        _server = EmbeddedServer()
        _server.start()
        return _server, True


def stop_embedded_server() -> None:
    """Stop the process's embedded server, if one runs (tests, shutdown)."""
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        server.stop()
