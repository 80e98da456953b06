"""The gRPC server: TF Serving's services, health and reflection on the server's asyncio loop.

``TFServingApp`` builds a :class:`GrpcServer` once the Jupyter server's event loop runs
(tornado runs on asyncio, so ``grpc.aio`` shares the loop with the REST handlers) and stops it
before the model service stops. It serves:

- ``tensorflow.serving.PredictionService`` and ``tensorflow.serving.ModelService``
  (:mod:`.servicers`), behind the Jupyter login and authorizer (:mod:`.auth`);
- TensorFlow's profiler service (``tensorflow.ProfilerService``, :mod:`.profiler`), as TF
  Serving serves it on its gRPC port, behind the same login;
- the standard health service (``grpc.health.v1.Health``: SERVING for ``""`` and both TF
  Serving services while running, NOT_SERVING once stopping) and server reflection, so
  ``grpcurl`` works; neither needs a token.

It listens on a TCP port (0: a free one, chosen by the OS) of the Jupyter server's IP, and/or
on a Unix socket (TF Serving's ``--grpc_socket_path``), with TLS when the Jupyter server has a
certificate and key (and client certificates when it has a ``client_ca``). The port is bound
with ``grpc.so_reuseport=0``: a port another process holds is an error at start, never a
silent second server. Messages larger than ``max_message_bytes`` are refused by gRPC itself
(RESOURCE_EXHAUSTED) before any of this code sees them.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass

import grpc  # type: ignore[import-untyped]
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]

from ..core import defaults
from ..service import ModelService
from . import protos
from .auth import GrpcAuth
from .profiler import SERVICE as PROFILER_SERVICE
from .profiler import ProfilerServicer
from .servicers import GrpcOptions, ModelServiceServicer, PredictionServiceServicer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrpcServerOptions:
    """Where and how to listen. ``port``: 0 a free port, -1 no TCP port; ``socket_path``: a
    Unix socket ("" none); ``channel_arguments``: more gRPC server arguments, applied after
    this server's own (TF Serving's ``--grpc_channel_arguments``); ``profiler``: serve
    TensorFlow's profiler service (:mod:`.profiler`); ``certfile``/``keyfile``:
    TLS (both or neither); ``client_ca``: also require client certificates signed by it."""

    host: str = "localhost"
    port: int = defaults.GRPC_PORT
    socket_path: str = ""
    max_message_bytes: int = defaults.GRPC_MAX_MESSAGE_BYTES
    tensor_content: bool = False
    channel_arguments: tuple[tuple[str, int | str], ...] = ()
    profiler: bool = True
    certfile: str = ""
    keyfile: str = ""
    client_ca: str = ""
    shutdown_grace_seconds: float = defaults.GRPC_SHUTDOWN_GRACE_SECONDS


def bind_host(host: str) -> str:
    """The Jupyter server's ``ip`` as a gRPC address host: all interfaces for ``""``,
    ``*`` and ``::``; IPv6 literals bracketed."""
    if host in ("", "*", "::", "[::]"):
        return "[::]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def connect_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``."""
    if host in ("", "*", "::", "[::]"):
        return "localhost"
    if host == "0.0.0.0":
        return "127.0.0.1"
    return bind_host(host)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class GrpcServer:
    """One running gRPC server (see the module docstring). Made, started and stopped on the
    event loop; :attr:`port` and :attr:`target` are known once :meth:`start` returned."""

    def __init__(self, service: ModelService, auth: GrpcAuth | None,
                 options: GrpcServerOptions) -> None:
        if bool(options.certfile) != bool(options.keyfile):
            raise ValueError("TLS needs both a certificate file and a key file")
        self.service = service
        self.auth = auth
        self.options = options
        self.port: int | None = None
        self.socket_path: str | None = None
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None

    @property
    def secure(self) -> bool:
        return bool(self.options.certfile)

    @property
    def target(self) -> str | None:
        """A gRPC target for clients on this machine: ``host:port``, else ``unix:path``."""
        if self.port is not None:
            return f"{connect_host(self.options.host)}:{self.port}"
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        return None

    def _credentials(self) -> grpc.ServerCredentials | None:
        options = self.options
        if not options.certfile:
            return None
        ca = _read(options.client_ca) if options.client_ca else None
        return grpc.ssl_server_credentials(
            [(_read(options.keyfile), _read(options.certfile))],
            root_certificates=ca, require_client_auth=ca is not None)

    def _bind(self, server: grpc.aio.Server, address: str,
              credentials: grpc.ServerCredentials | None) -> int:
        try:
            if credentials is not None:
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"gRPC could not listen on {address}: {exc}") from None
        if not port:
            raise OSError(f"gRPC could not listen on {address}")
        return int(port)

    async def start(self) -> None:
        """Bind and start serving (OSError when an address cannot be bound)."""
        options = self.options
        limit = options.max_message_bytes
        arguments: dict[str, int | str] = {
            "grpc.so_reuseport": 0,
            "grpc.max_receive_message_length": limit,
            "grpc.max_send_message_length": limit,
        }
        arguments.update(options.channel_arguments)
        server = grpc.aio.server(options=list(arguments.items()))
        grpc_options = GrpcOptions(tensor_content=options.tensor_content)
        servicers = (PredictionServiceServicer(self.service, self.auth, grpc_options),
                     ModelServiceServicer(self.service, self.auth, grpc_options))
        for servicer in servicers:
            handlers = servicer.method_handlers()
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(servicer.SERVICE, handlers),))
            if hasattr(server, "add_registered_method_handlers"):
                server.add_registered_method_handlers(servicer.SERVICE, handlers)
        if options.profiler:
            profiler = ProfilerServicer(self.auth)
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
                PROFILER_SERVICE, profiler.method_handlers()),))
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [protos.PREDICTION_SERVICE, protos.MODEL_SERVICE,
             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME], server)
        credentials = self._credentials()
        if options.port >= 0:
            self.port = self._bind(server, f"{bind_host(options.host)}:{options.port}",
                                   credentials)
        if options.socket_path:
            path = os.path.abspath(os.path.expanduser(options.socket_path))
            self._bind(server, f"unix:{path}", credentials)
            self.socket_path = path
        if self.port is None and self.socket_path is None:
            raise ValueError("gRPC has neither a port nor a socket to listen on")
        await server.start()
        self._server = server
        for name in ("", protos.PREDICTION_SERVICE, protos.MODEL_SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, let those in flight finish for up to ``grace`` seconds (the
        option's default), then cancel the rest; remove the Unix socket. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await server.stop(self.options.shutdown_grace_seconds if grace is None else grace)
        if self.socket_path is not None:
            try:
                if stat.S_ISSOCK(os.stat(self.socket_path).st_mode):
                    os.unlink(self.socket_path)
            except OSError:
                pass
