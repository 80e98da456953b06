"""Traffic tools (issue 14): a new version's first requests with and without warmup, and what
request logging and shadow traffic cost a served model::

    .venv/bin/python -m benchmarks.traffic_bench --quick    # ~4 minutes on 2 cores
    .venv/bin/python -m benchmarks.traffic_bench            # ~8 minutes
    .venv/bin/python -m benchmarks.traffic_bench --quick --profile   # + py-spy per setting

(``benchmarks.run --only traffic`` runs it as a child and prints its figures with the others.)

What is measured, all in one run, side by side (the machine is shared and noisy):

1. **Warmup after a swap** (``--parts warmup``): the model is Keras's MobileNetV2
   (``keras.applications``, ``weights=None``: random weights, nothing downloaded; 32x32x3
   input, 10 classes, ~2.3 M parameters, ~150 layers), exported with ``model.export`` once to
   ``benchmarks/results/models/mobilenet_v2_32/1`` and, with
   ``assets.extra/tf_serving_warmup_requests`` added by the kernel's writer
   (``kernel.export.write_warmup_requests``, what ``serve(model, example=...)`` writes: one
   predict of one row), to ``mobilenet_v2_32_warmup/1``. Loaded by the server's TensorFlow
   loader (a TF1 session), its first call costs ~1-2 s (the session builds and optimises the
   graph's executor on the first run) against ~8-15 ms later: the first request after a swap is
   ~100x a steady one without warmup. One server (defaults: ``enable_model_warmup`` on,
   batching on) serves version 1; each round publishes a new version (``POST
   P/api/models/{m}/versions?version=N``, no rollout: the latest version takes over and the old
   one unloads), once with the warmup file (**warmup on**) and once without it (**warmup
   off**, what ``enable_model_warmup=False`` would do to the first one), alternated
   (on off, off on, ...; ``--swap-rounds``). As soon as the version is AVAILABLE, one client
   sends ``--first`` (20) predicts of one row in a row on one keep-alive connection to
   ``P/v1/models/{m}/versions/N:predict``, then ``--skip`` (30) more, then ``--steady`` (200)
   measured ones. Per round: the p99 of the first 20 (nearest rank: the largest of 20) over the
   p99 of the steady ones; the figure is the median over the rounds (their range beside it),
   and the pooled p99s of all rounds are reported too, with the first request's latency, the
   publish-to-AVAILABLE time and what the version's status says its warmup ran. **Target: <= 2x
   with warmup on.**
2. **Cost of logging and shadow** (``--parts cost``): one server serving ``--cost-models``
   (``half_plus_two``: ``{"instances": [[1.0]]}`` at ``--concurrency`` 16 clients, and
   ``mlp784`` of benchmarks/models.py: one ~6.5 KB JSON row at ``--mlp784-concurrency`` 48),
   each with version 1 labelled ``stable`` (it answers the unversioned requests) and the same
   SavedModel published as version 2 (the shadow's candidate). Closed-loop clients
   (``benchmarks/loadgen.py``, a separate process) on REST ``:predict`` (unversioned), three
   settings alternated over ``--rounds`` rounds (none, logging, shadow; then reversed; ...):
   **none**; **logging** at ``sampling_rate`` 1.0 (``POST P/api/models/{m}:logging``, set to 0
   after the load); **shadow** at fraction 1.0 with version 2 as candidate (``POST
   P/api/models/{m}:shadow``, ended with fraction 0 after the load). Each load is
   ``--warmup`` + ``--duration`` seconds; req/s, p50/p99 and the server's CPU per request are
   over all rounds (``run.combine_rounds``), ratios also per round. For logging, the records
   logged and dropped over the load (``logging`` of ``GET P/api/stats``); for the shadow, the
   pairs compared, dropped and failed, the agreement and both latencies (the final
   ``ShadowReport``, from ``POST :shadow`` with fraction 0). Per-thread CPU of the server
   over each load (/proc, grouped by thread name; as ``benchmarks/profile_server.py``) shows
   where the extra CPU goes. **Target: each costs <= 10% of req/s** (setting / none >= 0.9).
3. ``--profile``: after the rounds, one more load per model and setting under ``py-spy record
   --threads --nonblocking`` (needs ``.venv/bin/pip install py-spy``), summarised as
   ``benchmarks/profile_server.py`` summarises (threads, stages, top functions by self time;
   ``--profile-gil``: only the thread holding the GIL is sampled);
   raw profiles in ``benchmarks/results/profiles/<stamp>-traffic-<model>-<setting>/``.

Prints one JSON object (the last line of stdout); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.loadgen import percentile
from benchmarks.run import (
    MODEL_CACHE,
    PREFIX,
    PY,
    RESULTS,
    Server,
    combine_rounds,
    fmt,
    http_get,
    http_post,
    loadgen,
    log,
    mlp_body,
    ratio,
    round_ratios,
    run_json_plain,
    server,
    span,
)

WARMUP_MODEL = "mobilenet_v2_32"
WARMUP_SIDE = 32
SETTINGS = ("none", "logging", "shadow")
TARGET_FIRST_OVER_STEADY = 2.0  # at most, warmup on: p99 of the first requests / steady p99
TARGET_SETTING_OVER_NONE = 0.9  # at least: req/s with logging (shadow) / without
BODIES: dict[str, Callable[[], bytes]] = {
    "half_plus_two": lambda: b'{"instances": [[1.0]]}',
    "mlp784": lambda: mlp_body(784),
}


# ----------------------------------------------------------------------------- models


def export_warmup_model(cache: Path) -> dict[str, str]:
    """(In a child: ``--export DIR``.) MobileNetV2 as a SavedModel, without and with warmup
    records (see the module docstring); each written once, atomically, then reused."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    plain = cache / WARMUP_MODEL / "1"
    warm = cache / f"{WARMUP_MODEL}_warmup" / "1"
    if not plain.is_dir():
        import keras

        keras.utils.set_random_seed(7)
        model = keras.applications.MobileNetV2(
            input_shape=(WARMUP_SIDE, WARMUP_SIDE, 3), weights=None, classes=10)
        plain.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=plain.parent))
        try:
            model.export(str(tmp / "v"), verbose=False)
            os.replace(tmp / "v", plain)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not warm.is_dir():
        from jupyter_tfserving.kernel.export import write_warmup_requests

        warm.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=warm.parent))
        try:
            shutil.copytree(plain, tmp / "v")
            # what serve(model, example=x[:1]) writes: one predict of one row
            example = np.random.default_rng(0).random((1, WARMUP_SIDE, WARMUP_SIDE, 3),
                                                      dtype=np.float32)
            write_warmup_requests(str(tmp / "v"), example, WARMUP_MODEL)
            os.replace(tmp / "v", warm)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"plain": str(plain), "warm": str(warm)}


