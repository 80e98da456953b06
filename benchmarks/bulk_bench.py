"""Bulk jobs (issue 13, DESIGN §9): a job's rows/s against the model's own, and what a running
job does to online latency::

    .venv/bin/python -m benchmarks.bulk_bench --rows 100000            # ~3 minutes on 2 cores
    .venv/bin/python -m benchmarks.bulk_bench                          # 1,000,000 rows
    .venv/bin/python -m benchmarks.bulk_bench --rows 100000 --profile  # + py-spy over a job

(``benchmarks.run --only bulk`` runs it as a child and prints its figures with the others.)

What is measured, all in one run, side by side (the machine is shared and noisy):

1. **Data**: ``--rows`` rows of the mlp784 model's input (``benchmarks/models.py``: 784 ->
   4096 -> 4096 -> 10, float32) as Parquet: an ``id`` int64 key column and ``x``, a
   ``fixed_size_list<float32>[784]`` (``--vector-type list``: ``list<float32>``, what pandas
   writes), in row groups of ``--row-group`` rows (default 65,536: one job shard each), random
   normal values, pyarrow's default compression (snappy). Written once to
   ``benchmarks/results/bulk-data/`` (git-ignored) and reused while its row count and schema
   match: 1M rows are ~3.1 GB.
2. **Model in process**: the SavedModel loaded with the project's own loader
   (``SavedModelLoader(path).load()``, the session the server runs), ``servable.run`` called back
   to back from one thread (``benchmarks.timing.call_for``, as ``benchmarks/model_throughput.py``)
   over the data's first row group cut into batches of ``--batch-size`` rows (cycled), and at the
   batch size the server's scheduler actually ran the job's rows in (the bulk lane merges the
   job's calls up to ``max_batch_size``, 1000 by default: 3 x 256 = 768). Measured before and
   after the job, while nothing else runs; the mean of the two is the reference.
3. **The job**: one bulk job over every row (``model``, ``inputs``: the file, ``output``: a
   fresh directory, ``batch_size``), started on the server and polled until it ends; its rows/s
   is the server's own figure (``rows_per_second`` of ``GET P/api/jobs/{id}``: rows over the
   job's run time) and the wall time from ``POST`` to the end is reported beside it. The
   executed batch size and the model's run time per batch come from the server's Prometheus
   metrics over the job, the server process's CPU from /proc. **Target: job rows/s >= 0.8x the
   model's in-process rows/s at the job's batch size** (also reported against the executed
   batch size), and, less sensitive to what else the machine runs, the CPU efficiency: the
   model's CPU per row in process at the executed batch size / the server's CPU per job row.
4. **Online latency**: ``:predict`` on *another* model (``--online-model``, half_plus_two by
   default; ``{"instances": [[1.0]]}``) from ``benchmarks/loadgen.py`` (a separate process,
   ``--online-concurrency`` closed-loop clients, ``--warmup`` + ``--duration`` seconds): a
   window without a job, a window while a second job over the same data runs (started
   ``--job-lead`` seconds before the load, checked still running when the window ends, then
   cancelled), and another window without it once it stopped. **Target: p99 with the job <= 1.5x
   p99 without** (the two windows without it combined: latency quantiles the median of
   theirs, ``run.combine_rounds``).
5. **Beam** (if ``jupyter_tfserving.jobs.beam`` provides ``run_job_on_beam(spec, repository,
   pipeline_options=None)`` and Apache Beam is installed): the same job on Beam's DirectRunner
   over a ``--beam-rows`` slice (its own cached file), beside the server's job on that slice;
   Beam's wall time includes its pipeline start and model load. Else reported as unavailable,
   with the reason (:func:`beam_job` is the hook).
6. ``--profile``: a job over ``--profile-rows`` rows under py-spy (``py-spy record --idle
   --threads``, every thread's stack whether running or waiting: wall-clock shares), summarised
   for the job's thread (Parquet read, vector column to numpy, other columns, cast, submitting
   calls, waiting for the model, concatenating outputs, writing results, manifest and job
   record) and for the batch threads (model run, scheduler, idle), plus per-thread CPU from
   /proc (TensorFlow's native threads included, which py-spy does not sample).

The server: a real ``python -m jupyter_tfserving`` child (``benchmarks.run.server``; its
``root_dir`` is ``benchmarks/results``, so jobs may read the data and write there), jobs started
with ``POST P/api/jobs`` and polled with ``GET P/api/jobs/{id}`` (the process serving the
online requests is the one running the job).

The server runs with its defaults (``--job-model-batching``, ``--job-max-enqueued-batches`` and
``--server-env`` change them, for experiments). Before commit faf12ff the runner submitted a
whole shard's calls at once and, with the default ``max_enqueued_batches`` (10), a 65,536-row
shard of 256-row calls failed with "The batch scheduling queue ... is full";
``--job-max-enqueued-batches 300`` got such a runner through.

Prints one JSON object (the last line of stdout); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from benchmarks.run import (
    PREFIX,
    PY,
    RESULTS,
    combine_rounds,
    export,
    http_get,
    http_post,
    loadgen,
    log,
    metrics_delta,
    ratio,
    server,
)

JOB_MODEL = "mlp784"
WIDTH = 784
DATA_DIR = RESULTS / "bulk-data"
OUT_DIR = RESULTS / "bulk-out"
ONLINE_BODY = b'{"instances": [[1.0]]}'
ENDED = ("completed", "failed", "cancelled", "interrupted")
METRIC_BATCH = "batching_session:input_batch_size_{}[" + JOB_MODEL + "]"


# ----------------------------------------------------------------------------- data


def data_file(rows: int, row_group: int, vector_type: str) -> Path:
    """The Parquet data set of ``rows`` rows (written once, then reused: see the module
    docstring)."""
    path = DATA_DIR / f"{JOB_MODEL}-{rows}-rg{row_group}-{vector_type}.parquet"
    import pyarrow.parquet as pq

    if path.exists():
        try:
            parquet = pq.ParquetFile(path)
            if parquet.metadata.num_rows == rows and parquet.schema_arrow.names == ["id", "x"]:
                return path
        except Exception as exc:  # a half-written or foreign file: write it again
            log(f"bulk: {path} unreadable ({exc}); writing it again")
    write_data(path, rows, row_group, vector_type)
    return path


def write_data(path: Path, rows: int, row_group: int, vector_type: str) -> None:
    """Write ``rows`` rows (``id``, ``x``) in row groups of ``row_group``, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    fixed = vector_type == "fixed"
    x_type = pa.list_(pa.float32(), WIDTH) if fixed else pa.list_(pa.float32())
    schema = pa.schema([("id", pa.int64()), ("x", x_type)])
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    log(f"bulk: writing {rows:,} rows to {path} (~{rows * WIDTH * 4 / 1e9:.2f} GB)")
    t0 = time.perf_counter()
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, rows, row_group):
                n = min(row_group, rows - start)
                x = np.random.default_rng(start).standard_normal((n, WIDTH), dtype=np.float32)
                values = pa.array(x.reshape(-1))
                if fixed:
                    column: Any = pa.FixedSizeListArray.from_arrays(values, WIDTH)
                else:
                    offsets = pa.array(np.arange(0, (n + 1) * WIDTH, WIDTH, dtype=np.int32))
                    column = pa.ListArray.from_arrays(offsets, values)
                ids = pa.array(np.arange(start, start + n, dtype=np.int64))
                writer.write_table(pa.Table.from_arrays([ids, column], schema=schema),
                                   row_group_size=row_group)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    log(f"bulk: written in {time.perf_counter() - t0:.0f}s")


