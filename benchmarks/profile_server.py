"""Profile a server under load with py-spy: where the CPU goes per request.

    .venv/bin/pip install py-spy        # once (a dev tool; not a dependency of the project)
    .venv/bin/python -m benchmarks.profile_server --target predict --concurrency 16 --duration 10
    .venv/bin/python -m benchmarks.profile_server --target echo
    .venv/bin/python -m benchmarks.profile_server --target mlp784 --concurrency 48
    .venv/bin/python -m benchmarks.profile_server --analyze FILE.txt   # a recorded profile again

Starts a server exactly as ``benchmarks.run`` does (``python -m jupyter_tfserving`` with the echo
extension and ``half_plus_two``, or ``mlp784`` for ``--target mlp784``), drives ``:predict``
(``predict``, ``mlp784``) or ``POST /bench/echo`` (``echo``) with ``benchmarks.loadgen``, and,
after the warm-up, runs ``py-spy record -p PID --threads -f raw`` over the measured window (plus
``-f speedscope`` with ``--speedscope``, for https://www.speedscope.app). The collapsed stacks
are then summarised: samples per thread, and the inclusive share of the request path's stages
(:data:`STAGES`: tornado's HTTP parsing, jupyter_server's ``prepare`` and its identity lookup,
the login cookie, the authorizer, the request log, the handler, JSON, thread hand-offs,
TensorFlow) and the top functions by self time, as Markdown on stdout; the raw profile stays in
``--out`` (default ``benchmarks/results/profiles/<stamp>-<target>/``).

py-spy samples the threads that are running ``--rate`` times a second (``--nonblocking``: it
reads the stacks without pausing the server, which would otherwise lose a third of its
throughput); the shares are of the server process's busy samples, all threads, samples waiting
in a queue, a condition or epoll left out (:data:`IDLE_LEAVES`). Per-thread CPU comes from
/proc, so it also covers TensorFlow's native threads, which py-spy does not sample.
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

from benchmarks.run import PREFIX, PY, REPO, RESULTS, child_env, export, http_post, mlp_body, server

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


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (thread name, utime + stime seconds) for every thread of ``pid``, from /proc
    (TensorFlow's native thread pools included, which py-spy cannot sample)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (task / "stat").read_bytes()
        except OSError:
            continue
        name = raw[raw.index(b"(") + 1:raw.rindex(b")")].decode(errors="replace")
        fields = raw[raw.rindex(b")") + 1:].split()
        out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return out


def thread_cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                     wall: float) -> list[tuple[str, int, float, float]]:
    """(thread name with digits folded, threads, CPU seconds, cores) over the window."""
    groups: dict[str, list[float]] = {}
    for tid, (name, cpu) in after.items():
        used = cpu - before.get(tid, (name, 0.0))[1]
        key = re.sub(r"\d+", "N", name)
        groups.setdefault(key, []).append(used)
    rows = [(k, len(v), sum(v), sum(v) / wall) for k, v in groups.items()]
    return sorted(rows, key=lambda r: -r[2])


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


def profile(args: argparse.Namespace) -> int:
    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(pyspy).exists():
        sys.exit("py-spy not found: .venv/bin/pip install py-spy")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.out) if args.out else RESULTS / "profiles" / f"{stamp}-{args.target}"
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
        with server(root, workdir, args.server_arg or [], echo=True) as srv:
            srv.wait_available(model)
            status, answer = http_post(srv.base + path, srv.token, body)
            if status != 200:
                raise RuntimeError(f"HTTP {status} {answer[:300]!r}")
            body_file = workdir / "body.json"
            body_file.write_bytes(body)
            load = subprocess.Popen(
                [PY, "-m", "benchmarks.loadgen", "--port", str(srv.port), "--path", path,
                 "--token", srv.token, "--body-file", str(body_file),
                 "--concurrency", str(args.concurrency), "--warmup", str(args.warmup),
                 "--duration", str(args.duration), "--server-pid", str(srv.proc.pid)],
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
            per_thread = thread_cpu_delta(cpu0, thread_cpu(srv.proc.pid),
                                          time.perf_counter() - t0)
            if spy.returncode != 0:
                print(spy.stderr, file=sys.stderr)
            load_out, _ = load.communicate(timeout=args.duration + 120)
            result = json.loads(load_out.strip().splitlines()[-1])
            if args.speedscope:  # a second window, same load (py-spy writes one format a run)
                load = subprocess.Popen(
                    [PY, "-m", "benchmarks.loadgen", "--port", str(srv.port), "--path", path,
                     "--token", srv.token, "--body-file", str(body_file),
                     "--concurrency", str(args.concurrency), "--warmup", "1",
                     "--duration", str(args.duration)],
                    cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL)
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
    text = markdown(summary, f"{args.target} x{args.concurrency}, {args.duration:.0f} s, "
                             f"{args.rate} Hz"
                             f"{', GIL holder only' if args.gil else ''}"
                             f"{', blocking' if args.blocking else ''}")
    text += ("\n\n| server threads (/proc, by name) | threads | CPU s | cores |\n"
             "|---|---|---|---|\n" +
             "\n".join(f"| {n} | {k} | {c:.2f} | {f:.2f} |" for n, k, c, f in per_thread
                       if c > 0))
    (out_dir / "summary.md").write_text(text + "\n")
    print(text)
    print(f"\nraw profile: {raw}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=("predict", "echo", "mlp784"), default="predict")
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
