"""The kernel's REST client for a jupyter_tfserving server, and how it finds one.

The kernel side talks to the server only over REST (DESIGN §1). :func:`find_server` looks, in
order, at the environment variables the server extension sets in its own process (kernels it
starts inherit them), then at the running Jupyter servers listed in the Jupyter runtime
directory (what ``jupyter_server.serverapp.list_running_servers`` reads, read here without
importing jupyter_server), and keeps the first whose ``P/api/models`` answers.

Every call blocks (the kernel's own thread); errors are :class:`TFServingError` with the
server's message, or :class:`ServerUnavailable` when nothing answers.

The same places tell where the server's gRPC services are (``JUPYTER_TFSERVING_GRPC_TARGET``,
or the server's ``tfserving-grpc-<pid>.json`` in the runtime directory):
:attr:`TFServingClient.grpc_target`, and :meth:`TFServingClient.grpc_channel`, a channel whose
every call carries the token in its metadata.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from typing import Any

import requests

ENV_URL = "JUPYTER_TFSERVING_URL"
ENV_TOKEN = "JUPYTER_TFSERVING_TOKEN"
ENV_GRPC_TARGET = "JUPYTER_TFSERVING_GRPC_TARGET"
ENV_GRPC_ROOT_CERTS = "JUPYTER_TFSERVING_GRPC_ROOT_CERTS"
GRPC_RUNTIME_GLOB = "tfserving-grpc-*.json"
DEFAULT_PREFIX = "tfserving"


class TFServingError(RuntimeError):
    """The server answered an error: ``status`` is the HTTP status, ``message`` its text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


