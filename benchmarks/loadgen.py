"""A closed-loop HTTP/1.1 load generator: one asyncio process, N keep-alive connections.

Run as its own process by ``benchmarks.run`` (so it never shares a GIL with the server)::

    python -m benchmarks.loadgen --port P --path /x --token T --body-file F \
        --concurrency 16 --warmup 2 --duration 10 [--server-pid PID ...]

Each connection sends the same pre-encoded POST, waits for the whole answer, and sends again
(closed loop: N requests in flight at all times). Only answers that *complete* inside the
measurement window (after the warm-up) are counted. Prints one JSON object on stdout: requests
per second, latency percentiles (ms), status counts, the client's own CPU seconds and, with
``--server-pid`` (repeatable: a server of several processes), the server's CPU seconds (from
/proc, summed over the pids) over the same window. ``--token ''`` sends no Authorization header
(servers without Jupyter's token, e.g. MLServer).

Raw asyncio streams rather than aiohttp: it has no dependency and costs the client less CPU,
which matters when client and server share 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from typing import Any


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of process ``pid`` (all its threads), from /proc; None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return None


def pids_cpu_seconds(pids: list[int]) -> float | None:
    """The sum of :func:`proc_cpu_seconds` over ``pids``; None if none given or one unreadable."""
    if not pids:
        return None
    total = 0.0
    for pid in pids:
        cpu = proc_cpu_seconds(pid)
        if cpu is None:
            return None
        total += cpu
    return total


def self_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


class Window:
    """The measurement window [start, end) in perf_counter time."""

    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end


# (wall clock, this process's CPU seconds, the server's CPU seconds or None) at one instant.
Mark = tuple[float, float, float | None]


async def window_marks(window: Window, server_pids: list[int] | None) -> tuple[Mark, Mark]:
    """The marks at the start and at the end of the measured window (sleeps until each)."""
    def mark() -> Mark:
        return (time.perf_counter(), self_cpu_seconds(), pids_cpu_seconds(server_pids or []))

    await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
    start = mark()
    await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
    return start, mark()


def window_report(concurrency: int, marks: tuple[Mark, Mark], latencies: list[float],
                  statuses: dict[str, int], ok: int, errors: list[str]) -> dict[str, Any]:
    """What both load generators report of one measured window: requests, statuses, rate,
    latency quantiles (ms) and the CPU the client and the server used over it."""
    (t0, c0, s0), (t1, c1, s1) = marks
    wall = t1 - t0
    latencies.sort()
    server_cpu = (s1 - s0) if s0 is not None and s1 is not None else None
    return {
        "concurrency": concurrency,
        "duration_s": wall,
        "requests": len(latencies),
        "ok": ok,
        "statuses": dict(sorted(statuses.items())),
        "errors": len(errors),
        "first_errors": errors[:3],
        "req_per_s": ok / wall if wall > 0 else 0.0,
        "p50_ms": (percentile(latencies, 0.50) or 0) * 1e3,
        "p90_ms": (percentile(latencies, 0.90) or 0) * 1e3,
        "p99_ms": (percentile(latencies, 0.99) or 0) * 1e3,
        "max_ms": (latencies[-1] if latencies else 0) * 1e3,
        "client_cpu_s": c1 - c0,
        "client_cpu_frac": (c1 - c0) / wall if wall > 0 else None,
        "server_cpu_s": server_cpu,
        "server_cpu_frac": server_cpu / wall if server_cpu is not None and wall > 0 else None,
    }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size + 2)
            del body[-2:]
        return status, bytes(body)
    return status, await reader.readexactly(length or 0)


async def _connection(host: str, port: int, request: bytes, window: Window,
                      latencies: list[float], statuses: dict[int, int], errors: list[str],
                      first_body: list[bytes]) -> None:
    reader = writer = None
    try:
        while True:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            if started >= window.end:
                return
            writer.write(request)
            try:
                status, body = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                writer.close()
                writer = None
                await asyncio.sleep(0.01)
                continue
            done = time.perf_counter()
            if not first_body:
                first_body.append(body[:300])
            if window.start <= done < window.end:
                latencies.append(done - started)
                statuses[status] = statuses.get(status, 0) + 1
    finally:
        if writer is not None:
            writer.close()


async def run_load(host: str, port: int, path: str, token: str, body: bytes, concurrency: int,
                   warmup: float, duration: float, server_pids: list[int] | None) -> dict:
    auth = f"Authorization: token {token}\r\n" if token else ""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"{auth}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body
    now = time.perf_counter()
    window = Window(now + warmup, now + warmup + duration)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    first_body: list[bytes] = []

    mark_task = asyncio.create_task(window_marks(window, server_pids))
    await asyncio.gather(*(
        _connection(host, port, request, window, latencies, statuses, errors, first_body)
        for _ in range(concurrency)
    ))
    report = window_report(concurrency, await mark_task, latencies,
                           {str(k): v for k, v in statuses.items()}, statuses.get(200, 0), errors)
    report["sample_answer"] = (first_body[0].decode("utf-8", "replace") if first_body
                               else None)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="closed-loop HTTP/1.1 POST load generator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--body-file", required=True)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--server-pid", type=int, action="append",
                   help="a server process to charge CPU to (repeatable)")
    args = p.parse_args(argv)
    with open(args.body_file, "rb") as f:
        body = f.read()
    result = asyncio.run(run_load(args.host, args.port, args.path, args.token, body,
                                  args.concurrency, args.warmup, args.duration, args.server_pid))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
