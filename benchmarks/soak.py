"""Soak: minutes of mixed traffic against a real server while versions are swapped.

``.venv/bin/python -m benchmarks.soak --minutes 5`` starts a ``jupyter tfserving`` child on
127.0.0.1 serving ``half_plus_two``, then, from this process (a separate process from the
server), runs closed-loop keep-alive clients (predict on the model, unversioned, and every tenth
request a status GET) while a driver swaps versions every ``--swap-every`` seconds through the
management API, as a notebook's ``serve(..., canary=...)`` would: publish a new version (upload),
wait until AVAILABLE, canary it at 25%, promote it, unload the version it replaced.

It reports failed requests (any non-200 answer or broken connection), p50/p99 latency of the
requests that started during a swap (from the upload to the unload, plus one second) against
those that started outside any swap, and the server's resident memory (VmRSS) after the warm-up
(which includes one whole swap, so first-time allocations are not counted as growth) and at the
end. Prints a table and writes JSON to benchmarks/results/soak-<timestamp>.json. Exit status 1
if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.loadgen import _read_response, percentile
from benchmarks.run import PREFIX, RESULTS, export, fmt, http_get, log, server

MODEL = "soak"


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def api(srv: Any, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/json") -> dict[str, Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{srv.base}{PREFIX}{path}", data=body, method=method,
                                 headers={"Authorization": f"token {srv.token}",
                                          "Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None


@dataclass
class Record:
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # start, latency, status
    errors: list[str] = field(default_factory=list)
    swaps: list[tuple[float, float]] = field(default_factory=list)
    versions_seen: dict[str, int] = field(default_factory=dict)


async def client(host: str, port: int, token: str, stop_at: float, rec: Record,
                 index: int) -> None:
    body = b'{"instances": [[1.0], [2.0]]}'
    predict = (f"POST {PREFIX}/v1/models/{MODEL}:predict HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Authorization: token {token}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    status = (f"GET {PREFIX}/v1/models/{MODEL} HTTP/1.1\r\nHost: {host}:{port}\r\n"
              f"Authorization: token {token}\r\n\r\n").encode()
    reader = writer = None
    n = index
    while time.perf_counter() < stop_at:
        if writer is None:
            reader, writer = await asyncio.open_connection(host, port)
        n += 1
        request = status if n % 10 == 0 else predict
        started = time.perf_counter()
        writer.write(request)
        try:
            code, answer = await _read_response(reader)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            rec.errors.append(f"{type(exc).__name__}: {exc}")
            writer.close()
            writer = None
            continue
        rec.samples.append((started, time.perf_counter() - started, code))
        if code != 200:
            rec.errors.append(f"HTTP {code}: {answer[:200]!r}")
    if writer is not None:
        writer.close()


def swap_driver(srv: Any, root_copy: Path, every: float, canary_seconds: float, stop_at: float,
                rec: Record, first_done: threading.Event) -> None:
    """Every ``every`` seconds: publish, canary, promote, unload the replaced version."""
    from jupyter_tfserving.core.archive import pack_directory

    archive = pack_directory(str(root_copy))
    stable = 1
    api(srv, "PUT", f"/api/models/{MODEL}/labels/stable", json.dumps({"version": 1}).encode())
    next_at = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now < next_at:
            time.sleep(min(0.2, next_at - now))
            continue
        if now + every > stop_at + 1 and first_done.is_set():
            return
        started = time.perf_counter()
        new = api(srv, "POST", f"/api/models/{MODEL}/versions", archive,
                  "application/gzip")["version"]
        while True:
            model = api(srv, "GET", f"/api/models/{MODEL}")
            state = {v["version"]: v["state"] for v in model["versions"]}.get(new)
            if state == "AVAILABLE":
                break
            if state == "END":
                raise RuntimeError(f"version {new} failed to load: {model}")
            time.sleep(0.05)
        api(srv, "POST", f"/api/models/{MODEL}:canary",
            json.dumps({"weight": 0.25, "version": new}).encode())
        time.sleep(canary_seconds)
        api(srv, "POST", f"/api/models/{MODEL}:promote")
        api(srv, "POST", f"/api/models/{MODEL}/versions/{stable}:unload")
        stable = new
        rec.swaps.append((started, time.perf_counter() + 1.0))
        first_done.set()
        next_at = started + every


def summarise(rec: Record, measure_from: float, rss_start: int, rss_end: int,
              args: argparse.Namespace) -> dict[str, Any]:
    def in_swap(t: float) -> bool:
        return any(a <= t <= b for a, b in rec.swaps)

    measured = [s for s in rec.samples if s[0] >= measure_from]
    swap = sorted(lat for t, lat, _ in measured if in_swap(t))
    steady = sorted(lat for t, lat, _ in measured if not in_swap(t))
    failed = sum(1 for _, _, code in rec.samples if code != 200) + sum(
        1 for e in rec.errors if not e.startswith("HTTP"))
    p99_swap, p99_steady = percentile(swap, 0.99), percentile(steady, 0.99)
    wall = (max(t for t, _, _ in measured) - measure_from) if measured else 0.0
    return {
        "minutes": args.minutes, "clients": args.clients, "swap_every_s": args.swap_every,
        "requests": len(rec.samples), "measured_requests": len(measured),
        "req_per_s": len(measured) / wall if wall else None,
        "failed": failed, "first_errors": rec.errors[:5],
        "swaps": len(rec.swaps),
        "steady": {"requests": len(steady), "p50_ms": (percentile(steady, 0.5) or 0) * 1e3,
                   "p99_ms": (p99_steady or 0) * 1e3},
        "during_swaps": {"requests": len(swap), "p50_ms": (percentile(swap, 0.5) or 0) * 1e3,
                         "p99_ms": (p99_swap or 0) * 1e3},
        "p99_swap_over_steady": (p99_swap / p99_steady) if p99_swap and p99_steady else None,
        "rss_start_mb": rss_start / 2**20, "rss_end_mb": rss_end / 2**20,
        "rss_growth": (rss_end - rss_start) / rss_start,
    }


def table(r: dict[str, Any]) -> str:
    rows = [
        ("requests (measured)", f"{r['measured_requests']:,} ({fmt(r['req_per_s'])}/s)"),
        ("failed requests", str(r["failed"])),
        ("version swaps (publish, 25% canary, promote, unload)", str(r["swaps"])),
        ("p50 / p99 ms, steady", f"{fmt(r['steady']['p50_ms'], 2)} / "
                                f"{fmt(r['steady']['p99_ms'], 2)}"),
        ("p50 / p99 ms, during swaps", f"{fmt(r['during_swaps']['p50_ms'], 2)} / "
                                      f"{fmt(r['during_swaps']['p99_ms'], 2)}"),
        ("p99 during swaps / steady", fmt(r["p99_swap_over_steady"], 2)),
        ("server RSS after warm-up / at end (MB)", f"{fmt(r['rss_start_mb'])} / "
                                                  f"{fmt(r['rss_end_mb'])}"),
        ("RSS growth", f"{r['rss_growth'] * 100:+.1f}%"),
    ]
    lines = ["| soak | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--swap-every", type=float, default=20.0, help="seconds between swaps")
    p.add_argument("--canary-seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=30.0,
                   help="seconds before measuring (one swap happens in it)")
    p.add_argument("--output")
    args = p.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_path = Path(args.output) if args.output else RESULTS / f"soak-{stamp}.json"
    with tempfile.TemporaryDirectory(prefix="jtfs-soak-") as tmp:
        workdir = Path(tmp)
        root = workdir / "models"
        root.mkdir()
        export("half_plus_two", workdir / "hpt")
        (root / MODEL).mkdir()
        os.symlink(workdir / "hpt" / "1", root / MODEL / "1", target_is_directory=True)
        with server(root, workdir, ["--TFServingApp.file_system_poll_wait_seconds=1"]) as srv:
            srv.wait_available(MODEL)
            status, _ = http_get(f"{srv.base}{PREFIX}/v1/models/{MODEL}", srv.token)
            assert status == 200
            rec = Record()
            start = time.perf_counter()
            stop_at = start + args.warmup + args.minutes * 60
            first_done = threading.Event()
            driver_error: list[BaseException] = []

            def drive() -> None:
                try:
                    swap_driver(srv, workdir / "hpt" / "1", args.swap_every,
                                args.canary_seconds, stop_at, rec, first_done)
                except BaseException as exc:  # reported after the run
                    driver_error.append(exc)
                    first_done.set()

            driver = threading.Thread(target=drive, daemon=True)
            log(f"soak: {args.clients} clients for {args.warmup:.0f}s warm-up + "
                f"{args.minutes:g} min, a swap every {args.swap_every:g}s")
            driver.start()

            async def load() -> float:
                tasks = [asyncio.create_task(client("127.0.0.1", srv.port, srv.token, stop_at,
                                                    rec, i)) for i in range(args.clients)]
                while time.perf_counter() < start + args.warmup or not first_done.is_set():
                    await asyncio.sleep(0.2)
                measure_from = time.perf_counter()
                rss_holder.append(rss_bytes(srv.proc.pid))
                await asyncio.gather(*tasks)
                return measure_from

            rss_holder: list[int] = []
            measure_from = asyncio.run(load())
            driver.join(120)
            rss_end = rss_bytes(srv.proc.pid)
            if driver_error:
                raise RuntimeError(f"swap driver failed: {driver_error[0]}\n{srv.log_tail()}")
    result = summarise(rec, measure_from, rss_holder[0], rss_end, args)
    result["command"] = " ".join(["python", "-m", "benchmarks.soak", *sys.argv[1:]])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nJSON: {out_path}")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
