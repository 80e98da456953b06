"""Run the benchmarks and print one table: ``.venv/bin/python -m benchmarks.run [--quick]``.

Scenarios (see benchmarks/README.md):

- ``serving_path``: the manager + batch scheduler in process, with a model that does nothing
  (benchmarks/inprocess.py), per CPU-second, against TF Serving's ~100,000/s/core claim.
- ``http``: ``:predict`` on half_plus_two vs a bare APIHandler on the same server
  (benchmarks/echo_extension.py), same concurrency and duration.
- ``batching``: a memory-bound 4096-wide MLP, one row per request, batching on vs off, against
  the model's own in-process throughput at batch 1 and at the observed mean batch size.

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
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MODEL_CACHE = RESULTS / "models"
PY = sys.executable
SCENARIOS = ("serving_path", "http", "batching")
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
def server(model_root: Path, workdir: Path, extra: list[str], echo: bool = False
           ) -> Iterator[Server]:
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        PY, "-m", "jupyter_tfserving", "--allow-root", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.open_browser=False",
        f"--IdentityProvider.token={token}", f"--TFServingApp.model_root={model_root}",
        "--TFServingApp.file_system_poll_wait_seconds=0", "--ServerApp.log_level=WARN",
        *extra,
    ]
    if echo:
        cmd.append("--ServerApp.jpserver_extensions={'benchmarks.echo_extension': True}")
    log_path = workdir / f"server-{port}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=workdir, env=child_env(), stdout=log_file,
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


def loadgen(srv: Server, path: str, body: bytes, workdir: Path, concurrency: int,
            warmup: float, duration: float, metrics: bool = False) -> dict[str, Any]:
    body_file = workdir / f"body-{len(body)}.json"
    body_file.write_bytes(body)
    before = srv.metrics() if metrics else None
    t_before = time.perf_counter()
    result = run_json(["-m", "benchmarks.loadgen", "--port", str(srv.port), "--path", path,
                       "--token", srv.token, "--body-file", str(body_file),
                       "--concurrency", str(concurrency), "--warmup", str(warmup),
                       "--duration", str(duration), "--server-pid", str(srv.proc.pid)],
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
    return out


def mlp_body(width: int) -> bytes:
    """One row of ``width`` floats with 4 decimals (~9 bytes per value: ~37 KB for 4096)."""
    row = np.random.default_rng(1).standard_normal(width)
    return ('{"instances": [[' + ", ".join(f"{v:.4f}" for v in row) + "]]}").encode()


def scenario_batching(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    return {name: batching_one(args, workdir, name) for name in args.batch_models}


def batching_one(args: argparse.Namespace, workdir: Path, name: str) -> dict[str, Any]:
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
            for c in args.batch_concurrency:
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
    sizes = {1}
    for c in args.batch_concurrency:
        m = out["runs"][f"on@{c}"].get("mean_batch_size")
        if m:
            sizes.add(max(1, round(m)))
    log(f"batching: {name} in process at batch sizes {sorted(sizes)}")
    own = run_json(["-m", "benchmarks.model_throughput", "--path", str(root / name / "1"),
                    "--batch-sizes", ",".join(map(str, sorted(sizes))), "--threads", "1",
                    "--seconds", "1.5" if args.quick else "3"], timeout=300)
    out["model_in_process"] = own["results"]
    by_batch = {r["batch_size"]: r for r in own["results"]}
    for c in args.batch_concurrency:
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


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    sp = results.get("serving_path")
    if sp:
        claim = sp["tf_serving_claim_per_core"]
        for name, runs in sp["variants"].items():
            for r in runs:
                rows.append((f"serving_path {name} x{r['threads']}", "calls/s (wall)",
                             fmt(r["calls_per_s"]), ""))
                rows.append((f"serving_path {name} x{r['threads']}",
                             f"calls/CPU-s ({r['cores_used']:.2f} cores)",
                             fmt(r["calls_per_cpu_s"]),
                             f"{fmt(r['vs_tf_serving_claim'] * 100, 2)}% of TF Serving's "
                             f"{claim:,.0f}/s/core"))
    h = results.get("http")
    if h:
        for name in ("predict", "bare"):
            r = h[name]
            label = f"http {name} x{h['concurrency']}"
            rows.append((label, "req/s", fmt(r["req_per_s"]),
                         f"{fmt(h['predict_over_bare'], 2)} predict/bare" if name == "predict"
                         else "1.00"))
            rows.append((label, "p50 / p99 ms", f"{fmt(r['p50_ms'], 2)} / {fmt(r['p99_ms'], 2)}",
                         ""))
            rows.append((label, "CPU server / client (cores)",
                         f"{fmt(r['server_cpu_frac'], 2)} / {fmt(r['client_cpu_frac'], 2)}", ""))
            rows.append((label, "server CPU ms per request",
                         fmt(r.get("server_cpu_ms_per_req"), 3), ""))
    for model, b in (results.get("batching") or {}).items():
        own = {r["batch_size"]: r for r in b["model_in_process"]}
        for key, r in b["runs"].items():
            mode, c = key.split("@")
            label = f"batching {model} {mode} x{c}"
            s = b[f"summary@{c}"]
            rows.append((label, "rows/s", fmt(r["req_per_s"]),
                         f"{fmt(s['on_over_off'], 2)}x on/off" if mode == "on" else ""))
            rows.append((label, "p50 / p99 ms", f"{fmt(r['p50_ms'], 1)} / {fmt(r['p99_ms'], 1)}",
                         ""))
            rows.append((label, "mean batch size / model run ms",
                         f"{fmt(r.get('mean_batch_size'), 1)} / "
                         f"{fmt(r.get('mean_model_run_ms'), 1)}", ""))
            rows.append((label, "CPU server / client (cores)",
                         f"{fmt(r['server_cpu_frac'], 2)} / {fmt(r['client_cpu_frac'], 2)}", ""))
            rows.append((label, "server CPU ms per row / model busy (runs in flight)",
                         f"{fmt(r.get('server_cpu_ms_per_req'), 2)} / "
                         f"{fmt(r.get('model_busy'), 2)}", ""))
            if mode == "on":
                rows.append((label, "vs model in process at mean batch", "",
                             f"{fmt(s['on_over_model_at_mean_batch'], 2)}"))
            else:
                rows.append((label, "vs model in process at batch 1", "",
                             f"{fmt(s['off_over_model_at_batch_1'], 2)}"))
        for bs, r in sorted(own.items()):
            rows.append((f"{model} in process batch {bs}", "rows/s (1 thread)",
                         fmt(r["rows_per_s"]), f"{fmt(r['ms_per_call'], 1)} ms/call"))
    lines = ["| scenario | metric | value | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {m} | {v} | {r} |" for a, m, v, r in rows]
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
    scenarios = args.only or list(SCENARIOS)

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
                else:
                    results[name] = scenario_batching(args, workdir)
            except Exception as exc:  # report the others anyway
                log(f"{name} FAILED: {exc}")
                results.setdefault("failed", {})[name] = str(exc)[-3000:]
            log(f"{name}: {time.monotonic() - t0:.0f}s")
    results["elapsed_s"] = time.monotonic() - started
    results["machine"]["loadavg_end"] = os.getloadavg()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    print(f"\nJSON: {out_path}  ({results['elapsed_s']:.0f} s)")
    return 1 if results.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
