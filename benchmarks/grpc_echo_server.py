"""A bare ``grpc.aio`` server: the floor of gRPC serving in Python on this machine.

    python -m benchmarks.grpc_echo_server --port P --answer-file F \
        [--method /tensorflow.serving.PredictionService/Predict] [--registered N] [--uvloop]

Serves one unary method that answers every call with the bytes of ``--answer-file`` (the
``grpc`` scenario gives it the PredictResponse our server answers for half_plus_two), taking
and returning raw bytes: no authentication, no parsing, no model, no thread hand-off. It plays
for gRPC the part ``benchmarks/echo_extension.py`` plays for REST: what is left of a request
once everything this project does is taken away (the ``grpc`` scenario's "grpc bare").

The method is served through a generic handler, as a server that registers nothing; with
``--registered N`` it is also registered (``add_registered_method_handlers``) together with
N - 1 methods that are never called, as this project's server registers its services' methods
(PredictionService 5, ModelService 2, plus health and reflection): grpcio's server loop then
waits on one pending request future per registered method for every call. ``--uvloop`` runs
it on uvloop (as MLServer does) when uvloop is installed. Only ``grpc`` is imported, so the
MLServer venv's python can run it too. Stops on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import grpc  # type: ignore[import-untyped]


def _split(method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> (``pkg.Service``, ``Method``)."""
    service, _, name = method.strip("/").rpartition("/")
    if not service or not name:
        raise ValueError(f"not a full method name: {method}")
    return service, name


async def serve(port: int, answer: bytes, method: str, registered: int) -> None:
    """Serve ``method`` answering ``answer`` on 127.0.0.1:``port`` until a signal."""

    async def echo(request: bytes, context: Any) -> bytes:
        return answer

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    service, name = _split(method)
    handlers = {name: grpc.unary_unary_rpc_method_handler(echo)}
    if registered > 0:
        for i in range(registered - 1):
            handlers[f"Unused{i}"] = grpc.unary_unary_rpc_method_handler(echo)
        server.add_registered_method_handlers(service, handlers)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    if not server.add_insecure_port(f"127.0.0.1:{port}"):
        raise OSError(f"cannot listen on 127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="bare grpc.aio server answering fixed bytes")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--answer-file", required=True)
    p.add_argument("--method", default="/tensorflow.serving.PredictionService/Predict")
    p.add_argument("--registered", type=int, default=0,
                   help="register the method and N - 1 unused ones (default 0: generic only)")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = p.parse_args(argv)
    with open(args.answer_file, "rb") as f:
        answer = f.read()
    main_coro = serve(args.port, answer, args.method, args.registered)
    if args.uvloop:
        import uvloop  # type: ignore[import-not-found]

        uvloop.run(main_coro)
    else:
        asyncio.run(main_coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
