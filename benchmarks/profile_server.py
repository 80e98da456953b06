"""Profile a server under load with py-spy: where the CPU goes per request.

    .venv/bin/pip install py-spy        # once (a dev tool; not a dependency of the project)
    .venv/bin/python -m benchmarks.profile_server --target predict --concurrency 16 --duration 10
    .venv/bin/python -m benchmarks.profile_server --target echo
    .venv/bin/python -m benchmarks.profile_server --target mlp784 --concurrency 48
    .venv/bin/python -m benchmarks.profile_server --target predict --grpc   # gRPC Predict
    .venv/bin/python -m benchmarks.profile_server --analyze FILE.txt   # a recorded profile again

Starts a server exactly as ``benchmarks.run`` does (``python -m jupyter_tfserving`` with the echo
extension and ``half_plus_two``, or ``mlp784`` for ``--target mlp784``), drives ``:predict``
(``predict``, ``mlp784``) or ``POST /bench/echo`` (``echo``) with ``benchmarks.loadgen`` (with
``--grpc``: TF Serving's gRPC Predict of the same model, ``tensor_content`` inputs, with
``benchmarks.grpc_loadgen``, as the ``grpc`` scenario of ``benchmarks.run`` does), and,
after the warm-up, runs ``py-spy record -p PID --threads -f raw`` over the measured window (plus
``-f speedscope`` with ``--speedscope``, for https://www.speedscope.app). The collapsed stacks
are then summarised: samples per thread, and the inclusive share of the request path's stages
(:data:`STAGES`: tornado's HTTP parsing, jupyter_server's ``prepare`` and its identity lookup,
the login cookie, the authorizer, the request log, the handler, JSON, thread hand-offs,
TensorFlow; on the gRPC path the servicer, its auth check, the codec, ``asyncio.wait_for``)
and the top functions by self time, as Markdown on stdout; the raw profile stays in ``--out``
(default ``benchmarks/results/profiles/<stamp>-<target>[-grpc]/``).

py-spy samples the threads that are running ``--rate`` times a second (``--nonblocking``: it
reads the stacks without pausing the server, which would otherwise lose a third of its
throughput); the shares are of the server process's busy samples, all threads, samples waiting
in a queue, a condition or epoll left out (:data:`IDLE_LEAVES`). Per-thread CPU (user and
system) and context switches per request come from /proc, so they also cover TensorFlow's and
gRPC's native threads, which py-spy does not sample.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np

from benchmarks.run import (
    PREFIX,
    PY,
    REPO,
    RESULTS,
    Server,
    child_env,
    export,
    http_post,
    mlp_body,
    server,
)

# Stage -> regular expression matched against each frame of a sample, as py-spy names it
# ("Class.method (pkg/file.py)", line number dropped), and optionally one that no frame may
# match. A sample counts toward a stage if any of its frames matches (inclusive time); stages
# overlap (indented ones are parts of the one above). Caveats: tornado runs a handler's
# ``_execute`` up to its first suspension inside ``HTTP1Connection._read_message`` (hence the
# exclusion below); a coroutine awaited through ``asyncio.wait_for`` runs in a Task of its own,
# whose frames are not under the handler method that awaits it.
_HANDLER = r"^(RequestHandler\._execute|Application\.find_handler|RequestHandler\.__init__) \("
STAGES: list[tuple[str, ...]] = [
    ("IOLoop thread (everything on the event loop)", r"^BaseEventLoop\.run_forever \("),
    ("  tornado HTTP/1 read + header parse (the handler's own frames excluded)",
     r"^HTTP1Connection\.(_read_message|_read_message_inner|_parse_headers|_read_fixed_body|"
     r"_read_body) \(", _HANDLER),
    ("  Application.find_handler + RequestHandler.__init__ (routing, clear(), default headers)",
     r"^(Application\.find_handler|RequestHandler\.__init__) \(tornado/web"),
    ("  RequestHandler._execute (prepare + method + finish)", r"^RequestHandler\._execute \("),
    ("    APIHandler.prepare (identity, host, CORS, XSRF, origin)",
     r"^APIHandler\.prepare \(jupyter_server"),
    ("      IdentityProvider._get_user", r"^IdentityProvider\._get_user \("),
    ("        IdentityProvider.set_login_cookie (sign + Set-Cookie, every request)",
     r"^IdentityProvider\.set_login_cookie \("),
    ("        IdentityProvider.generate_anonymous_user (uuid4 + random name)",
     r"^IdentityProvider\.generate_anonymous_user \("),
    ("        IdentityProvider.get_user_cookie (x2: parse Cookie header)",
     r"^IdentityProvider\.get_user_cookie \("),
    ("      check_host / check_xsrf_cookie / set_cors_headers / check_origin",
     r"^JupyterHandler\.(check_host|check_xsrf_cookie|set_cors_headers|check_origin) \("),
    ("      inspect.getmodule (prepare's get_current_user override check)",
     r"^getmodule \(inspect"),
    ("    handler method (RoutedHandler.post / V1Handler.post / EchoHandler.post)",
     r"^(RoutedHandler|V1Handler|EchoHandler)\.post \("),
    ("      authorization (@authorized / TFServingHandler.authorize)",
     r"^(authorized\.<locals>\.wrapper\.<locals>\.inner|TFServingHandler\.authorize) \("),
    ("      V1Handler._predict (decode inline, schedule, await, encode)",
     r"^V1Handler\._predict \("),
    ("      APIHandler.finish -> RequestHandler.finish (headers, write, log)",
     r"^APIHandler\.finish \("),
    ("        update_api_activity (get_argument + utcnow per request)",
     r"^APIHandler\.update_api_activity \("),
    ("        RequestHandler.flush (format headers, write to the socket)",
     r"^RequestHandler\.flush \("),
    ("        request log (RequestHandler._log -> jupyter_server log_request)",
     r"^RequestHandler\._log \("),
    ("          prometheus_log_method (http_request_duration_seconds)",
     r"^prometheus_log_method \("),
    ("          LogRecord creation (logger.debug of a formatted line)",
     r"^(Logger\._log|LogRecord\.__init__|Logger\.debug) \(logging"),
    ("      ServingStats.record_request", r"^ServingStats\.record_request \("),
    ("  IOStream socket write/read syscalls",
     r"^IOStream\.(write_to_fd|read_from_fd) \("),
    ("thread hand-offs (call_soon_threadsafe + self-pipe write/read, wrap_future; all threads)",
     r"^(_chain_future|_call_set_state|_copy_future_state|BaseEventLoop\.call_soon_threadsafe|"
     r"BaseSelectorEventLoop\._write_to_self|BaseSelectorEventLoop\._read_from_self|"
     r"wrap_future|_set_state)(\.<locals>\.\w+)? \(asyncio/"),
    ("gRPC: the method handler (servicers.py behaviour: parse, serve, serialise)",
     r"^behaviour \(jupyter_tfserving/grpc/servicers"),
    ("  gRPC: auth check (GrpcAuth.check)", r"^GrpcAuth\.(check|_ask) \("),
    ("  gRPC: request parse (FromString) / answer SerializeToString",
     r"^(FromString|SerializeToString|ParseFromString|MergeFromString) \("),
    ("  gRPC: asyncio.wait_for (the call's deadline: a Task and a timer per call)",
     r"^wait_for \(asyncio/tasks"),
    ("  gRPC: PredictionServiceServicer._predict (decode, submit, await, encode)",
     r"^PredictionServiceServicer\._predict \("),
    ("  gRPC: codec (decode_inputs, predict_response, array_into)",
     r"\(jupyter_tfserving/grpc/codec"),
    ("  gRPC: record_request (metrics + statistics)", r"\.record_request \("),
    ("JSON parse/encode (json_codec, json, orjson)",
     r"\((jupyter_tfserving/rest/json_codec|json/)"),
    ("worker threads (concurrent.futures _worker, busy)", r"^_worker \(concurrent/futures"),
    ("data plane (jupyter_tfserving/dataplane.py, service.py)",
     r"\(jupyter_tfserving/(dataplane|service)\.py"),
    ("batch scheduler (jupyter_tfserving/batching)", r"\(jupyter_tfserving/batching/"),
    ("TensorFlow session run (python side)", r"\(tensorflow/"),
    ("logging module (any)", r"\(logging/__init__\.py"),
]

# Leaves that mean a thread is waiting, not working (py-spy cannot always tell): a blocked
# queue.get in an executor worker shows as its caller ``_worker``; Condition.wait, the
# selector's epoll wait and the like. Samples ending in one of them are counted as idle.
IDLE_LEAVES = re.compile(
    r"^(_worker \(concurrent/futures/thread|Condition\.wait \(threading|Event\.wait "
    r"\(threading|EpollSelector\.select \(selectors|Thread\.join|_wait_for_tstate_lock "
    r"\(threading|SimpleQueue\.get|Queue\.get \(queue)")


class ThreadStat(NamedTuple):
    """One thread's counters from /proc: user and system CPU seconds, voluntary (it blocked:
    a lock, the GIL, a queue, a syscall) and involuntary (preempted) context switches."""

    name: str
    user: float
    sys: float
    voluntary: int
    involuntary: int


def thread_cpu(pid: int) -> dict[int, ThreadStat]:
    """tid -> :class:`ThreadStat` for every thread of ``pid``, from /proc (TensorFlow's native
    thread pools included, which py-spy cannot sample). The main thread (the IOLoop, where
    tornado and grpc.aio run) is named ``main thread``; Python's other threads show as
    ``python``."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (task / "stat").read_bytes()
            status = (task / "status").read_text()
        except OSError:
            continue
        name = raw[raw.index(b"(") + 1:raw.rindex(b")")].decode(errors="replace")
        fields = raw[raw.rindex(b")") + 1:].split()
        switches = {k: int(v) for k, _, v in (line.partition(":\t") for line in
                                               status.splitlines())
                    if k in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")}
        tid = int(task.name)
        out[tid] = ThreadStat("main thread" if tid == pid else name,
                              int(fields[11]) / ticks, int(fields[12]) / ticks,
                              switches.get("voluntary_ctxt_switches", 0),
                              switches.get("nonvoluntary_ctxt_switches", 0))
    return out


def thread_cpu_delta(before: dict[int, ThreadStat], after: dict[int, ThreadStat]
                     ) -> list[tuple[str, int, ThreadStat]]:
    """(thread name with digits folded, threads, the group's counters over the window),
    busiest first."""
    groups: dict[str, tuple[int, ThreadStat]] = {}
    for tid, now in after.items():
        was = before.get(tid, ThreadStat(now.name, 0.0, 0.0, 0, 0))
        key = re.sub(r"\d+", "N", now.name)
        n, acc = groups.get(key, (0, ThreadStat(key, 0.0, 0.0, 0, 0)))
        groups[key] = (n + 1, ThreadStat(key, acc.user + now.user - was.user,
                                         acc.sys + now.sys - was.sys,
                                         acc.voluntary + now.voluntary - was.voluntary,
                                         acc.involuntary + now.involuntary - was.involuntary))
    rows = [(k, n, t) for k, (n, t) in groups.items()]
    return sorted(rows, key=lambda r: -(r[2].user + r[2].sys))


def thread_table(per_thread: list[tuple[str, int, ThreadStat]], wall: float,
                 requests: float) -> str:
    """Markdown: each thread group's CPU (user / sys, in cores) and, per request served in the
    window, its CPU ms and context switches."""
    lines = ["| server threads (/proc, by name) | threads | cores user / sys | "
             "CPU ms per request user / sys | context switches per request vol / invol |",
             "|---|---|---|---|---|"]
    n = max(requests, 1.0)
    for name, k, t in per_thread:
        if t.user + t.sys <= 0:
            continue
        lines.append(f"| {name} | {k} | {t.user / wall:.2f} / {t.sys / wall:.2f} | "
                     f"{1e3 * t.user / n:.3f} / {1e3 * t.sys / n:.3f} | "
                     f"{t.voluntary / n:.2f} / {t.involuntary / n:.2f} |")
    total = ThreadStat("all", sum(t.user for _, _, t in per_thread),
                       sum(t.sys for _, _, t in per_thread),
                       sum(t.voluntary for _, _, t in per_thread),
                       sum(t.involuntary for _, _, t in per_thread))
    lines.append(f"| all | {sum(k for _, k, _ in per_thread)} | {total.user / wall:.2f} / "
                 f"{total.sys / wall:.2f} | {1e3 * total.user / n:.3f} / "
                 f"{1e3 * total.sys / n:.3f} | {total.voluntary / n:.2f} / "
                 f"{total.involuntary / n:.2f} |")
    return "\n".join(lines)


def parse_raw(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) output: ``frame;frame;... count`` per line, root first."""
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def _frame_name(frame: str) -> str:
    """``func (pkg/file.py:123)`` -> ``func (pkg/file.py)``."""
    return re.sub(r":\d+\)$", ")", frame)


def summarise(stacks: list[tuple[list[str], int]], top: int = 25) -> dict:
    threads: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    idle = 0
    compiled = [(stage[0], re.compile(stage[1]),
                 re.compile(stage[2]) if len(stage) > 2 else None) for stage in STAGES]
    for frames, count in stacks:
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        names = [_frame_name(f) for f in frames if not f.startswith(("thread", "process"))]
        leaf = names[-1] if names else "?"
        if IDLE_LEAVES.search(leaf):
            idle += count
            continue
        threads[thread] += count
        for name, rx, exclude in compiled:
            if any(rx.search(n) for n in names) and not (
                    exclude and any(exclude.search(n) for n in names)):
                stages[name] += count
        self_time[leaf] += count
    total = sum(threads.values())

    def pct(n: int) -> float:
        return 100.0 * n / total if total else 0.0

    return {
        "samples": total,
        "idle_samples": idle,
        "threads": [(t, c, pct(c)) for t, c in threads.most_common()],
        "stages": [(stage[0], stages[stage[0]], pct(stages[stage[0]])) for stage in STAGES],
        "self": [(f, c, pct(c)) for f, c in self_time.most_common(top)],
    }


def markdown(summary: dict, title: str) -> str:
    lines = [f"### {title}", "",
             f"{summary['samples']} busy samples, all threads ({summary['idle_samples']} idle "
             "samples left out: waits in a queue, condition or epoll).", "",
             "| thread | samples | share |", "|---|---|---|"]
    lines += [f"| {t} | {c} | {p:.1f}% |" for t, c, p in summary["threads"]]
    lines += ["", "| stage (inclusive) | samples | share |", "|---|---|---|"]
    lines += [f"| {n} | {c} | {p:.1f}% |" for n, c, p in summary["stages"]]
    lines += ["", "| function (self) | samples | share |", "|---|---|---|"]
    lines += [f"| `{f}` | {c} | {p:.1f}% |" for f, c, p in summary["self"]]
    return "\n".join(lines)


def load_command(args: argparse.Namespace, srv: Server, path: str, body_file: Path,
                 warmup: float, with_pid: bool = False) -> list[str]:
    """The load generator's command line: benchmarks.loadgen (POST ``path``) or, with
    ``--grpc``, benchmarks.grpc_loadgen (Predict); ``with_pid`` charges the server's CPU."""
    if args.grpc:
        from benchmarks.grpc_bench import PREDICT_METHOD

        target = ["benchmarks.grpc_loadgen", "--target", srv.grpc_target,
                  "--method", PREDICT_METHOD]
    else:
        target = ["benchmarks.loadgen", "--port", str(srv.port), "--path", path]
    return [PY, "-m", *target, "--token", srv.token, "--body-file", str(body_file),
            "--concurrency", str(args.concurrency), "--warmup", str(warmup),
            "--duration", str(args.duration),
            *(["--server-pid", str(srv.proc.pid)] if with_pid else [])]


def profile(args: argparse.Namespace) -> int:
    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(pyspy).exists():
        sys.exit("py-spy not found: .venv/bin/pip install py-spy")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"{args.target}{'-grpc' if args.grpc else ''}"
    out_dir = Path(args.out) if args.out else RESULTS / "profiles" / f"{stamp}-{name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jtfs-prof-") as tmp:
        workdir = Path(tmp)
        root = workdir / "models"
        root.mkdir()
        if args.target == "mlp784":
            model, body = "mlp784", mlp_body(784)
        else:
            model, body = "half_plus_two", b'{"instances": [[1.0]]}'
        export(model, root / model)
        path = "/bench/echo" if args.target == "echo" else f"{PREFIX}/v1/models/{model}:predict"
        if args.grpc:
            from benchmarks import grpc_bench

            rows = np.asarray(json.loads(body)["instances"], dtype=np.float32)
            body = grpc_bench.predict_request(model, {"x": rows})
        with server(root, workdir, args.server_arg or [], echo=True, grpc=args.grpc) as srv:
            srv.wait_available(model)
            if args.grpc:
                srv.grpc_call(grpc_bench.PREDICT_METHOD, body)
            else:
                status, answer = http_post(srv.base + path, srv.token, body)
                if status != 200:
                    raise RuntimeError(f"HTTP {status} {answer[:300]!r}")
            body_file = workdir / "body.bin"
            body_file.write_bytes(body)
            load = subprocess.Popen(
                load_command(args, srv, path, body_file, args.warmup, with_pid=True),
                cwd=REPO, env=child_env(), stdout=subprocess.PIPE, text=True)
            time.sleep(args.warmup)
            raw = out_dir / "profile.txt"
            cmd = [pyspy, "record", "-p", str(srv.proc.pid), "--threads", "-f", "raw",
                   "-r", str(args.rate), "-d", str(int(args.duration)), "-o", str(raw),
                   *(["--native"] if args.native else []),
                   *([] if args.blocking else ["--nonblocking"]),
                   *(["--gil"] if args.gil else [])]
            print(f"$ {' '.join(cmd)}", file=sys.stderr)
            cpu0, t0 = thread_cpu(srv.proc.pid), time.perf_counter()
            spy = subprocess.run(cmd, capture_output=True, text=True)
            per_thread = thread_cpu_delta(cpu0, thread_cpu(srv.proc.pid))
            wall = time.perf_counter() - t0
            if spy.returncode != 0:
                print(spy.stderr, file=sys.stderr)
            load_out, _ = load.communicate(timeout=args.duration + 120)
            result = json.loads(load_out.strip().splitlines()[-1])
            if args.speedscope:  # a second window, same load (py-spy writes one format a run)
                load = subprocess.Popen(load_command(args, srv, path, body_file, 1.0),
                                        cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL,
                                        text=True)
                time.sleep(1)
                subprocess.run([pyspy, "record", "-p", str(srv.proc.pid), "-f", "speedscope",
                                "-r", str(args.rate), "-d", str(int(args.duration)),
                                "-o", str(out_dir / "profile.speedscope.json")],
                               capture_output=True)
                load.wait(timeout=args.duration + 120)
    (out_dir / "loadgen.json").write_text(json.dumps(result, indent=2))
    (out_dir / "command.txt").write_text(" ".join(cmd) + "\n")
    print(f"load: {result['req_per_s']:.0f} req/s, server {result['server_cpu_frac']:.2f} cores, "
          f"{1e3 * result['server_cpu_s'] / max(1, result['requests']):.3f} server CPU ms/request "
          f"(py-spy's pauses included), client {result['client_cpu_frac']:.2f} cores")
    summary = summarise(parse_raw(raw), args.top)
    text = markdown(summary, f"{name} x{args.concurrency}, {args.duration:.0f} s, "
                             f"{args.rate} Hz"
                             f"{', GIL holder only' if args.gil else ''}"
                             f"{', blocking' if args.blocking else ''}")
    # requests in the /proc window: the load's rate over it (the two windows nearly coincide)
    text += "\n\n" + thread_table(per_thread, wall, result["req_per_s"] * wall)
    (out_dir / "summary.md").write_text(text + "\n")
    print(text)
    print(f"\nraw profile: {raw}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=("predict", "echo", "mlp784"), default="predict")
    p.add_argument("--grpc", action="store_true",
                   help="drive TF Serving's gRPC Predict (predict, mlp784) instead of REST")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--blocking", action="store_true",
                   help="let py-spy pause the server for each sample (exact stacks, but it slows "
                   "the server down by a third at 200 Hz; default: --nonblocking)")
    p.add_argument("--gil", action="store_true",
                   help="py-spy --gil: only samples of the thread holding the GIL (Python's own "
                   "CPU; a thread waiting for the GIL or in TensorFlow's C++ is left out)")
    p.add_argument("--native", action="store_true", help="py-spy --native (C/C++ frames too)")
    p.add_argument("--speedscope", action="store_true",
                   help="also record a speedscope profile (a second window of the same load)")
    p.add_argument("--top", type=int, default=25, help="functions listed by self time")
    p.add_argument("--server-arg", action="append",
                   help="extra server argument, e.g. --TFServingApp.enable_batching=False")
    p.add_argument("--out", help="directory for the profile (default benchmarks/results/profiles/)")
    p.add_argument("--analyze", metavar="RAW", help="summarise a recorded raw profile and exit")
    args = p.parse_args(argv)
    if args.analyze:
        print(markdown(summarise(parse_raw(Path(args.analyze)), args.top), args.analyze))
        return 0
    return profile(args)


if __name__ == "__main__":
    sys.exit(main())
