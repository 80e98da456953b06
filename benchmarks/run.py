"""Run the benchmarks and print one table: ``.venv/bin/python -m benchmarks.run [--quick]``.

Scenarios (see benchmarks/README.md):

- ``serving_path``: the manager + batch scheduler in process, with a model that does nothing
  (benchmarks/inprocess.py), per CPU-second, against TF Serving's ~100,000/s/core claim.
- ``http``: ``:predict`` on half_plus_two vs a bare APIHandler on the same server
  (benchmarks/echo_extension.py), same concurrency and duration.
- ``batching``: a memory-bound 4096-wide MLP, one row per request, batching on vs off, against
  the model's own in-process throughput at batch 1 and at the observed mean batch size.
- ``mlp784``: the 784-4096-4096-10 MLP (~80 MB), 48 clients, one row per request, batching on vs
  off; the server's CPU efficiency: the model's own CPU per row at batch 32 in process over the
  server process's CPU per served row under load.
- ``--mlserver`` (opt-in) adds MLServer 1.7 (its own venv, benchmarks/mlserver_bench.py) serving
  y = 0.5x + 2 to the ``http`` scenario: same load generator and concurrency, ours / MLServer.

Every server is a real ``python -m jupyter_tfserving`` child process on 127.0.0.1, driven by a
separate asyncio load-generator process (benchmarks/loadgen.py); both are killed in ``finally``.
Results go to benchmarks/results/<timestamp>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MODEL_CACHE = RESULTS / "models"
PY = sys.executable
SCENARIOS = ("serving_path", "http", "batching", "mlp784")
# Targets of the issue (ratios measured side by side in one run; reported, never asserted).
TARGET_MLP784_ON_OFF = 4.0
TARGET_MLP784_CPU_EFFICIENCY = 0.5
BASELINE_MLP784_CPU_EFFICIENCY = 0.30
TARGET_OURS_OVER_MLSERVER = 1.0
TARGET_PREDICT_OVER_BARE = 0.7
TARGET_SERVING_PATH_PER_CPU_S = 30_000.0
# "Today" in the issue that set the targets (this machine, before the data plane refactor,
# commit ff17d4a): printed beside this run's figures.
TODAY = {
    "predict_over_bare": "0.53x",
    "ours_over_mlserver": "0.79x",
    "serving_path": "9,600-16,000",
    "mlp784_on_off": "2.1-2.8x",
    "mlp784_cpu_efficiency": "0.30",
}
# --server-arg: more arguments for every server of the run.
SERVER_ARGS: list[str] = []
PREFIX = "/tfserving"
METRIC = ":tensorflow:serving:"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # as the demo and the test suite run TF
    return env


def run_json(args: list[str], timeout: float) -> dict[str, Any]:
    """Run a ``python -m benchmarks.X`` child to completion; parse its last stdout line."""
    proc = subprocess.run([PY, *args], cwd=REPO, env=child_env(), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, token: str, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, token: str, body: bytes, timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """A running ``python -m jupyter_tfserving`` child."""

    def __init__(self, proc: subprocess.Popen, port: int, token: str, log_path: Path) -> None:
        self.proc, self.port, self.token, self.log_path = proc, port, token, log_path

    def pids(self) -> list[int]:
        return [self.proc.pid]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_available(self, model: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                status, body = http_get(f"{self.base}{PREFIX}/v1/models/{model}", self.token, 5)
                if status == 200 and b'"AVAILABLE"' in body:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{model} not AVAILABLE in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.25)

    def metrics(self) -> str:
        status, body = http_get(f"{self.base}{PREFIX}/monitoring/prometheus/metrics", self.token)
        if status != 200:
            raise RuntimeError(f"metrics: HTTP {status}: {body[:300]!r}")
        return body.decode()


@contextmanager
def server(model_root: Path, workdir: Path, extra: list[str], echo: bool = False,
           extensions: tuple[str, ...] = (), env: dict[str, str] | None = None
           ) -> Iterator[Server]:
    """A server on a free port with a fresh token; ``echo`` adds benchmarks/echo_extension.py,
    ``extensions`` more server extensions (module names), ``env`` more environment."""
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        PY, "-m", "jupyter_tfserving", "--allow-root", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.open_browser=False",
        f"--IdentityProvider.token={token}", f"--TFServingApp.model_root={model_root}",
        "--TFServingApp.file_system_poll_wait_seconds=0", "--ServerApp.log_level=WARN",
        *SERVER_ARGS, *extra,
    ]
    modules = (("benchmarks.echo_extension",) if echo else ()) + tuple(extensions)
    if modules:
        listed = ", ".join(f"'{m}': True" for m in modules)
        cmd.append(f"--ServerApp.jpserver_extensions={{{listed}}}")
    log_path = workdir / f"server-{port}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=workdir, env={**child_env(), **(env or {})},
                                stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Server(proc, port, token, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def loadgen(srv: Any, path: str, body: bytes, workdir: Path, concurrency: int,
            warmup: float, duration: float, metrics: bool = False) -> dict[str, Any]:
    """Drive ``srv`` (a :class:`Server`, or anything with ``port``, ``token`` ('' for none) and
    ``pids()``: the processes whose CPU is the server's) with benchmarks/loadgen.py."""
    body_file = workdir / f"body-{len(body)}.json"
    body_file.write_bytes(body)
    before = srv.metrics() if metrics else None
    t_before = time.perf_counter()
    pids = [a for pid in srv.pids() for a in ("--server-pid", str(pid))]
    result = run_json(["-m", "benchmarks.loadgen", "--port", str(srv.port), "--path", path,
                       "--token", srv.token, "--body-file", str(body_file),
                       "--concurrency", str(concurrency), "--warmup", str(warmup),
                       "--duration", str(duration), *pids],
                      timeout=warmup + duration + 120)
    if metrics:
        after = srv.metrics()
        result["metrics_wall_s"] = time.perf_counter() - t_before
        result["metrics_delta"] = metrics_delta(before, after)
    if result["server_cpu_s"] is not None and result["requests"]:
        result["server_cpu_ms_per_req"] = 1e3 * result["server_cpu_s"] / result["requests"]
        result["client_cpu_ms_per_req"] = 1e3 * result["client_cpu_s"] / result["requests"]
    bad = {k: v for k, v in result["statuses"].items() if k != "200"}
    if bad or result["errors"]:
        log(f"  non-200 answers {bad}, connection errors {result['errors']} "
            f"{result['first_errors']}")
    return result


_SAMPLE = re.compile(r'^(?P<name>[^\s{]+)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)$')


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[(m.group("name"), m.group("labels") or "")] = float(m.group("value"))
    return out


def metrics_delta(before: str, after: str) -> dict[str, float]:
    """Per-model sums and counts of the batching and runtime histograms over the run."""
    a, b = parse_metrics(before), parse_metrics(after)
    out: dict[str, float] = {}
    for (name, labels), value in b.items():
        if name.endswith(("_sum", "_count")) and name.startswith(METRIC):
            short = name[len(METRIC):]
            model = re.search(r'model_name="([^"]*)"', labels)
            key = f"{short}[{model.group(1) if model else ''}]"
            if "API=" in labels or "runtime=" in labels or "entrypoint=" in labels:
                key = f"{short}[{labels}]"
            out[key] = out.get(key, 0.0) + value - a.get((name, labels), 0.0)
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# ----------------------------------------------------------------------------- scenarios


def scenario_serving_path(args: argparse.Namespace) -> dict[str, Any]:
    seconds = 1.0 if args.quick else 3.0
    log(f"serving_path: in-process manager + scheduler, noop model, {seconds}s per variant")
    return run_json(["-m", "benchmarks.inprocess", "--threads", f"1,{args.inprocess_threads}",
                     "--seconds", str(seconds)], timeout=300)


def scenario_http(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    root = workdir / "http-models"
    root.mkdir()
    export("half_plus_two", root / "half_plus_two")
    body = b'{"instances": [[1.0]]}'
    out: dict[str, Any] = {"concurrency": args.concurrency, "duration_s": args.duration}
    with server(root, workdir, [], echo=True) as srv:
        srv.wait_available("half_plus_two")
        for name, path in (("predict", f"{PREFIX}/v1/models/half_plus_two:predict"),
                           ("bare", "/bench/echo")):
            status, answer = http_post(srv.base + path, srv.token, body)
            if status != 200 or answer != b'{"predictions":[[2.5]]}':
                raise RuntimeError(f"{name}: HTTP {status} {answer[:200]!r}\n{srv.log_tail()}")
            log(f"http: {name} x{args.concurrency} for {args.duration}s")
            out[name] = loadgen(srv, path, body, workdir, args.concurrency, args.warmup,
                                args.duration)
    out["predict_over_bare"] = ratio(out["predict"]["req_per_s"], out["bare"]["req_per_s"])
    if args.mlserver:
        out["mlserver"] = mlserver_runs(args, workdir)
        for r in out["mlserver"]["runs"].values():
            r["ours_over_mlserver"] = ratio(out["predict"]["req_per_s"], r["req_per_s"])
    return out


def mlserver_runs(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """MLServer 1.7 serving y = 0.5x + 2 (benchmarks/mlserver_bench.py), driven like our predict
    (same load generator, concurrency, warm-up and duration), once per ``parallel_workers``."""
    from benchmarks import mlserver_bench as mls

    mls.ensure_venv(log)
    out: dict[str, Any] = {"version": mls.version(), "requirements": list(mls.REQUIREMENTS),
                           "path": mls.INFER_PATH, "body": mls.V2_BODY.decode(), "runs": {}}
    for workers in args.mlserver_workers:
        with mls.mlserver(workdir, (free_port(), free_port(), free_port()), workers) as ml:
            ml.wait_ready()
            status, answer = ml.post(mls.V2_BODY)
            if status != 200 or b'"data":[2.5]' not in answer:
                raise RuntimeError(f"mlserver infer: HTTP {status} {answer[:300]!r}\n"
                                   f"{ml.log_tail()}")
            log(f"http: mlserver (parallel_workers={workers}) x{args.concurrency} "
                f"for {args.duration}s")
            r = loadgen(ml, mls.INFER_PATH, mls.V2_BODY, workdir, args.concurrency,
                        args.warmup, args.duration)
            r["server_pids"] = len(ml.pids())
            out["runs"][str(workers)] = r
    return out


def mlp_body(width: int) -> bytes:
    """One row of ``width`` floats with 4 decimals (~9 bytes per value: ~37 KB for 4096)."""
    row = np.random.default_rng(1).standard_normal(width)
    return ('{"instances": [[' + ", ".join(f"{v:.4f}" for v in row) + "]]}").encode()


def scenario_batching(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    return {name: batching_one(args, workdir, name, args.batch_concurrency)
            for name in args.batch_models}


def scenario_mlp784(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The 784-4096-4096-10 MLP at ``--mlp784-concurrency`` clients (48), batching on vs off,
    and the server's CPU efficiency: the model's own CPU per row at batch 32 in process over the
    server process's CPU per served row (the load generator's CPU is not counted)."""
    c = args.mlp784_concurrency
    out = batching_one(args, workdir, "mlp784", [c], extra_batch_sizes=(32,))
    own32 = {r["batch_size"]: r for r in out["model_in_process"]}[32]
    summary = out[f"summary@{c}"]
    for mode in ("on", "off"):
        r = out["runs"][f"{mode}@{c}"]
        summary[f"cpu_efficiency_{mode}"] = ratio(own32["cpu_ms_per_row"],
                                                  r.get("server_cpu_ms_per_req"))
    summary["model_cpu_ms_per_row_at_32"] = own32["cpu_ms_per_row"]
    out["concurrency"] = c
    return out


def batching_one(args: argparse.Namespace, workdir: Path, name: str, concurrencies: list[int],
                 extra_batch_sizes: tuple[int, ...] = ()) -> dict[str, Any]:
    from benchmarks.models import MLP_SHAPES

    root = workdir / f"batch-models-{name}"
    root.mkdir()
    export(name, root / name)
    body = mlp_body(MLP_SHAPES[name][0])
    path = f"{PREFIX}/v1/models/{name}:predict"
    modes = {"on": [], "off": ["--TFServingApp.enable_batching=False"]}
    if args.num_batch_threads:
        modes["on"].append(f"--TFServingApp.num_batch_threads={args.num_batch_threads}")
    out: dict[str, Any] = {"body_bytes": len(body), "runs": {}}
    for mode, extra in modes.items():
        with server(root, workdir, extra) as srv:
            srv.wait_available(name)
            status, answer = http_post(srv.base + path, srv.token, body)
            if status != 200 or b"predictions" not in answer:
                raise RuntimeError(f"{name} predict: HTTP {status} {answer[:300]!r}")
            for c in concurrencies:
                log(f"batching {mode}: {name} x{c} for {args.duration}s")
                r = loadgen(srv, path, body, workdir, c, args.warmup, args.duration,
                            metrics=True)
                d = r["metrics_delta"]
                n = d.get(f"batching_session:input_batch_size_count[{name}]", 0.0)
                rows = d.get(f"batching_session:input_batch_size_sum[{name}]", 0.0)
                r["batches"] = n
                r["mean_batch_size"] = rows / n if n else (1.0 if mode == "off" else None)
                rt = [(k, v) for k, v in d.items() if k.startswith("runtime_latency_sum")]
                rc = [(k, v) for k, v in d.items() if k.startswith("runtime_latency_count")]
                if rt and rc and sum(v for _, v in rc):
                    r["mean_model_run_ms"] = sum(v for _, v in rt) / sum(v for _, v in rc) / 1e3
                    r["model_runs"] = sum(v for _, v in rc)
                    # model-seconds per second: >1 means batches ran concurrently
                    r["model_busy"] = sum(v for _, v in rt) / 1e6 / r["metrics_wall_s"]
                out["runs"][f"{mode}@{c}"] = r
    # The model's own throughput in this machine, without HTTP (no server running now).
    sizes = {1, *extra_batch_sizes}
    for c in concurrencies:
        m = out["runs"][f"on@{c}"].get("mean_batch_size")
        if m:
            sizes.add(max(1, round(m)))
    log(f"batching: {name} in process at batch sizes {sorted(sizes)}")
    own = run_json(["-m", "benchmarks.model_throughput", "--path", str(root / name / "1"),
                    "--batch-sizes", ",".join(map(str, sorted(sizes))), "--threads", "1",
                    "--seconds", "1.5" if args.quick else "3"], timeout=300)
    out["model_in_process"] = own["results"]
    by_batch = {r["batch_size"]: r for r in own["results"]}
    for c in concurrencies:
        on, off = out["runs"][f"on@{c}"], out["runs"][f"off@{c}"]
        m = on.get("mean_batch_size")
        at_m = by_batch.get(max(1, round(m))) if m else None
        out[f"summary@{c}"] = {
            "on_over_off": ratio(on["req_per_s"], off["req_per_s"]),
            "on_over_model_at_mean_batch": ratio(on["req_per_s"],
                                                 at_m["rows_per_s"] if at_m else None),
            "off_over_model_at_batch_1": ratio(off["req_per_s"], by_batch[1]["rows_per_s"]),
            "model_mean_batch_over_batch_1": ratio(at_m["rows_per_s"] if at_m else None,
                                                   by_batch[1]["rows_per_s"]),
        }
    return out


def export(what: str, dest: Path) -> None:
    """Export (cached under benchmarks/results/models) and link into a model_root."""
    cached = MODEL_CACHE / what
    if not (cached / "1").is_dir():
        log(f"exporting {what} (cached in {cached})")
        run_json_plain(["-m", "benchmarks.models", what, str(cached)])
    dest.symlink_to(cached, target_is_directory=True)


def run_json_plain(args: list[str]) -> None:
    proc = subprocess.run([PY, *args], cwd=REPO, env=child_env(), capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")


# ----------------------------------------------------------------------------- report


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}" if abs(v) >= 1 else f"{v:.3g}"
    return str(v)


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "n/a"
    return "met" if value >= target else "NOT met"


def targets(results: dict[str, Any]) -> str:
    """Markdown: the issue's targets, today's figure (before this work) and this run's."""
    rows: list[tuple[str, str, str, str]] = []
    variants = (results.get("serving_path") or {}).get("variants", {})
    for variant, callers in (("dataplane_loop", "requests in flight on one event loop"),
                             ("dataplane_batching", "caller threads")):
        sp = variants.get(variant)
        if not sp:
            continue
        best = max((r.get("calls_per_cpu_s") or 0.0) for r in sp)
        threads = ", ".join(f"x{r['threads']} {fmt(r.get('calls_per_cpu_s'))}" for r in sp)
        rows.append((f"serving path through the data plane, batching on, {callers} "
                     f"({variant}): calls per CPU-second",
                     f">= {TARGET_SERVING_PATH_PER_CPU_S:,.0f}", TODAY["serving_path"],
                     f"{threads}: {verdict(best, TARGET_SERVING_PATH_PER_CPU_S)}"))
    h = results.get("http")
    if h:
        v = h.get("predict_over_bare")
        rows.append((f"HTTP predict half_plus_two / bare handler, {h['concurrency']} clients",
                     f">= {TARGET_PREDICT_OVER_BARE}x", TODAY["predict_over_bare"],
                     f"{fmt(v, 2)}x: {verdict(v, TARGET_PREDICT_OVER_BARE)}"))
        for w, r in ((h.get("mlserver") or {}).get("runs") or {}).items():
            v = r.get("ours_over_mlserver")
            rows.append((f"HTTP predict / MLServer REST (parallel_workers={w})",
                         f">= {TARGET_OURS_OVER_MLSERVER:.1f}x", TODAY["ours_over_mlserver"],
                         f"{fmt(v, 2)}x: {verdict(v, TARGET_OURS_OVER_MLSERVER)}"))
    m = results.get("mlp784")
    if m and "concurrency" in m:
        s = m[f"summary@{m['concurrency']}"]
        v = s.get("on_over_off")
        rows.append((f"mlp784 batching on / off, {m['concurrency']} clients",
                     f">= {TARGET_MLP784_ON_OFF:.0f}x", TODAY["mlp784_on_off"],
                     f"{fmt(v, 2)}x: {verdict(v, TARGET_MLP784_ON_OFF)}"))
        v = s.get("cpu_efficiency_on")
        rows.append(("mlp784 server CPU efficiency (model CPU/row at batch 32 / server CPU/row)",
                     f">= {TARGET_MLP784_CPU_EFFICIENCY}", TODAY["mlp784_cpu_efficiency"],
                     f"{fmt(v, 2)}: {verdict(v, TARGET_MLP784_CPU_EFFICIENCY)}"))
    lines = ["| target | wanted | today (before) | this run |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    """Markdown: scenario | metric | value | ratio | target (the issue's targets: ratios from
    this run, with whether this run met them)."""
    rows: list[tuple[str, ...]] = []

    def row(scenario: str, metric: str, value: str, rat: str = "", target: str = "") -> None:
        rows.append((scenario, metric, value, rat, target))

    sp = results.get("serving_path")
    if sp:
        claim = sp["tf_serving_claim_per_core"]
        for name, runs in sp["variants"].items():
            for r in runs:
                row(f"serving_path {name} x{r['threads']}", "calls/s (wall)",
                    fmt(r["calls_per_s"]))
                row(f"serving_path {name} x{r['threads']}",
                    f"calls/CPU-s ({r['cores_used']:.2f} cores)", fmt(r["calls_per_cpu_s"]),
                    f"{fmt(r['vs_tf_serving_claim'] * 100, 2)}% of TF Serving's "
                    f"{claim:,.0f}/s/core")
    h = results.get("http")
    if h:
        servers = [("predict", h["predict"]), ("bare", h["bare"])]
        ml = h.get("mlserver")
        if ml:
            servers += [(f"mlserver {ml['version']} parallel_workers={w}", r)
                        for w, r in ml["runs"].items()]
        for name, r in servers:
            label = f"http {name} x{h['concurrency']}"
            if name == "predict":
                rat, target = f"{fmt(h['predict_over_bare'], 2)} predict/bare", ""
            elif name == "bare":
                rat, target = "1.00", ""
            else:
                v = r.get("ours_over_mlserver")
                rat = f"{fmt(v, 2)}x ours/MLServer"
                target = (f">= {TARGET_OURS_OVER_MLSERVER:.1f}x ours/MLServer: "
                          f"{verdict(v, TARGET_OURS_OVER_MLSERVER)}")
            row(label, "req/s", fmt(r["req_per_s"]), rat, target)
            row(label, "p50 / p99 ms", f"{fmt(r['p50_ms'], 2)} / {fmt(r['p99_ms'], 2)}")
            row(label, "CPU server / client (cores)",
                f"{fmt(r['server_cpu_frac'], 2)} / {fmt(r['client_cpu_frac'], 2)}")
            row(label, "server CPU ms per request", fmt(r.get("server_cpu_ms_per_req"), 3))
    batching = dict(results.get("batching") or {})
    if results.get("mlp784"):
        batching["mlp784"] = results["mlp784"]
    for model, b in batching.items():
        own = {r["batch_size"]: r for r in b["model_in_process"]}
        is784 = model == "mlp784" and "concurrency" in b
        for key, r in b["runs"].items():
            mode, c = key.split("@")
            label = f"{'mlp784' if is784 else 'batching ' + model} {mode} x{c}"
            s = b[f"summary@{c}"]
            if mode == "on":
                rat = f"{fmt(s['on_over_off'], 2)}x on/off"
                target = (f">= {TARGET_MLP784_ON_OFF:.0f}x on/off: "
                          f"{verdict(s['on_over_off'], TARGET_MLP784_ON_OFF)}" if is784 else "")
            else:
                rat = target = ""
            row(label, "rows/s (wall)", fmt(r["req_per_s"]), rat, target)
            row(label, "p50 / p99 ms", f"{fmt(r['p50_ms'], 1)} / {fmt(r['p99_ms'], 1)}")
            row(label, "mean batch size / model run ms",
                f"{fmt(r.get('mean_batch_size'), 1)} / {fmt(r.get('mean_model_run_ms'), 1)}")
            row(label, "CPU server / client (cores)",
                f"{fmt(r['server_cpu_frac'], 2)} / {fmt(r['client_cpu_frac'], 2)}")
            row(label, "server CPU ms per row / model busy (runs in flight)",
                f"{fmt(r.get('server_cpu_ms_per_req'), 2)} / {fmt(r.get('model_busy'), 2)}")
            if is784:
                eff = s.get(f"cpu_efficiency_{mode}")
                row(label, "CPU efficiency: model CPU/row at batch 32 in process / server "
                    "CPU/row", fmt(eff, 2), "",
                    f">= {TARGET_MLP784_CPU_EFFICIENCY} (baseline "
                    f"{BASELINE_MLP784_CPU_EFFICIENCY:.2f}): "
                    f"{verdict(eff, TARGET_MLP784_CPU_EFFICIENCY)}" if mode == "on" else "")
            if mode == "on":
                row(label, "vs model in process at mean batch", "",
                    f"{fmt(s['on_over_model_at_mean_batch'], 2)}")
            else:
                row(label, "vs model in process at batch 1", "",
                    f"{fmt(s['off_over_model_at_batch_1'], 2)}")
        for bs, r in sorted(own.items()):
            row(f"{model} in process batch {bs}", "rows/s (1 thread)", fmt(r["rows_per_s"]),
                f"{fmt(r['ms_per_call'], 1)} ms/call")
            if r.get("cpu_ms_per_row") is not None:
                row(f"{model} in process batch {bs}", "CPU ms per row (process, all threads)",
                    fmt(r["cpu_ms_per_row"], 3))
    lines = ["| scenario | metric | value | ratio | target |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 3 s per load, 1 s warm-up, batching at 32 clients only")
    p.add_argument("--duration", type=float, help="seconds measured per load (default 10)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per load (default 3)")
    p.add_argument("--concurrency", type=int, default=16, help="clients for the http scenario")
    p.add_argument("--batch-concurrency", default=None,
                   help="comma list of clients for the batching scenario (default 32,64)")
    p.add_argument("--batch-models", default="mlp_in256,mlp",
                   help="comma list of models for the batching scenario (benchmarks/models.py)")
    p.add_argument("--inprocess-threads", type=int, default=8,
                   help="threads for serving_path besides 1 (default 8)")
    p.add_argument("--mlp784-concurrency", type=int, default=48,
                   help="clients for the mlp784 scenario (default 48)")
    p.add_argument("--mlserver", action="store_true",
                   help="http scenario: also drive MLServer 1.7 serving y = 0.5x + 2 (creates "
                   "benchmarks/results/mlserver-venv from PyPI once)")
    p.add_argument("--mlserver-workers", default=None,
                   help="comma list of MLServer parallel_workers to run (default 1,0: its "
                   "default, an inference worker process, and the model in its HTTP process)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="one more argument for every server of the run (repeatable), e.g. "
                   "--server-arg=--TFServingApp.batch_timeout_micros=2000")
    p.add_argument("--num-batch-threads", type=int, default=0,
                   help="--TFServingApp.num_batch_threads for batching on (default: server's)")
    p.add_argument("--only", action="append", choices=SCENARIOS,
                   help="run only this scenario (repeatable)")
    p.add_argument("--output", help="JSON path (default benchmarks/results/<timestamp>.json)")
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    bc = args.batch_concurrency or ("32" if args.quick else "32,64")
    args.batch_concurrency = [int(c) for c in bc.split(",") if c]
    args.batch_models = [m for m in args.batch_models.split(",") if m]
    mw = args.mlserver_workers or "1,0"
    args.mlserver_workers = [int(w) for w in mw.split(",") if w]
    scenarios = args.only or list(SCENARIOS)
    SERVER_ARGS[:] = args.server_arg
    if args.mlserver and "http" not in scenarios:
        log("--mlserver runs within the http scenario, which is not selected: ignored")

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_path = Path(args.output) if args.output else RESULTS / f"{stamp}.json"
    results: dict[str, Any] = {
        "timestamp": stamp,
        "command": " ".join([Path(PY).name, "-m", "benchmarks.run", *sys.argv[1:]]),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_start": os.getloadavg()},
        "options": {k: v for k, v in vars(args).items()},
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jtfs-bench-") as tmp:
        workdir = Path(tmp)
        for name in scenarios:
            t0 = time.monotonic()
            try:
                if name == "serving_path":
                    results[name] = scenario_serving_path(args)
                elif name == "http":
                    results[name] = scenario_http(args, workdir)
                elif name == "batching":
                    results[name] = scenario_batching(args, workdir)
                else:
                    results[name] = scenario_mlp784(args, workdir)
            except Exception as exc:  # report the others anyway
                log(f"{name} FAILED: {exc}")
                results.setdefault("failed", {})[name] = str(exc)[-3000:]
            log(f"{name}: {time.monotonic() - t0:.0f}s")
    results["elapsed_s"] = time.monotonic() - started
    results["machine"]["loadavg_end"] = os.getloadavg()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2, default=str))
    print(targets(results))
    print()
    print(table(results))
    print(f"\nJSON: {out_path}  ({results['elapsed_s']:.0f} s)")
    return 1 if results.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
