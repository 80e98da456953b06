"""A closed-loop gRPC load generator: one asyncio process (``grpc.aio``), N concurrent callers.

Run as its own process by ``benchmarks.run`` (so it never shares a GIL with the server)::

    python -m benchmarks.grpc_loadgen --target 127.0.0.1:P \
        --method /tensorflow.serving.PredictionService/Predict --token T --body-file F \
        --concurrency 16 --warmup 2 --duration 10 [--channels 1] [--server-pid PID ...]

Each caller sends the same pre-serialised request message, waits for the whole answer, and
sends again (closed loop: N calls in flight at all times), through
``channel.unary_unary(method)`` with no serialiser or deserialiser: the request bytes go out
as they are and the answer stays bytes, so the client spends no CPU on protobuf. The callers
share ``--channels`` channels (one HTTP/2 connection each, round robin; 1 by default). Only
calls that *complete* inside the measurement window (after the warm-up) are counted. Prints
one JSON object on stdout with the keys of :mod:`benchmarks.loadgen` (requests per second,
latency percentiles in ms, the client's and, with ``--server-pid``, the server's CPU seconds
over the window); ``statuses`` counts gRPC status code names (``"OK"``, ``"UNAVAILABLE"``...).
``--token T`` sends the metadata ``authorization: token T`` (this server's gRPC login);
``--token ''`` sends none (MLServer).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from typing import Any

import grpc  # type: ignore[import-untyped]

from benchmarks.loadgen import Window, window_marks, window_report

OK = "OK"


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Channel arguments: message limits both ways, and a subchannel pool of the channel's
    own, so that channels to the same target are separate connections (gRPC shares one
    otherwise)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.use_local_subchannel_pool", 1),
    ]


async def _caller(call: Any, request: bytes, metadata: tuple[tuple[str, str], ...] | None,
                  window: Window, timeout: float, latencies: list[float],
                  statuses: dict[str, int], errors: list[str], first_answer: list[bytes]
                  ) -> None:
    """One closed-loop caller until the window ends: call, wait, record, call again."""
    while True:
        started = time.perf_counter()
        if started >= window.end:
            return
        try:
            answer = await call(request, metadata=metadata, timeout=timeout)
            code = OK
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            errors.append(f"{code}: {exc.details()}")
            answer = None
        done = time.perf_counter()
        if answer is not None and not first_answer:
            first_answer.append(answer)
        if window.start <= done < window.end:
            latencies.append(done - started)
            statuses[code] = statuses.get(code, 0) + 1
        if answer is None:
            await asyncio.sleep(0.01)  # a refused call must not spin


async def run_load(target: str, method: str, token: str, request: bytes, concurrency: int,
                   warmup: float, duration: float, server_pids: list[int] | None,
                   channels: int = 1, timeout: float = 60.0) -> dict[str, Any]:
    """Drive ``method`` at ``target`` with ``concurrency`` callers over ``channels`` channels
    for ``warmup`` + ``duration`` seconds; the result of :mod:`benchmarks.loadgen`'s
    ``run_load``, gRPC status names for HTTP statuses."""
    options = channel_options(max(4 * 1024 * 1024, 2 * len(request)))
    chans = [grpc.aio.insecure_channel(target, options=options) for _ in range(channels)]
    try:
        for chan in chans:
            await asyncio.wait_for(chan.channel_ready(), timeout=30)
        calls = [chan.unary_unary(method) for chan in chans]  # bytes in, bytes out
        metadata = (("authorization", f"token {token}"),) if token else None
        now = time.perf_counter()
        window = Window(now + warmup, now + warmup + duration)
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        errors: list[str] = []
        first_answer: list[bytes] = []

        mark_task = asyncio.create_task(window_marks(window, server_pids))
        await asyncio.gather(*(
            _caller(calls[i % channels], request, metadata, window, timeout, latencies,
                    statuses, errors, first_answer)
            for i in range(concurrency)
        ))
        marks = await mark_task
    finally:
        for chan in chans:
            await chan.close()
    report = window_report(concurrency, marks, latencies, statuses, statuses.get(OK, 0),
                           errors)
    return {
        **report,
        "channels": channels,
        "request_bytes": len(request),
        "answer_bytes": len(first_answer[0]) if first_answer else None,
        # base64 of the first answer's first 300 bytes (a serialised response message)
        "sample_answer": base64.b64encode(first_answer[0][:300]).decode() if first_answer
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="closed-loop gRPC unary load generator")
    p.add_argument("--target", required=True, help="host:port")
    p.add_argument("--method", required=True, help="/package.Service/Method")
    p.add_argument("--token", required=True, help="Jupyter token for the metadata ('': none)")
    p.add_argument("--body-file", required=True, help="the serialised request message")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=60.0, help="deadline of each call (s)")
    p.add_argument("--server-pid", type=int, action="append",
                   help="a server process to charge CPU to (repeatable)")
    args = p.parse_args(argv)
    with open(args.body_file, "rb") as f:
        request = f.read()
    result = asyncio.run(run_load(args.target, args.method, args.token, request,
                                  args.concurrency, args.warmup, args.duration, args.server_pid,
                                  max(1, args.channels), args.timeout))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
