"""What jupyter_server does per request that serving does not need, done once or skipped.

Measured (``benchmarks/README.md``, "Profile of the request path"): on a token-authenticated API
request jupyter_server's ``IdentityProvider.get_user`` reads the cookies, invents a fresh
anonymous user and signs a ``Set-Cookie`` on every answer (~25% of the server's CPU per
``:predict``); its request log scrubs and formats a line per request that is logged at DEBUG,
and traitlets leaves the application logger at DEBUG (filtering at its handler), so every
``log.debug`` on the path builds a record that is then dropped. ``TFServingHandler`` calls
:func:`header_token_user` in ``prepare`` and :func:`log_request` from tornado's ``_log``;
``TFServingApp`` calls :func:`drop_unwritten_debug` once at start. Authentication and the
authorizer still run on every request: only work whose outcome cannot differ is skipped.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider, User

_API_USER = "_jupyter_tfserving_api_user"
_histograms: dict[tuple[str, str, int], Any] = {}


def header_token_user(handler: Any) -> User | None:
    """The user of a request whose ``Authorization: token|bearer <T>`` header carries the
    server's token, or None when jupyter_server must decide (no such header, a wrong token, a
    cookie or a ``token`` argument that could change the outcome, or an identity provider that
    is not jupyter_server's own token/password one: JupyterHub's decides everything itself).

    Every such request gets the same anonymous user (one per identity provider), where
    jupyter_server would make a new one per request and send it back as a login cookie: API
    clients never return cookies, so the answer carries none."""
    request = handler.request
    headers = request.headers
    header = headers.get("Authorization")
    if not header or "Cookie" in headers:
        return None
    idp = handler.identity_provider
    if type(idp) not in (IdentityProvider, PasswordIdentityProvider):
        return None
    token = idp.token
    if not token or "token" in request.query_arguments or "token" in request.body_arguments:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not hmac.compare_digest(
            value.strip().encode(), token.encode()):
        return None
    user: User | None = getattr(idp, _API_USER, None)
    if user is None:
        user = idp.generate_anonymous_user(handler)
        setattr(idp, _API_USER, user)
    return user


def debug_written(log: logging.Logger) -> bool:
    """Would a DEBUG record of ``log`` reach a handler that writes it? (traitlets leaves the
    logger at DEBUG and filters at its handler, so ``isEnabledFor`` is not enough.)"""
    if not log.isEnabledFor(logging.DEBUG):
        return False
    return log.propagate or any(h.level <= logging.DEBUG for h in log.handlers)


def log_request(handler: Any) -> bool:
    """The request log of an answer below 300 while no DEBUG record is written: only
    jupyter_server's ``http_request_duration_seconds`` observation (its labels, a cached
    child), since the line it would format is a DEBUG record. False: log it the usual way."""
    status = handler.get_status()
    if status >= 300 or debug_written(handler.log):
        return False
    serverapp = handler.settings.get("serverapp")
    if serverapp is None or serverapp.record_http_request_metrics:
        key = (handler.request.method, type(handler).__qualname__, status)
        child = _histograms.get(key)
        if child is None:
            from jupyter_server.prometheus.metrics import HTTP_REQUEST_DURATION_SECONDS

            child = _histograms[key] = HTTP_REQUEST_DURATION_SECONDS.labels(
                method=handler.request.method,
                handler=f"{type(handler).__module__}.{type(handler).__name__}",
                status_code=status)
        child.observe(handler.request.request_time())
    return True


def drop_unwritten_debug(log: logging.Logger) -> None:
    """Raise ``log``'s level to its handlers' lowest when it does not propagate, so records no
    handler writes are not built (a later reconfiguration by traitlets simply resets it)."""
    if log.propagate or not log.handlers:
        return
    lowest = min(h.level for h in log.handlers)
    if log.level < lowest:
        log.setLevel(lowest)