def cached_model(name: str) -> Path:
    """``benchmarks/results/models/<name>/1``, exported by benchmarks/models.py if missing."""
    cached = MODEL_CACHE / name
    if not (cached / "1").is_dir():
        log(f"traffic: exporting {name} (cached in {cached})")
        run_json_plain(["-m", "benchmarks.models", name, str(cached)])
    return cached / "1"


def model_dir(root: Path, name: str, version_1: Path) -> None:
    """``root/name/1`` -> ``version_1``: the model's directory is a real one (versions
    published during the run are written there, not into the cache)."""
    (root / name).mkdir(parents=True)
    (root / name / "1").symlink_to(version_1, target_is_directory=True)


def pack(version_dir: Path) -> bytes:
    """The version directory as the archive ``POST .../versions`` takes."""
    from jupyter_tfserving.core.archive import pack_directory

    return pack_directory(str(version_dir))


# ----------------------------------------------------------------------------- REST helpers


def http_json(srv: Server, method: str, path: str, doc: Any = None, ok: tuple[int, ...] = (200,),
              timeout: float = 60) -> Any:
    """``method`` ``P{path}`` with ``doc`` as JSON; the answer's JSON (RuntimeError with the
    server's log tail when the status is not in ``ok``)."""
    url = f"{srv.base}{PREFIX}{path}"
    if method == "GET":
        status, body = http_get(url, srv.token, timeout)
    elif method == "POST":
        status, body = http_post(url, srv.token, json.dumps(doc).encode(), timeout)
    else:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(url, data=json.dumps(doc).encode(), method=method,
                                     headers={"Authorization": f"token {srv.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
    if status not in ok:
        raise RuntimeError(f"{method} {PREFIX}{path}: HTTP {status} {body[:500]!r}\n"
                           f"{srv.log_tail()}")
    return json.loads(body) if body else None


def publish(srv: Server, model: str, archive: bytes, version: int) -> float:
    """Publish ``archive`` as ``version`` of ``model`` (no rollout) and wait until it is
    AVAILABLE (20 ms polls); seconds from the request to AVAILABLE."""
    t0 = time.perf_counter()
    status, body = http_post(f"{srv.base}{PREFIX}/api/models/{model}/versions?version={version}",
                             srv.token, archive, timeout=300)
    if status != 201:
        raise RuntimeError(f"publish {model} {version}: HTTP {status} {body[:500]!r}\n"
                           f"{srv.log_tail()}")
    deadline = time.monotonic() + 300
    while True:
        status, body = http_get(f"{srv.base}{PREFIX}/v1/models/{model}/versions/{version}",
                                srv.token, 10)
        if status == 200:
            states = [v.get("state") for v in json.loads(body)["model_version_status"]]
            if "AVAILABLE" in states:
                return time.perf_counter() - t0
            if "END" in states:
                raise RuntimeError(f"{model} {version} failed to load: {body[:500]!r}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{model} {version} not AVAILABLE in 300 s\n{srv.log_tail()}")
        time.sleep(0.02)


def version_entry(srv: Server, model: str, version: int) -> dict[str, Any]:
    """Version ``version`` of ``model`` as ``GET P/api/models/{m}`` describes it."""
    doc = http_json(srv, "GET", f"/api/models/{model}")
    for entry in doc["versions"]:
        if entry["version"] == version:
            return dict(entry)
    return {}


class Client:
    """One keep-alive HTTP/1.1 connection sending one predict body, a request at a time."""

    def __init__(self, srv: Server, path: str, body: bytes) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
        self.path, self.body = path, body
        self.headers = {"Authorization": f"token {srv.token}",
                        "Content-Type": "application/json"}

    def predict_ms(self) -> float:
        """One request's latency (send to the whole answer read), ms; RuntimeError unless
        200."""
        t0 = time.perf_counter()
        self.conn.request("POST", self.path, self.body, self.headers)
        answer = self.conn.getresponse()
        data = answer.read()
        ms = (time.perf_counter() - t0) * 1e3
        if answer.status != 200:
            raise RuntimeError(f"POST {self.path}: HTTP {answer.status} {data[:300]!r}")
        return ms

    def close(self) -> None:
        self.conn.close()


# ----------------------------------------------------------------------------- 1. warmup


def warmup_body() -> bytes:
    row = np.round(np.random.default_rng(1).random((WARMUP_SIDE, WARMUP_SIDE, 3)), 4)
    return json.dumps({"instances": [row.tolist()]}).encode()


def swap(srv: Server, archive: bytes, version: int, body: bytes,
         args: argparse.Namespace) -> dict[str, Any]:
    """Publish ``version``, then its first, skipped and steady requests (module docstring)."""
    load_s = publish(srv, WARMUP_MODEL, archive, version)
    client = Client(srv, f"{PREFIX}/v1/models/{WARMUP_MODEL}/versions/{version}:predict", body)
    try:
        ms = [client.predict_ms() for _ in range(args.first + args.skip + args.steady)]
    finally:
        client.close()
    first, steady = ms[:args.first], sorted(ms[args.first + args.skip:])
    first_p99 = percentile(sorted(first), 0.99)
    steady_p99 = percentile(steady, 0.99)
    entry = version_entry(srv, WARMUP_MODEL, version)
    return {"version": version, "load_s": load_s, "warmup": entry.get("warmup"),
            "first_ms": first, "first_request_ms": first[0],
            "first_p99_ms": first_p99, "first_p50_ms": percentile(sorted(first), 0.5),
            "steady_p50_ms": percentile(steady, 0.5), "steady_p99_ms": steady_p99,
            "steady_ms": steady, "first_over_steady_p99": ratio(first_p99, steady_p99)}


def summarise_swaps(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One setting's swaps: medians over rounds, pooled p99s, each round's figures."""
    def med(key: str) -> float | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        return float(np.median(values)) if values else None

    first = sorted(x for r in runs for x in r["first_ms"])
    steady = sorted(x for r in runs for x in r["steady_ms"])
    pooled_first, pooled_steady = percentile(first, 0.99), percentile(steady, 0.99)
    return {
        "first_over_steady_p99": med("first_over_steady_p99"),
        "first_over_steady_p99_rounds": [r["first_over_steady_p99"] for r in runs],
        "first_p99_ms": med("first_p99_ms"), "steady_p99_ms": med("steady_p99_ms"),
        "first_p50_ms": med("first_p50_ms"), "steady_p50_ms": med("steady_p50_ms"),
        "first_request_ms": med("first_request_ms"), "load_s": med("load_s"),
        "pooled_first_p99_ms": pooled_first, "pooled_steady_p99_ms": pooled_steady,
        "pooled_first_over_steady_p99": ratio(pooled_first, pooled_steady),
        "warmup": [r["warmup"] for r in runs],
        "rounds": [{k: v for k, v in r.items() if k not in ("first_ms", "steady_ms")}
                   | {"first_ms": [round(x, 2) for x in r["first_ms"]]} for r in runs],
    }


def warmup_part(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Part 1 (module docstring)."""
    log(f"traffic: exporting {WARMUP_MODEL} (once; cached in {MODEL_CACHE})")
    run_json_plain(["-m", "benchmarks.traffic_bench", "--export", str(MODEL_CACHE)])
    plain = MODEL_CACHE / WARMUP_MODEL / "1"
    warm = MODEL_CACHE / f"{WARMUP_MODEL}_warmup" / "1"
    archives = {"on": pack(warm), "off": pack(plain)}
    root = workdir / "warmup-models"
    model_dir(root, WARMUP_MODEL, plain)
    body = warmup_body()
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    with server(root, workdir, []) as srv:
        srv.wait_available(WARMUP_MODEL, timeout=300)
        client = Client(srv, f"{PREFIX}/v1/models/{WARMUP_MODEL}:predict", body)
        try:  # the server's own first request (its first JSON, first batch...) out of the way
            for _ in range(20):
                client.predict_ms()
        finally:
            client.close()
        version = 1
        for rnd in range(args.swap_rounds):
            for setting in ("on", "off") if rnd % 2 == 0 else ("off", "on"):
                version += 1
                r = swap(srv, archives[setting], version, body, args)
                r["round"] = rnd
                runs[setting].append(r)
                log(f"traffic: warmup {setting}, version {version}: loaded in "
                    f"{r['load_s']:.1f}s (warmup {r['warmup']}), first request "
                    f"{r['first_request_ms']:.1f} ms, first {args.first} p99 "
                    f"{r['first_p99_ms']:.1f} ms, steady p99 {r['steady_p99_ms']:.1f} ms: "
                    f"{fmt(r['first_over_steady_p99'], 2)}x")
    return {"model": WARMUP_MODEL, "first": args.first, "skip": args.skip,
            "steady": args.steady, "rounds": args.swap_rounds,
            "on": summarise_swaps(runs["on"]), "off": summarise_swaps(runs["off"])}


# ----------------------------------------------------------------------------- 2. cost


def thread_cpu(pid: int) -> Any:
    from benchmarks.profile_server import thread_cpu as read

    return read(pid)


def thread_groups(before: Any, after: Any, wall: float, requests: float
                  ) -> list[dict[str, Any]]:
    """The server's threads over a load, grouped by name (benchmarks/profile_server.py): cores,
    CPU ms per request (user + system) and context switches per request (voluntary: it
    blocked, on a lock, the GIL, a queue; involuntary: preempted)."""
    from benchmarks.profile_server import thread_cpu_delta

    out = []
    for name, n, t in thread_cpu_delta(before, after):
        cpu = t.user + t.sys
        if cpu > 0 and requests:
            out.append({"thread": name, "threads": n, "cores": cpu / wall,
                        "cpu_ms_per_req": 1e3 * cpu / requests,
                        "switches_per_req": (t.voluntary / requests,
                                             t.involuntary / requests)})
    return out


def set_setting(srv: Server, model: str, setting: str, on: bool) -> Any:
    """Turn ``setting`` on or off for ``model``; the server's answer (a LoggingStatus or a
    ShadowReport; None for ``none``)."""
    if setting == "logging":
        return http_json(srv, "POST", f"/api/models/{model}:logging",
                         {"sampling_rate": 1.0 if on else 0.0})
    if setting == "shadow":
        doc = {"version": 2, "fraction": 1.0} if on else {"fraction": 0}
        return http_json(srv, "POST", f"/api/models/{model}:shadow", doc)
    return None


def model_stats(srv: Server, model: str) -> dict[str, Any]:
    for entry in http_json(srv, "GET", "/api/stats")["models"]:
        if entry["name"] == model:
            return dict(entry)
    raise RuntimeError(f"{model} is not in {PREFIX}/api/stats")


def one_load(args: argparse.Namespace, srv: Server, workdir: Path, model: str, setting: str,
             concurrency: int, spy: list[str] | None = None) -> dict[str, Any]:
    """One closed-loop load of ``model`` with ``setting`` on (``spy``: a py-spy command run
    over the measured window)."""
    started = set_setting(srv, model, setting, True)
    cpu0, t0 = thread_cpu(srv.proc.pid), time.perf_counter()
    spying = None
    if spy:
        spying = subprocess.Popen(spy, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
    try:
        r = loadgen(srv, f"{PREFIX}/v1/models/{model}:predict", BODIES[model](), workdir,
                    concurrency, args.warmup, args.duration)
    finally:
        if spying is not None:
            _, err = spying.communicate(timeout=args.warmup + args.duration + 60)
            if spying.returncode:
                log(f"traffic: py-spy failed: {err[-1000:]}")
    wall = time.perf_counter() - t0
    # requests over the whole load (warm-up included), at the window's rate
    r["threads"] = thread_groups(cpu0, thread_cpu(srv.proc.pid), wall, r["req_per_s"] * wall)
    if setting == "logging":
        after = model_stats(srv, model).get("logging") or {}
        ended = set_setting(srv, model, setting, False)
        r["logging"] = {"at_start": started, "at_end": after, "after_off": ended,
                        "logged": after.get("logged", 0) - started.get("logged", 0),
                        "dropped": after.get("dropped", 0) - started.get("dropped", 0),
                        "bytes": after.get("bytes"), "error": after.get("error")}
    elif setting == "shadow":
        report = set_setting(srv, model, setting, False)
        r["shadow"] = {k: report.get(k) for k in (
            "pairs", "dropped", "errors", "mismatches", "agreement", "latency_us", "active",
            "end_reason", "started_at", "ended_at")}
    return r


def cost_model(args: argparse.Namespace, srv: Server, workdir: Path, model: str
               ) -> dict[str, Any]:
    """Part 2 for one model: version 2 published beside the stable version 1, then the three
    settings in alternated rounds."""
    concurrency = args.mlp784_concurrency if model == "mlp784" else args.concurrency
    http_json(srv, "PUT", f"/api/models/{model}/labels/stable", {"version": 1})
    log(f"traffic: {model}: publishing version 2 (the shadow's candidate)")
    load_s = publish(srv, model, pack(cached_model(model)), 2)
    # the candidate's first calls out of the way, as the stable version's (its status check)
    client = Client(srv, f"{PREFIX}/v1/models/{model}/versions/2:predict", BODIES[model]())
    try:
        for _ in range(5):
            client.predict_ms()
    finally:
        client.close()
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SETTINGS}
    for rnd in range(args.rounds):
        for setting in SETTINGS if rnd % 2 == 0 else SETTINGS[::-1]:
            r = one_load(args, srv, workdir, model, setting, concurrency)
            runs[setting].append(r)
            extra = ""
            if setting == "logging":
                extra = f", logged {r['logging']['logged']} dropped {r['logging']['dropped']}"
            elif setting == "shadow":
                s = r["shadow"]
                extra = (f", pairs {s['pairs']} dropped {s['dropped']} errors {s['errors']} "
                         f"agreement {s['agreement']}")
            log(f"traffic: {model} x{concurrency} {setting}, round {rnd + 1}/{args.rounds}: "
                f"{r['req_per_s']:,.0f} req/s, p99 {r['p99_ms']:.1f} ms{extra}")
    out: dict[str, Any] = {"concurrency": concurrency, "candidate_load_s": load_s}
    for setting, rs in runs.items():
        c = combine_rounds(rs)
        c["threads_rounds"] = [r["threads"] for r in rs]
        for key in ("logging", "shadow"):
            if key in rs[0]:
                c[f"{key}_rounds"] = [r[key] for r in rs]
        if setting == "logging":
            c["logged"] = sum(r["logging"]["logged"] for r in rs)
            c["dropped"] = sum(r["logging"]["dropped"] for r in rs)
        if setting == "shadow":
            for key in ("pairs", "dropped", "errors", "mismatches"):
                c[key] = sum(r["shadow"][key] or 0 for r in rs)
            # of the requests the shadow sampled (all, at fraction 1.0), the share compared
            c["compared_share"] = ratio(c["pairs"], c["pairs"] + c["dropped"] + c["errors"])
            c["agreement"] = [r["shadow"]["agreement"] for r in rs]
        c.pop("threads", None)
        out[setting] = c
    for setting in ("logging", "shadow"):
        out[f"{setting}_over_none"] = ratio(out[setting]["req_per_s"], out["none"]["req_per_s"])
        out[f"{setting}_over_none_rounds"] = round_ratios(out[setting], out["none"])
        out[f"{setting}_cpu_per_req_over_none"] = ratio(
            out[setting].get("server_cpu_ms_per_req"), out["none"].get("server_cpu_ms_per_req"))
    if args.profile:
        out["profiles"] = {s: profile_load(args, srv, workdir, model, s, concurrency)
                           for s in SETTINGS}
    return out


def profile_load(args: argparse.Namespace, srv: Server, workdir: Path, model: str,
                 setting: str, concurrency: int) -> dict[str, Any]:
    """One more load with ``setting`` on, under py-spy over the measured window."""
    from benchmarks.profile_server import markdown, parse_raw, summarise

    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(pyspy).exists():
        return {"error": "py-spy not found: .venv/bin/pip install py-spy"}
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    out_dir = RESULTS / "profiles" / f"{stamp}-traffic-{model}-{setting}"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "profile.txt"
    # py-spy starts after the load generator's warm-up (the sleep), for the measured window
    spy = ["sh", "-c", f"sleep {args.warmup} && exec {pyspy} record -p {srv.proc.pid} "
           f"--threads --nonblocking {'--gil ' if args.profile_gil else ''}-f raw "
           f"-r {args.profile_rate} "
           f"-d {int(args.duration)} -o {raw}"]
    log(f"traffic: profiling {model} {setting}: {spy[-1]}")
    r = one_load(args, srv, workdir, model, setting, concurrency, spy)
    result = {"req_per_s": r["req_per_s"], "p99_ms": r["p99_ms"],
              "server_cpu_ms_per_req": r.get("server_cpu_ms_per_req"),
              "threads": r["threads"], "raw": str(raw)}
    if raw.exists():
        summary = summarise(parse_raw(raw))
        text = markdown(summary, f"traffic {model} x{concurrency} {setting}, "
                                 f"{args.duration:.0f} s, {args.profile_rate} Hz"
                                 f"{', GIL holder only' if args.profile_gil else ''}")
        (out_dir / "summary.md").write_text(text + "\n")
        result["summary"] = summary
    (out_dir / "load.json").write_text(json.dumps(r, indent=1, default=str))
    return result


def cost_part(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Part 2 (module docstring)."""
    root = workdir / "cost-models"
    for model in args.cost_models:
        model_dir(root, model, cached_model(model))
    out: dict[str, Any] = {"models": args.cost_models}
    with server(root, workdir, []) as srv:
        for model in args.cost_models:
            srv.wait_available(model)
        for model in args.cost_models:
            out[model] = cost_model(args, srv, workdir, model)
    return out


# ----------------------------------------------------------------------------- report


def targets_rows(t: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, wanted, this run) rows for ``benchmarks.run``'s targets table."""
    rows = []
    w = t.get("warmup")
    if w:
        for setting in ("on", "off"):
            s = w[setting]
            v = s["first_over_steady_p99"]
            met = ("n/a" if v is None else "met" if v <= TARGET_FIRST_OVER_STEADY
                   else "NOT met")
            rows.append((f"after a swap, p99 of the new version's first {w['first']} requests / "
                         f"its steady p99, warmup {setting} ({w['model']})",
                         f"<= {TARGET_FIRST_OVER_STEADY:.0f}x" if setting == "on"
                         else "(reported)",
                         f"{fmt(v, 2)}x{span(s['first_over_steady_p99_rounds'])}"
                         + (f": {met}" if setting == "on" else "")))
    c = t.get("cost") or {}
    for model in c.get("models", []):
        m = c.get(model)
        if not m:
            continue
        for setting, what in (("logging", "request logging at rate 1.0"),
                              ("shadow", "shadow at fraction 1.0")):
            v = m[f"{setting}_over_none"]
            met = "n/a" if v is None else "met" if v >= TARGET_SETTING_OVER_NONE else "NOT met"
            note = ""
            if setting == "shadow":
                note = (f" ({fmt(m['shadow'].get('compared_share'), 2)} of the sampled requests "
                        "compared, the rest dropped)")
            rows.append((f"{what}: req/s / without, {model} x{m['concurrency']}",
                         f">= {TARGET_SETTING_OVER_NONE}x",
                         f"{fmt(v, 2)}x{span(m[f'{setting}_over_none_rounds'])}: {met}{note}"))
    return rows


def table_rows(t: dict[str, Any], row: Callable[..., None]) -> None:
    """The scenario's rows of ``benchmarks.run.table`` (``row(scenario, metric, value,
    ratio="", target="")``)."""
    w = t.get("warmup")
    if w:
        for setting in ("on", "off"):
            s = w[setting]
            label = f"traffic swap {w['model']} warmup {setting}"
            v = s["first_over_steady_p99"]
            target = ""
            if setting == "on" and v is not None:
                target = (f"<= {TARGET_FIRST_OVER_STEADY:.0f}x: "
                          f"{'met' if v <= TARGET_FIRST_OVER_STEADY else 'NOT met'}")
            row(label, f"p99 first {w['first']} / steady p99 ms (median of rounds)",
                f"{fmt(s['first_p99_ms'], 1)} / {fmt(s['steady_p99_ms'], 1)}",
                f"{fmt(v, 2)}x{span(s['first_over_steady_p99_rounds'])}", target)
            row(label, "pooled over rounds: p99 first / steady ms",
                f"{fmt(s['pooled_first_p99_ms'], 1)} / {fmt(s['pooled_steady_p99_ms'], 1)}",
                f"{fmt(s['pooled_first_over_steady_p99'], 2)}x")
            row(label, "first request ms / publish to AVAILABLE s",
                f"{fmt(s['first_request_ms'], 1)} / {fmt(s['load_s'], 1)}")
    c = t.get("cost") or {}
    for model in c.get("models", []):
        m = c.get(model)
        if not m:
            continue
        for setting in SETTINGS:
            r = m[setting]
            label = f"traffic {model} x{m['concurrency']} {setting}"
            v = m.get(f"{setting}_over_none")
            rat = f"{fmt(v, 2)}x{span(m[f'{setting}_over_none_rounds'])}" if v else ""
            target = (f">= {TARGET_SETTING_OVER_NONE}x: "
                      f"{'met' if v >= TARGET_SETTING_OVER_NONE else 'NOT met'}" if v else "")
            row(label, "req/s / p50 / p99 ms",
                f"{fmt(r['req_per_s'])} / {fmt(r['p50_ms'], 2)} / {fmt(r['p99_ms'], 2)}", rat,
                target)
            cpu = (f"{fmt(m[f'{setting}_cpu_per_req_over_none'], 2)}x"
                   if setting != "none" else "")
            row(label, "server CPU ms per request", fmt(r.get("server_cpu_ms_per_req"), 3), cpu)
            if setting == "logging":
                row(label, "records logged / dropped", f"{r['logged']:,} / {r['dropped']:,}")
            elif setting == "shadow":
                row(label, "pairs compared / dropped / errors (share compared)",
                    f"{r['pairs']:,} / {r['dropped']:,} / {r['errors']:,} "
                    f"({fmt(r.get('compared_share'), 2)})",
                    f"agreement {', '.join(fmt(a, 3) for a in r['agreement'])}")


# ----------------------------------------------------------------------------- main


@contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="jtfs-traffic-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="3 s loads, 1 s warm-up, 3 swap rounds (default 5)")
    p.add_argument("--parts", default="warmup,cost", help="comma list of warmup, cost")
    p.add_argument("--duration", type=float, default=None,
                   help="cost: seconds measured per load (default 10; 3 with --quick)")
    p.add_argument("--warmup", type=float, default=None,
                   help="cost: warm-up seconds per load (default 3; 1 with --quick)")
    p.add_argument("--rounds", type=int, default=3, help="cost: rounds of the three settings")
    p.add_argument("--swap-rounds", type=int, default=None,
                   help="warmup: rounds of (on, off) swaps (default 5; 3 with --quick)")
    p.add_argument("--first", type=int, default=20, help="warmup: first requests measured")
    p.add_argument("--skip", type=int, default=30, help="warmup: requests left out after them")
    p.add_argument("--steady", type=int, default=200, help="warmup: steady requests measured")
    p.add_argument("--cost-models", default="half_plus_two,mlp784",
                   help="cost: comma list of half_plus_two, mlp784")
    p.add_argument("--concurrency", type=int, default=16, help="cost: half_plus_two clients")
    p.add_argument("--mlp784-concurrency", type=int, default=48, help="cost: mlp784 clients")
    p.add_argument("--profile", action="store_true",
                   help="cost: one more load per model and setting under py-spy")
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--profile-gil", action="store_true",
                   help="py-spy --gil: sample only the thread holding the GIL (shares of GIL "
                   "time: on a server whose IOLoop is GIL-bound, what other threads take from "
                   "it)")
    p.add_argument("--export", metavar="CACHE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.export:
        json.dump(export_warmup_model(Path(args.export)), sys.stdout)
        sys.stdout.write("\n")
        return 0
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    args.swap_rounds = args.swap_rounds or (3 if args.quick else 5)
    args.cost_models = [m for m in args.cost_models.split(",") if m]
    unknown = set(args.cost_models) - set(BODIES)
    if unknown:
        p.error(f"unknown --cost-models {sorted(unknown)}")
    parts = [x for x in args.parts.split(",") if x]
    result: dict[str, Any] = {"duration_s": args.duration, "warmup_s": args.warmup,
                              "rounds": args.rounds, "loadavg_start": os.getloadavg()}
    started = time.monotonic()
    with workspace() as workdir:
        if "warmup" in parts:
            result["warmup"] = warmup_part(args, workdir)
        if "cost" in parts:
            result["cost"] = cost_part(args, workdir)
    result["elapsed_s"] = time.monotonic() - started
    result["loadavg_end"] = os.getloadavg()
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