class ServerUnavailable(TFServingError):
    """No jupyter_tfserving server answered (it went away, or was never there)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class TFServingClient:
    """Calls one server's REST API. ``url`` is the API prefix P (``http://host:port/
    {base_url}tfserving``), ``token`` the Jupyter token (sent as ``Authorization: token``).
    ``grpc_target``: where the same server's gRPC services are (None: not known or not
    served); ``grpc_root_certs``: a PEM file to trust when they use TLS."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0,
                 grpc_target: str | None = None, grpc_root_certs: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.grpc_target = grpc_target or None
        self.grpc_root_certs = grpc_root_certs or None
        self._grpc_channel: Any = None
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"token {token}"

    def __repr__(self) -> str:
        return f"TFServingClient({self.url!r})"

    def request(self, method: str, path: str, *, json_body: Any = None, data: bytes | None = None,
                params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                timeout: float | None = None) -> requests.Response:
        """One call; returns the response of a 2xx answer, raises otherwise."""
        try:
            response = self._session.request(
                method, self.url + path, json=json_body, data=data, params=params,
                headers=headers, timeout=timeout or self.timeout)
        except requests.RequestException as exc:
            raise ServerUnavailable(
                f"The jupyter_tfserving server at {self.url} is not reachable: {exc}") from None
        if response.status_code >= 400:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500] or response.reason
            raise TFServingError(response.status_code, message)
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request` and decode the JSON answer."""
        return self.request(method, path, **kwargs).json()

    # -------------------------------------------------------------- management (P/api)

    def ping(self, timeout: float = 5.0) -> bool:
        """True when this is a jupyter_tfserving server that accepts the token."""
        try:
            self.request("GET", "/api/models", timeout=timeout)
        except TFServingError:
            return False
        return True

    def models(self) -> list[dict[str, Any]]:
        return self.call("GET", "/api/models")["models"]

    def model(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"/api/models/{name}")

    def publish(self, name: str, archive: bytes, version: int | None = None, *,
                rollout: str | None = None, weight: float | None = None,
                timeout: float = 600.0) -> dict[str, Any]:
        """Upload a packed version; with ``rollout`` ("stable" or "canary" with ``weight``) the
        server also waits for it to load and rolls it out before answering."""
        params: dict[str, str] = {}
        if version is not None:
            params["version"] = str(version)
        if rollout is not None:
            params["rollout"] = rollout
        if weight is not None:
            params["weight"] = repr(float(weight))
        return self.call("POST", f"/api/models/{name}/versions", data=archive,
                         params=params or None, headers={"Content-Type": "application/gzip"},
                         timeout=timeout)

    def set_label(self, name: str, label: str, version: int) -> dict[str, Any]:
        return self.call("PUT", f"/api/models/{name}/labels/{label}",
                         json_body={"version": version})

    def remove_label(self, name: str, label: str) -> dict[str, Any]:
        return self.call("DELETE", f"/api/models/{name}/labels/{label}")

    def canary(self, name: str, weight: float, version: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"weight": weight}
        if version is not None:
            body["version"] = version
        return self.call("POST", f"/api/models/{name}:canary", json_body=body)

    def promote(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Make the canary (or ``version``) stable."""
        body = {"version": version} if version is not None else None
        return self.call("POST", f"/api/models/{name}:promote", json_body=body)

    def rollback(self, name: str) -> dict[str, Any]:
        return self.call("POST", f"/api/models/{name}:rollback")

    def shadow(self, name: str, version: int | None, fraction: float) -> dict[str, Any]:
        """Mirror ``fraction`` of the model's unversioned requests to ``version`` (0 ends the
        shadow); the shadow report."""
        body: dict[str, Any] = {"fraction": fraction}
        if version is not None:
            body["version"] = version
        return self.call("POST", f"/api/models/{name}:shadow", json_body=body)

    def shadow_report(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"/api/models/{name}/shadow")

    def set_logging(self, name: str, sampling_rate: float,
                    filename_prefix: str | None = None) -> dict[str, Any]:
        """Log ``sampling_rate`` (0 to 1; 0: off) of the model's requests (its
        ``logging_config`` in ``models.config``); the model's logging status."""
        body: dict[str, Any] = {"sampling_rate": sampling_rate}
        if filename_prefix is not None:
            body["filename_prefix"] = filename_prefix
        return self.call("POST", f"/api/models/{name}:logging", json_body=body)

    def logged_requests(self, name: str, n: int = 20) -> list[dict[str, Any]]:
        """The model's ``n`` newest logged requests, newest first, as the server's JSON."""
        return self.call("GET", f"/api/models/{name}/requests", params={"n": n})["requests"]

    def logged_tfrecord(self, name: str, n: int = 20) -> bytes:
        """The same records as the bytes of a TFRecord file of ``PredictionLog`` messages."""
        return self.request("GET", f"/api/models/{name}/requests",
                            params={"n": n, "format": "tfrecord"}).content

    def unload(self, name: str, version: int) -> dict[str, Any]:
        return self.call("POST", f"/api/models/{name}/versions/{version}:unload")

    def load(self, name: str, version: int) -> dict[str, Any]:
        return self.call("POST", f"/api/models/{name}/versions/{version}:load")

    def tfserving_config(self) -> dict[str, Any]:
        """``{"model_config": text proto, "skipped": [...]}`` for tensorflow_model_server."""
        return self.call("GET", "/api/config/tfserving")

    def stats(self) -> dict[str, Any]:
        return self.call("GET", "/api/stats")

    # -------------------------------------------------------------- gRPC

    def grpc_channel(self) -> Any:
        """A ``grpc.Channel`` to the server's gRPC services whose calls carry the token in
        their metadata (``authorization: token <token>``); made once. ServerUnavailable when
        the server serves no gRPC (or this client does not know where)."""
        if self.grpc_target is None:
            raise ServerUnavailable(
                f"The jupyter_tfserving server at {self.url} serves no gRPC (or its target is "
                "unknown here): see TFServingApp.grpc_port")
        if self._grpc_channel is None:
            import grpc  # type: ignore[import-untyped, unused-ignore]

            if self.grpc_root_certs is not None:
                with open(self.grpc_root_certs, "rb") as f:
                    credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
                channel = grpc.secure_channel(self.grpc_target, credentials)
            else:
                channel = grpc.insecure_channel(self.grpc_target)
            if self.token:
                channel = grpc.intercept_channel(channel, _token_interceptor(self.token))
            self._grpc_channel = channel
        return self._grpc_channel

    def prediction_stub(self) -> Any:
        """TF Serving's ``PredictionServiceStub`` on :meth:`grpc_channel`."""
        from ..grpc import protos

        return protos.load().prediction_service_pb2_grpc.PredictionServiceStub(
            self.grpc_channel())

    def model_stub(self) -> Any:
        """TF Serving's ``ModelServiceStub`` on :meth:`grpc_channel`."""
        from ..grpc import protos

        return protos.load().model_service_pb2_grpc.ModelServiceStub(self.grpc_channel())

    # -------------------------------------------------------------- TF Serving v1

    def predict_url(self, name: str, version: int | None = None) -> str:
        where = f"/versions/{version}" if version is not None else ""
        return f"{self.url}/v1/models/{name}{where}:predict"

    def predict(self, name: str, instances: Any, *, version: int | None = None,
                signature_name: str | None = None) -> tuple[Any, int]:
        """``:predict`` in row format; returns (predictions, the version that answered)."""
        body: dict[str, Any] = {"instances": instances}
        if signature_name:
            body["signature_name"] = signature_name
        url = self.predict_url(name, version)
        response = self.request("POST", url[len(self.url):], json_body=body)
        return response.json()["predictions"], int(response.headers.get("X-Model-Version", -1))


def _token_interceptor(token: str) -> Any:
    """A client interceptor adding ``authorization: token <token>`` to every call's metadata
    (its class is made here, so importing this module needs no grpc)."""
    import grpc  # type: ignore[import-untyped, unused-ignore]

    class TokenInterceptor(grpc.UnaryUnaryClientInterceptor,
                           grpc.UnaryStreamClientInterceptor):
        def _details(self, details: Any) -> Any:
            metadata = [m for m in (details.metadata or ()) if m[0].lower() != "authorization"]
            metadata.append(("authorization", f"token {token}"))
            return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                                getattr(details, "wait_for_ready", None),
                                getattr(details, "compression", None))

        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return continuation(self._details(details), request)

        def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            return continuation(self._details(details), request)

    return TokenInterceptor()


class _CallDetails:
    """A ``grpc.ClientCallDetails`` with other metadata."""

    def __init__(self, method: str, timeout: float | None, metadata: Any, credentials: Any,
                 wait_for_ready: Any, compression: Any) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def _grpc_runtime_info() -> dict[int, dict[str, Any]]:
    """The gRPC targets the running servers wrote beside their info files, by server pid."""
    from jupyter_core.paths import jupyter_runtime_dir

    out: dict[int, dict[str, Any]] = {}
    for path in glob.glob(os.path.join(jupyter_runtime_dir(), GRPC_RUNTIME_GLOB)):
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and isinstance(info.get("pid"), int):
            out[info["pid"]] = info
    return out


def _runtime_servers() -> Iterator[dict[str, Any]]:
    """The running Jupyter servers' info files, newest first."""
    from jupyter_core.paths import jupyter_runtime_dir

    files = glob.glob(os.path.join(jupyter_runtime_dir(), "jpserver-*.json"))
    for path in sorted(files, key=lambda p: os.path.getmtime(p), reverse=True):
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("url"):
            yield info


def candidate_clients() -> Iterator[TFServingClient]:
    """Where a server may be, in the order :func:`find_server` tries them."""
    url = os.environ.get(ENV_URL)
    if url:
        yield TFServingClient(url, os.environ.get(ENV_TOKEN, ""),
                              grpc_target=os.environ.get(ENV_GRPC_TARGET),
                              grpc_root_certs=os.environ.get(ENV_GRPC_ROOT_CERTS))
    grpc_info = _grpc_runtime_info()
    for info in _runtime_servers():
        # "url" is the server's connection URL, base_url included
        grpc_server = grpc_info.get(info.get("pid", -1), {})
        yield TFServingClient(f"{info['url'].rstrip('/')}/{DEFAULT_PREFIX}",
                              info.get("token", ""),
                              grpc_target=grpc_server.get("grpc_target"),
                              grpc_root_certs=grpc_server.get("grpc_root_certs"))


def find_server() -> TFServingClient | None:
    """The first reachable jupyter_tfserving server (see the module docstring), or None."""
    seen: set[str] = set()
    for client in candidate_clients():
        if client.url in seen:
            continue
        seen.add(client.url)
        if client.ping():
            return client
    return None