def first_rows(path: Path, limit: int) -> np.ndarray:
    """The first row group's ``x`` (at most ``limit`` rows) as float32 [rows, 784]."""
    import pyarrow.parquet as pq

    column = pq.ParquetFile(path).read_row_group(0, columns=["x"]).column("x").combine_chunks()
    x = np.asarray(column.flatten().to_numpy(), dtype=np.float32).reshape(-1, WIDTH)
    return np.ascontiguousarray(x[:limit])


# ----------------------------------------------------------------------------- the model alone


def model_in_process(model_dir: Path, rows: np.ndarray, batch_sizes: list[int],
                     seconds: float) -> dict[int, dict[str, Any]]:
    """The model's own throughput, one thread, per batch size: ``servable.run`` back to back
    over ``rows`` cut into batches (cycled), as ``benchmarks/model_throughput.py`` measures it
    (rows/s over wall time, the process's CPU per row)."""
    from benchmarks.timing import call_for
    from jupyter_tfserving.platforms.tensorflow import SavedModelLoader

    servable = SavedModelLoader(str(model_dir / "1")).load()
    out: dict[int, dict[str, Any]] = {}
    try:
        for batch in sorted(set(batch_sizes)):
            data = rows if len(rows) >= batch else np.resize(rows, (batch, WIDTH))
            batches = itertools.cycle([data[i:i + batch]
                                       for i in range(0, len(data) - batch + 1, batch)])
            servable.run("serving_default", {"x": next(batches)})  # warm
            calls, wall, cpu = call_for(
                lambda b=batches: servable.run("serving_default", {"x": next(b)}), 1, seconds)
            out[batch] = {"batch_size": batch, "calls": calls, "wall_s": wall,
                          "rows_per_s": calls * batch / wall, "cores": cpu / wall,
                          "ms_per_call": 1e3 * wall / calls if calls else None,
                          "cpu_ms_per_row": 1e3 * cpu / (calls * batch) if calls else None}
    finally:
        servable.close()
    return out


