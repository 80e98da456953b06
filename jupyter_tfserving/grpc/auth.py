"""gRPC calls pass the Jupyter login and authorizer that every REST route passes.

A client sends the Jupyter token in call metadata, ``authorization: token <token>`` (or
``Bearer <token>``), as REST clients send the ``Authorization`` header. :class:`GrpcAuth` hands
it to the Jupyter server's own identity provider and authorizer through a stand-in request
handler (:class:`GrpcAuthHandler`: a real ``JupyterHandler`` of the server's web application
around a synthetic request that carries only that header, the caller's address and the method's
path), so a custom identity provider or authorizer (JupyterHub's, say) decides for gRPC exactly as
it does for REST, on the same ``tfserving`` resource: ``read`` for GetModelStatus and
GetModelMetadata, ``write`` for Predict, Classify, Regress, MultiInference and
HandleReloadConfigRequest.

No user (no token, a wrong one) is UNAUTHENTICATED; a user the authorizer refuses is
PERMISSION_DENIED. A server that runs without authentication (no token and no password) lets
every call in as an anonymous user, as its REST routes do. Runs on the event loop (the identity
provider may be async); the standard health and reflection services are not checked.

An allowed (authorization value, caller address, method, action) is remembered for
``cache_seconds`` (``core.defaults.GRPC_AUTH_CACHE_SECONDS``): asking costs ~0.1 ms a call,
mostly the identity provider making a fresh anonymous user for a token login. Refusals are
never remembered.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from tornado import httputil, web

from ..core import defaults
from ..core.status import Code, ServingError

READ = "read"
WRITE = "write"

UNAUTHENTICATED_MESSAGE = (
    "This call needs the Jupyter server's token: send the metadata "
    "'authorization: token <token>'")

log = logging.getLogger(__name__)


class GrpcAuthHandler(JupyterHandler):
    """A request handler that never handles a request: it gives the identity provider and
    the authorizer what they read of a handler (headers, cookies settings, the server's
    token, ``current_user``), for one gRPC call."""

    def set_default_headers(self) -> None:
        """No response is ever written: skip JupyterHandler's header work."""


class _Connection(httputil.HTTPConnection):
    """What tornado asks of a request's connection when a handler is made."""

    def __init__(self, remote_ip: str, protocol: str) -> None:
        self.context = SimpleNamespace(remote_ip=remote_ip, protocol=protocol)

    def set_close_callback(self, callback: Any) -> None:
        pass


def peer_ip(peer: str) -> str:
    """The address of a gRPC peer string: ``ipv4:1.2.3.4:5`` -> ``1.2.3.4``,
    ``ipv6:[::1]:5`` -> ``::1``, a Unix socket -> ``127.0.0.1`` (a local caller)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0] or rest
        return host.strip("[]")
    return "127.0.0.1"


class GrpcAuth:
    """Checks one call's metadata through the server's identity provider and authorizer.

    ``web_app``: the Jupyter server's tornado application (its settings hold the identity
    provider, the authorizer and the cookie secret); ``resource``: the authorizer's resource
    name (REST's ``tfserving``)."""

    # Most remembered decisions (the oldest go first).
    CACHE_SIZE = 1024

    def __init__(self, web_app: web.Application, resource: str, *, secure: bool = False,
                 host: str = "localhost",
                 cache_seconds: float = defaults.GRPC_AUTH_CACHE_SECONDS) -> None:
        self.web_app = web_app
        self.resource = resource
        self.protocol = "https" if secure else "http"
        self.host = host
        self.cache_seconds = cache_seconds
        self._allowed: OrderedDict[tuple[str, str, str, str], float] = OrderedDict()

    def handler(self, authorization: str, peer: str, method: str) -> GrpcAuthHandler:
        """The stand-in handler for one call."""
        headers = httputil.HTTPHeaders({"Host": self.host})
        if authorization:
            headers["Authorization"] = authorization
        request = httputil.HTTPServerRequest(
            method="POST", uri=f"/grpc{method}", version="HTTP/2.0", headers=headers,
            host=self.host, connection=_Connection(peer_ip(peer), self.protocol))
        return GrpcAuthHandler(self.web_app, request)

    async def check(self, metadata: Iterable[tuple[str, Any]], peer: str, method: str,
                    action: str) -> None:
        """Raise ServingError UNAUTHENTICATED or PERMISSION_DENIED unless the caller may do
        ``action``; ``method`` is the call's full method name (for the logs)."""
        authorization = ""
        for name, value in metadata:
            if name.lower() == "authorization":
                authorization = value.decode("latin-1") if isinstance(value, bytes) else value
                break
        ip = peer_ip(peer)
        key = (authorization, ip, method, action)
        now = time.monotonic()
        expires = self._allowed.get(key)
        if expires is not None:
            if expires > now:
                return
            del self._allowed[key]
        await self._ask(authorization, peer, method, action)
        if self.cache_seconds > 0:
            self._allowed[key] = now + self.cache_seconds
            while len(self._allowed) > self.CACHE_SIZE:
                self._allowed.popitem(last=False)

    async def _ask(self, authorization: str, peer: str, method: str, action: str) -> None:
        handler = self.handler(authorization, peer, method)
        try:
            user = handler.identity_provider.get_user(handler)
            if inspect.isawaitable(user):
                user = await user
        except web.HTTPError:
            user = None
        except Exception:
            log.exception("jupyter_tfserving: the identity provider failed on gRPC %s", method)
            user = None
        if user is None:
            raise ServingError(Code.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        handler.current_user = handler._jupyter_current_user = user
        try:
            allowed = handler.authorizer.is_authorized(handler, user, action, self.resource)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except Exception:
            log.exception("jupyter_tfserving: the authorizer failed on gRPC %s", method)
            allowed = False
        if not allowed:
            raise ServingError(
                Code.PERMISSION_DENIED,
                f"User is not authorized to {action} on resource: {self.resource}.")