# ----------------------------------------------------------------------------- the server


class Host(Protocol):
    """The server the benchmark drives: a ``python -m jupyter_tfserving`` child (REST jobs)."""

    mode: str
    port: int
    token: str

    @property
    def base(self) -> str: ...

    def pids(self) -> list[int]: ...

    def start_job(self, doc: dict[str, Any]) -> str: ...

    def job(self, job_id: str) -> dict[str, Any]: ...

    def cancel(self, job_id: str) -> None: ...


def http_delete(url: str, token: str, timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method="DELETE",
                                 headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class RestHost:
    """A real server child (``benchmarks.run.server``): jobs through ``P/api/jobs``."""

    mode = "server"

    def __init__(self, srv: Any) -> None:
        self.srv = srv
        self.port, self.token = srv.port, srv.token

    @property
    def base(self) -> str:
        return str(self.srv.base)

    def pids(self) -> list[int]:
        return list(self.srv.pids())

    def jobs_route(self) -> bool:
        """Whether the server has ``GET P/api/jobs`` (False: 404)."""
        status, body = http_get(f"{self.base}{PREFIX}/api/jobs", self.token)
        if status == 404:
            return False
        if status != 200:
            raise RuntimeError(f"GET {PREFIX}/api/jobs: HTTP {status} {body[:300]!r}")
        return True

    def start_job(self, doc: dict[str, Any]) -> str:
        status, body = http_post(f"{self.base}{PREFIX}/api/jobs", self.token,
                                 json.dumps(doc).encode(), timeout=120)
        if status not in (200, 201):
            raise RuntimeError(f"POST {PREFIX}/api/jobs: HTTP {status} {body[:500]!r}\n"
                               f"{self.srv.log_tail()}")
        return str(json.loads(body)["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        status, body = http_get(f"{self.base}{PREFIX}/api/jobs/{job_id}", self.token)
        if status != 200:
            raise RuntimeError(f"GET {PREFIX}/api/jobs/{job_id}: HTTP {status} {body[:300]!r}")
        result: dict[str, Any] = json.loads(body)
        return result

    def cancel(self, job_id: str) -> None:
        status, body = http_delete(f"{self.base}{PREFIX}/api/jobs/{job_id}", self.token)
        if status != 200:
            raise RuntimeError(f"DELETE {PREFIX}/api/jobs/{job_id}: HTTP {status} "
                               f"{body[:300]!r}")


def wait_available(host: Host, model: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            status, body = http_get(f"{host.base}{PREFIX}/v1/models/{model}", host.token, 5)
            if status == 200 and b'"AVAILABLE"' in body:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{model} not AVAILABLE in {timeout}s")
        time.sleep(0.25)


def server_metrics(host: Host) -> str:
    status, body = http_get(f"{host.base}{PREFIX}/monitoring/prometheus/metrics", host.token)
    if status != 200:
        raise RuntimeError(f"metrics: HTTP {status}: {body[:300]!r}")
    return body.decode()


@contextlib.contextmanager
def make_host(args: argparse.Namespace, model_root: Path, workdir: Path) -> Iterator[Host]:
    """The server (see the module docstring), its jobs through ``P/api/jobs``."""
    params = dict(json.loads(args.job_model_batching or "{}"))
    if args.job_max_enqueued_batches:
        params["max_enqueued_batches"] = args.job_max_enqueued_batches
    batching = {JOB_MODEL: params} if params else {}
    extra = [f"--ServerApp.root_dir={RESULTS}"]
    if batching:
        extra.append(f"--TFServingApp.model_batching_parameters={json.dumps(batching)}")
    env = dict(kv.split("=", 1) for kv in args.server_env)
    with server(model_root, workdir, extra, env=env) as srv:
        host = RestHost(srv)
        srv.wait_available(JOB_MODEL)
        if not host.jobs_route():
            raise RuntimeError(f"the server has no {PREFIX}/api/jobs route (404)")
        yield host


def run_job(host: Host, data: Path, out: Path, batch_size: int,
            on_start: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Start a job of ``JOB_MODEL`` over ``data`` into ``out`` (emptied first) and poll it until
    it ends; its last JSON plus ``wall_s`` (start request to the end, 0.2 s polls) and the
    server's executed batch size over it (Prometheus)."""
    from benchmarks.loadgen import pids_cpu_seconds

    shutil.rmtree(out, ignore_errors=True)
    before = server_metrics(host)
    load0, cpu0 = os.getloadavg()[0], pids_cpu_seconds(host.pids())
    t0 = time.perf_counter()
    job_id = host.start_job({"model": JOB_MODEL, "version": 1, "inputs": [str(data)],
                             "output": str(out), "output_format": "parquet",
                             "batch_size": batch_size})
    if on_start is not None:
        on_start(job_id)
    while True:
        state = host.job(job_id)
        if state["state"] in ENDED:
            break
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    cpu1 = pids_cpu_seconds(host.pids())
    delta = metrics_delta(before, server_metrics(host))
    batches = delta.get(METRIC_BATCH.format("count"), 0.0)
    state["wall_s"] = wall
    state["wall_rows_per_s"] = state["rows_done"] / wall if wall else None
    state["batches"] = batches
    state["mean_batch_size"] = (delta.get(METRIC_BATCH.format("sum"), 0.0) / batches
                                if batches else None)
    # the model's run time per batch in the server (Prometheus runtime_latency, microseconds)
    runtime = [(k, v) for k, v in delta.items() if k.startswith("runtime_latency_")
               and JOB_MODEL in k]
    runs = sum(v for k, v in runtime if k.startswith("runtime_latency_count"))
    run_us = sum(v for k, v in runtime if k.startswith("runtime_latency_sum"))
    state["mean_model_run_ms"] = run_us / runs / 1e3 if runs else None
    state["model_busy"] = run_us / 1e6 / wall if wall else None  # model-seconds per second
    if cpu0 is not None and cpu1 is not None:
        state["server_cores"] = (cpu1 - cpu0) / wall
        state["server_cpu_ms_per_row"] = (1e3 * (cpu1 - cpu0) / state["rows_done"]
                                          if state["rows_done"] else None)
    state["loadavg_1min"] = (load0, os.getloadavg()[0])
    if state["state"] != "completed":
        log(f"bulk: job {job_id} ended {state['state']}: {state.get('error')}")
    return state


# ----------------------------------------------------------------------------- online latency


def online_windows(args: argparse.Namespace, host: Host, data: Path, workdir: Path
                   ) -> dict[str, Any]:
    """``:predict`` p50/p99 of the online model without a job, with one running, without."""
    path = f"{PREFIX}/v1/models/{args.online_model}:predict"
    status, answer = http_post(host.base + path, host.token, ONLINE_BODY)
    if status != 200:
        raise RuntimeError(f"online predict: HTTP {status} {answer[:300]!r}")
    c = args.online_concurrency

    def load(what: str) -> dict[str, Any]:
        log(f"bulk: online {args.online_model} x{c} {what}, {args.warmup}+{args.duration}s")
        return loadgen(host, path, ONLINE_BODY, workdir, c, args.warmup, args.duration)

    out: dict[str, Any] = {"model": args.online_model, "concurrency": c,
                           "duration_s": args.duration, "warmup_s": args.warmup}
    before = load("without a job")
    job_out = OUT_DIR / "online-job"
    shutil.rmtree(job_out, ignore_errors=True)
    job_id = host.start_job({"model": JOB_MODEL, "version": 1, "inputs": [str(data)],
                             "output": str(job_out), "batch_size": args.batch_size})
    time.sleep(args.job_lead)
    during = load("while a job runs")
    job = host.job(job_id)
    out["job_running_throughout"] = job["state"] == "running"
    out["job_during"] = job
    if job["state"] != "running":
        log(f"bulk: the job was {job['state']} by the end of the window (rows "
            f"{job['rows_done']}/{job['rows_total']}): use more --rows or a shorter window")
    host.cancel(job_id)
    t0 = time.perf_counter()
    while host.job(job_id)["state"] not in ENDED and time.perf_counter() - t0 < 300:
        time.sleep(0.2)
    out["job_cancel_s"] = time.perf_counter() - t0
    shutil.rmtree(job_out, ignore_errors=True)
    after = load("without a job, again")
    base = combine_rounds([before, after])
    out.update(without=base, during=during, without_rounds=[before, after])
    out["p99_ratio"] = ratio(during["p99_ms"], base["p99_ms"])
    out["p50_ratio"] = ratio(during["p50_ms"], base["p50_ms"])
    out["p99_ratio_rounds"] = [ratio(during["p99_ms"], r["p99_ms"]) for r in (before, after)]
    out["req_per_s_ratio"] = ratio(during["req_per_s"], base["req_per_s"])
    return out


# ----------------------------------------------------------------------------- Beam


def beam_job(data: Path, model_root: Path, out: Path, batch_size: int) -> dict[str, Any]:
    """HOOK: the same job on Apache Beam's DirectRunner, through
    ``jupyter_tfserving.jobs.beam.run_job_on_beam(spec, repository, pipeline_options=None)``
    (being written beside this benchmark). Returns ``available: False`` with the reason when
    the module, the function or Apache Beam is missing; else rows, wall seconds (pipeline start
    and model load included) and rows/s."""
    try:  # the module imports apache_beam (the optional ``beam`` extra) at its top
        from jupyter_tfserving.jobs import beam as beam_module
    except ImportError as exc:
        return {"available": False, "why": f"jupyter_tfserving.jobs.beam: {exc}"}
    run = getattr(beam_module, "run_job_on_beam", None)
    if run is None:
        return {"available": False,
                "why": "jupyter_tfserving.jobs.beam has no run_job_on_beam"}
    import pyarrow.parquet as pq

    from jupyter_tfserving.jobs.runner import JobSpec

    rows = int(pq.ParquetFile(data).metadata.num_rows)
    shutil.rmtree(out, ignore_errors=True)
    spec = JobSpec(model=JOB_MODEL, inputs=(str(data),), output=str(out), version=1,
                   batch_size=batch_size)
    t0 = time.perf_counter()
    # flags [] (DirectRunner, its defaults): None would parse this process's sys.argv
    result = run(spec, str(model_root), [])
    wall = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return {"available": True, "rows": rows, "wall_s": wall, "rows_per_s": rows / wall,
            "summary": result}


# ----------------------------------------------------------------------------- profile

# Stages of the job's thread, first match wins (frames as py-spy names them: ``Class.method
# (pkg/file.py)``, line dropped). Leaves in ``_shard`` itself (C code called from one of its
# lines) are told apart by the text of that line (:data:`SHARD_LINES`).
JOB_STAGES: list[tuple[str, str]] = [
    ("Parquet read (sources._parquet_rows: open, read_row_groups, slice)",
     r"(^|\.)_parquet_rows \("),
    ("vector column -> numpy (sources._vectors)", r"(^|\.)_vectors \("),
    ("other columns -> numpy (sources._table_columns)", r"(^|\.)_table_columns \("),
    ("cast to the signature's dtypes (runner)", r"(^|\.)(_cast|cast_inputs) \("),
    ("write the shard's results (sinks.write_shard)", r"(^|\.)write_shard \("),
    ("manifest and the jobs' record (sinks.write_manifest, runner._save)",
     r"(^|\.)(write_manifest|_save) \("),
    ("submit calls (dataplane.begin_predict, submit_predict, scheduler.schedule)",
     r"(^|\.)(begin_predict|submit_predict|_submit) \("),
    ("wait for the model (Future.result, futures.wait)",
     r"(^|\.)(result|wait) \(concurrent/futures/_base"),
]
SHARD_LINES: list[tuple[str, str]] = [
    ("concatenate the outputs (runner._shard)", "concatenate"),
    ("wait for the model (Future.result, futures.wait)", ".result()"),
    ("slice the calls' rows (runner._shard)", "chunk"),
]
BATCH_STAGES: list[tuple[str, str]] = [
    ("model run (servable.run: TensorFlow session)",
     r"(\(tensorflow/|platforms/tensorflow\.py)"),
    ("batch scheduler (merge/split rows, bookkeeping)", r"\(jupyter_tfserving/batching/"),
]
JOB_THREAD = re.compile(r"(^|\.)_run \(jupyter_tfserving/jobs/runner\.py")
BATCH_THREAD = re.compile(r"(^|\.)_work \(jupyter_tfserving/batching/scheduler\.py")
SHARD_FRAME = re.compile(r"(^|\.)_shard \(.*:(\d+)\)$")


def _lines(module: Any) -> dict[int, str]:
    """A module's source lines by number (as the server read it, unless edited since)."""
    text = Path(module.__file__).read_text().splitlines()
    return {i + 1: line for i, line in enumerate(text)}


def summarise_profile(raw: Path) -> dict[str, Any]:
    """Wall-clock shares of the job's thread and of the batch threads (see the module
    docstring) from a ``py-spy record --idle --threads -f raw`` profile."""
    from benchmarks.profile_server import IDLE_LEAVES, _frame_name, parse_raw
    from jupyter_tfserving.batching import scheduler
    from jupyter_tfserving.jobs import runner

    shard_lines, scheduler_lines = _lines(runner), _lines(scheduler)
    job: Counter[str] = Counter()
    batch: Counter[str] = Counter()
    batch_threads: set[str] = set()
    for stack, count in parse_raw(raw):
        frames = [f for f in stack if not f.startswith(("thread", "process"))]
        names = [_frame_name(f) for f in frames]
        if any(JOB_THREAD.search(n) for n in names):
            job[_job_stage(frames, names, shard_lines)] += count
        elif any(BATCH_THREAD.search(n) for n in names):
            batch_threads.add(stack[0])
            parked = BATCH_THREAD.search(names[-1]) and "acquire" in scheduler_lines.get(
                int(frames[-1].rsplit(":", 1)[-1].rstrip(")") or 0), "")
            if parked or IDLE_LEAVES.search(names[-1]):
                batch["idle (parked, waiting for a batch)"] += count
                continue
            for stage, rx in BATCH_STAGES:
                if any(re.search(rx, n) for n in names):
                    batch[stage] += count
                    break
            else:
                batch["other"] += count

    def shares(c: Counter[str]) -> list[tuple[str, int, float]]:
        total = sum(c.values())
        return [(k, v, 100.0 * v / total if total else 0.0) for k, v in c.most_common()]

    # batch threads' shares are of all of them together (the bulk lane runs one batch at a
    # time with 2 threads: the other waits for online work)
    return {"job_thread": shares(job), "batch_threads": shares(batch),
            "batch_thread_count": len(batch_threads)}


def _job_stage(frames: list[str], names: list[str], shard_lines: dict[int, str]) -> str:
    for stage, rx in JOB_STAGES:
        if any(re.search(rx, n) for n in names):
            return stage
    # the deepest _shard frame: what its line does
    for frame in reversed(frames):
        m = SHARD_FRAME.search(frame)
        if m:
            text = shard_lines.get(int(m.group(2)), "")
            for stage, needle in SHARD_LINES:
                if needle in text:
                    return stage
            return f"runner._shard, other lines ({text.strip()[:60]})"
    return "runner._run, other (between shards)"


def profile_job(args: argparse.Namespace, host: Host, data: Path) -> dict[str, Any]:
    """A job over ``data`` under py-spy (attached to the process running the job), and the
    server's per-thread CPU from /proc over it."""
    from benchmarks.profile_server import thread_cpu, thread_cpu_delta

    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(pyspy).exists():
        return {"error": "py-spy not found: .venv/bin/pip install py-spy"}
    out_dir = RESULTS / "profiles" / f"{time.strftime('%Y%m%dT%H%M%S')}-bulk"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "profile.txt"
    pid = host.pids()[0]
    cmd = [pyspy, "record", "-p", str(pid), "--threads", "--idle", "-f", "raw",
           "-r", str(args.profile_rate), "-o", str(raw), "--nonblocking"]
    log(f"bulk: profiling a job over {data.name}: {' '.join(cmd)}")
    spy = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    cpu0, t0 = thread_cpu(pid), time.perf_counter()
    job = run_job(host, data, OUT_DIR / "profile-job", args.batch_size)
    per_thread = thread_cpu_delta(cpu0, thread_cpu(pid))
    wall = time.perf_counter() - t0
    spy.send_signal(signal.SIGINT)
    try:
        _, err = spy.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        spy.kill()
        _, err = spy.communicate()
    shutil.rmtree(OUT_DIR / "profile-job", ignore_errors=True)
    if not raw.exists():
        return {"error": f"py-spy wrote nothing: {err[-1000:]}", "job": job}
    summary = summarise_profile(raw)
    summary["threads_cpu"] = [(name, k, t.user / wall, t.sys / wall)
                              for name, k, t in per_thread if t.user + t.sys > 0]
    summary.update(raw=str(raw), job=job, wall_s=wall, command=" ".join(cmd))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


# ----------------------------------------------------------------------------- main


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": args.rows, "batch_size": args.batch_size,
                           "row_group": args.row_group, "vector_type": args.vector_type,
                           "job_model": JOB_MODEL, "online_model": args.online_model,
                           "job_max_enqueued_batches": args.job_max_enqueued_batches,
                           "job_model_batching": args.job_model_batching,
                           "server_env": args.server_env}
    data = data_file(args.rows, args.row_group, args.vector_type)
    out["data"] = {"path": str(data), "bytes": data.stat().st_size}
    root = workdir / "models"
    root.mkdir()
    for model in {JOB_MODEL, args.online_model}:
        export(model, root / model)
    sample = first_rows(data, args.row_group)
    model_dir = root / JOB_MODEL
    seconds = args.inprocess_seconds
    phases = set(args.phases)
    with make_host(args, root, workdir) as host:
        out["host"] = host.mode
        wait_available(host, args.online_model)
        if "throughput" in phases:
            log(f"bulk: the model in process, batch {args.batch_size}, {seconds}s")
            own_before = model_in_process(model_dir, sample, [args.batch_size], seconds)
            log(f"bulk: a job over {args.rows:,} rows, batch {args.batch_size} "
                f"({out['host']})")
            job = run_job(host, data, OUT_DIR / "job", args.batch_size)
            shutil.rmtree(OUT_DIR / "job", ignore_errors=True)
            executed = max(1, round(job["mean_batch_size"] or args.batch_size))
            log(f"bulk: job {job['state']}, {job.get('rows_per_second') or 0:,.0f} rows/s; the "
                f"model in process again, batch {sorted({args.batch_size, executed})}")
            own_after = model_in_process(model_dir, sample, [args.batch_size, executed],
                                         seconds)
            own: dict[str, Any] = {}
            for b in own_after:
                runs = [x[b] for x in (own_before, own_after) if b in x]
                own[str(b)] = {"rows_per_s": float(np.mean([x["rows_per_s"] for x in runs])),
                               "cpu_ms_per_row": float(np.mean([x["cpu_ms_per_row"]
                                                                for x in runs])),
                               "runs": runs}
            rate = job.get("rows_per_second") if job["state"] == "completed" else None
            out["job"] = job
            out["model_in_process"] = own
            out["executed_batch_size"] = executed
            out["job_over_inprocess"] = ratio(rate, own[str(args.batch_size)]["rows_per_s"])
            out["job_over_inprocess_rounds"] = [
                ratio(rate, r["rows_per_s"]) for r in own[str(args.batch_size)]["runs"]]
            out["job_over_inprocess_at_executed_batch"] = ratio(
                rate, own[str(executed)]["rows_per_s"])
            # CPU per row, less sensitive than rows/s to what else the machine runs: the
            # model's own in process / the server process's over the job (everything in it)
            out["job_cpu_efficiency"] = ratio(own[str(executed)]["cpu_ms_per_row"],
                                              job.get("server_cpu_ms_per_row"))
        if "online" in phases:
            out["online"] = online_windows(args, host, data, workdir)
        if "beam" in phases:
            beam_data = data_file(args.beam_rows, args.row_group, args.vector_type)
            log(f"bulk: the server's job over the {args.beam_rows:,}-row slice")
            slice_job = run_job(host, beam_data, OUT_DIR / "beam-slice-job", args.batch_size)
            shutil.rmtree(OUT_DIR / "beam-slice-job", ignore_errors=True)
            log("bulk: the same slice on Beam's DirectRunner (if available)")
            beam = beam_job(beam_data, root, OUT_DIR / "beam-slice-beam", args.batch_size)
            beam["server_job_rows_per_s"] = slice_job.get("rows_per_second")
            beam["server_job_wall_s"] = slice_job["wall_s"]
            beam["beam_over_server"] = ratio(beam.get("rows_per_s"),
                                             slice_job.get("rows_per_second"))
            out["beam"] = beam
        if args.profile:
            profile_data = data_file(args.profile_rows, args.row_group, args.vector_type)
            out["profile"] = profile_job(args, host, profile_data)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the data set")
    p.add_argument("--batch-size", type=int, default=256, help="the job's batch_size")
    p.add_argument("--row-group", type=int, default=65_536, help="Parquet row group rows")
    p.add_argument("--vector-type", choices=("fixed", "list"), default="fixed",
                   help="x as fixed_size_list<float32>[784] or list<float32>")
    p.add_argument("--job-max-enqueued-batches", type=int, default=0,
                   help="max_enqueued_batches for the job's model (default 0: the server's)")
    p.add_argument("--job-model-batching", default=None,
                   help='more batching parameters for the job\'s model (JSON, TF Serving names, '
                   'e.g. \'{"max_batch_size": 256}\': the bulk lane then runs one call a batch)')
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment of the server child (repeatable), e.g. "
                   "TF_NUM_INTRAOP_THREADS=1")
    p.add_argument("--online-model", default="half_plus_two",
                   choices=("half_plus_two", "mlp_in256", "mlp"))
    p.add_argument("--online-concurrency", type=int, default=4)
    p.add_argument("--duration", type=float, default=10.0, help="online window, seconds")
    p.add_argument("--warmup", type=float, default=3.0, help="online warm-up, seconds")
    p.add_argument("--job-lead", type=float, default=2.0,
                   help="seconds between starting the job and the online load")
    p.add_argument("--inprocess-seconds", type=float, default=10.0,
                   help="seconds per in-process measurement")
    p.add_argument("--beam-rows", type=int, default=20_000)
    p.add_argument("--phases", default="throughput,online,beam",
                   help="comma list of throughput, online, beam")
    p.add_argument("--profile", action="store_true", help="also profile a job with py-spy")
    p.add_argument("--profile-rows", type=int, default=None,
                   help="rows of the profiled job (default: min(--rows, 131072))")
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    args = p.parse_args(argv)
    args.phases = [x for x in args.phases.split(",") if x]
    args.profile_rows = args.profile_rows or min(args.rows, 131_072)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    with tempfile.TemporaryDirectory(prefix="jtfs-bulk-") as tmp:
        started = time.monotonic()
        result = measure(args, Path(tmp))
        result["elapsed_s"] = time.monotonic() - started
    shutil.rmtree(OUT_DIR, ignore_errors=True)
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
