"""Adaptive batch wait (issue 14): ``batch_timeout_micros`` auto vs fixed 0 vs fixed 5000 us,
at three open-loop arrival rates, on the mlp784 model::

    .venv/bin/python -m benchmarks.adaptive_bench            # ~3 minutes on 2 cores
    .venv/bin/python -m benchmarks.adaptive_bench --quick    # ~1 minute

(``benchmarks.run --only adaptive`` runs it as a child and prints its figures with the others.)

What is measured, all in one run, side by side:

1. **One service, three copies of the model**: a real
   :class:`~jupyter_tfserving.service.ModelService` in this process (the data plane, the shared
   batch scheduler and its default ``num_batch_threads``, the project's TensorFlow loader; no
   HTTP, so that the model, which the batch wait is about, and not JSON decides what the server
   can do) serving the mlp784 model (``benchmarks/models.py``: 784 -> 4096 -> 4096 -> 10,
   float32) under three names, each with its own batching parameters: ``auto``
   (``batch_timeout_micros="auto"``, ``batch_latency_target_ms`` = ``--target-ms``),
   ``fixed_0`` and ``fixed_5000`` (TF Serving's meaning). Everything else is the server's
   default (``max_batch_size`` 1000, ``max_enqueued_batches`` 10).
2. **Saturation**: ``--saturation-clients`` callers (64) in a closed loop on ``fixed_0`` (a
   queue that is never empty makes batches as large as the model can use) for
   ``--saturation-seconds``: the rows/s the model sustains here, S.
3. **Open-loop loads**: one row per request, Poisson arrivals (seeded) from one thread at
   ``low`` = min(0.05 S, 1 / target) (at most one request per target: waiting cannot help),
   ``medium`` = 0.5 S and ``high`` = 0.9 S rows/s; each request is sent at its planned
   time whatever the answers do (a late send counts in its latency: no coordinated omission).
   For each rate the three settings run one after the other (``--warmup`` seconds, then
   ``--duration`` seconds measured; ``--rounds`` times, alternated). The p99 target is auto's
   ``--target-ms`` (default 100: the model's batch of one row alone runs ~8-13 ms on 2 cores,
   32 rows ~40 ms). Reported per setting and
   rate: the rows/s answered in the window (throughput), p50/p99 latency of the requests sent
   in it (from the planned send to the answer; the load's last answers are waited for, up to
   60 s, so that no backlog reaches the next load, and one still unanswered counts as
   infinitely late), **goodput** (rows answered within the target per second: throughput at
   the p99 target), refused requests (a full queue), the mean batch size and, for ``auto``, the
   mean wait it chose (the ``batching_session:batch_timeout_micros`` gauge sampled at 10 Hz).
4. **Targets** (issue 14): at every rate auto's goodput >= 0.9x the better fixed value's, and
   auto better than each fixed value at some rate (goodput 5% higher, or p99 lower at a
   goodput within 2%).

Prints one JSON object (the last line of stdout); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.run import export, log

MODEL = "mlp784"
WIDTH = 784
SETTINGS = ("auto", "fixed_0", "fixed_5000")
TARGET_VS_BEST_FIXED = 0.9  # auto's goodput / the better fixed value's, at least, every rate
BETTER_GOODPUT = 1.05  # "better": goodput this much higher ...
SAME_GOODPUT = 0.98  # ... or p99 lower at a goodput at least this close
# How long a load's last answers are waited for (so that no backlog reaches the next load).
DRAIN_SECONDS = 60.0


def make_service(model_root: Path, target_ms: float) -> Any:
    """The service: the model under each setting's name, with that setting's parameters."""
    from jupyter_tfserving.batching import BatchingParameters
    from jupyter_tfserving.core.state import ServableState
    from jupyter_tfserving.service import ModelService, ServiceOptions

    base = BatchingParameters()
    per_model = {
        "auto": base.merged(batch_timeout_micros="auto", batch_latency_target_ms=target_ms),
        "fixed_0": base.merged(batch_timeout_micros=0),
        "fixed_5000": base.merged(batch_timeout_micros=5000),
    }
    for name in SETTINGS:
        export(MODEL, model_root / name)  # a link to the exported (cached) model
    service = ModelService(ServiceOptions(
        model_root=str(model_root), file_system_poll_wait_seconds=0,
        batching=base, model_batching=per_model))
    service.start()
    for name in SETTINGS:
        service.manager.wait_for(name, 1, [ServableState.AVAILABLE], 300)
    return service


class Caller:
    """Sends one-row predicts to one model of the service and records each answer."""

    def __init__(self, service: Any, model: str) -> None:
        from jupyter_tfserving.dataplane import ModelRef

        self.dataplane = service.dataplane
        self.ref = ModelRef(model)
        rng = np.random.default_rng(0)
        self.rows = [rng.standard_normal((1, WIDTH), dtype=np.float32) for _ in range(64)]

    def send(self, i: int, on_done: Any) -> bool:
        """Submit request ``i``; ``on_done(ok)`` is called on the answer. False if refused."""
        from jupyter_tfserving.core.status import ServingError

        row = self.rows[i % len(self.rows)]
        try:
            call = self.dataplane.begin_predict(self.ref, None, lambda sig: {"x": row})
            future: Future = self.dataplane.submit_predict(call)
        except ServingError:
            return False
        future.add_done_callback(lambda f: on_done(f.exception() is None))
        return True


def saturation(service: Any, clients: int, seconds: float) -> dict[str, Any]:
    """Closed loop: ``clients`` requests in flight on fixed_0 for ``seconds``: rows/s."""
    caller = Caller(service, "fixed_0")
    slots = threading.Semaphore(clients)
    done = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds + 1.0
    window = [time.perf_counter() + 1.0, stop]  # 1 s to fill the pipe

    def answered(ok: bool) -> None:
        now = time.perf_counter()
        with lock:
            if ok and window[0] <= now < window[1]:
                done[0] += 1
        slots.release()

    i = 0
    while time.perf_counter() < stop:
        slots.acquire()
        if not caller.send(i, answered):
            slots.release()
        i += 1
    for _ in range(clients):  # wait for the last answers
        slots.acquire(timeout=DRAIN_SECONDS)
    return {"clients": clients, "seconds": seconds, "rows_per_s": done[0] / seconds}


def open_loop(service: Any, model: str, rate: float, warmup: float, duration: float,
              target_s: float, seed: int) -> dict[str, Any]:
    """Poisson arrivals at ``rate`` rows/s for ``warmup`` + ``duration`` seconds on ``model``."""
    caller = Caller(service, model)
    rng = random.Random(seed)
    offsets, t = [], 0.0
    while t < warmup + duration:
        t += rng.expovariate(rate)
        offsets.append(t)
    lock = threading.Lock()
    latencies: list[float] = []
    completions: list[float] = []
    refused = [0, 0]  # sent in the window: refused, failed
    pending = [0]  # every request sent and not answered yet
    sending = [True]
    all_done = threading.Event()
    sampler_stop = threading.Event()
    waits: list[float] = []

    def sample() -> None:  # the gauge's value, as a scrape would see it
        while not sampler_stop.wait(0.1):
            waits.append(service.batch_timeouts().get(model, 0) / 1e3)

    snapshot0 = _batching(service, model)
    start = time.perf_counter() + 0.05
    window = (start + warmup, start + warmup + duration)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for i, offset in enumerate(offsets):
        planned = start + offset
        delay = planned - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        measured = window[0] <= planned < window[1]

        def answered(ok: bool, planned: float = planned, measured: bool = measured) -> None:
            now = time.perf_counter()
            with lock:
                if ok:
                    completions.append(now)
                if measured:
                    if ok:
                        latencies.append(now - planned)
                    else:
                        refused[1] += 1
                pending[0] -= 1
                if pending[0] == 0 and not sending[0]:
                    all_done.set()

        with lock:
            pending[0] += 1
        if not caller.send(i, answered):
            with lock:
                pending[0] -= 1
                refused[0] += measured
    time.sleep(max(0.0, window[1] - time.perf_counter()))
    with lock:
        sending[0] = False
        if pending[0] == 0:
            all_done.set()
    all_done.wait(DRAIN_SECONDS)
    sampler_stop.set()
    sampler.join()
    snapshot1 = _batching(service, model)
    with lock:
        sent = sum(1 for o in offsets if window[0] <= start + o < window[1])
        late = sent - refused[0] - refused[1] - len(latencies)  # never answered
        ordered = sorted(latencies) + [math.inf] * max(late, 0)
        in_window = sum(1 for c in completions if window[0] <= c < window[1])
        good = sum(1 for x in latencies if x <= target_s)

    def q(p: float) -> float | None:
        if not ordered:
            return None
        v = ordered[min(len(ordered) - 1, int(p * len(ordered)))]
        return None if math.isinf(v) else v * 1e3

    batches = snapshot1[0] - snapshot0[0]
    return {
        "offered_per_s": sent / duration,
        "rows_per_s": in_window / duration,
        "goodput_per_s": good / duration,
        "p50_ms": q(0.50),
        "p99_ms": q(0.99),
        "refused": refused[0],
        "failed": refused[1],
        "unanswered": max(late, 0),
        "mean_batch_size": (snapshot1[1] - snapshot0[1]) / batches if batches else None,
        "mean_wait_ms": sum(waits) / len(waits) if waits else None,
    }


def _batching(service: Any, model: str) -> tuple[int, float]:
    """(batches, rows) the service has run for ``model`` so far."""
    b = service.stats.snapshot().batching.get(model)
    return (b.input_batch_size.count, b.input_batch_size.sum) if b else (0, 0.0)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one (setting, rate): the median of each figure."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = float(np.median(values)) if values else None
    out["rounds"] = runs
    return out


def verdict(runs: dict[str, dict[str, dict[str, Any]]], rates: dict[str, float]
            ) -> dict[str, Any]:
    """The issue's two targets, from the combined runs."""
    per_rate: dict[str, Any] = {}
    better_than: dict[str, list[str]] = {s: [] for s in SETTINGS if s != "auto"}
    for name in rates:
        auto = runs["auto"][name]
        fixed = {s: runs[s][name] for s in better_than}
        best = max(fixed, key=lambda s: fixed[s]["goodput_per_s"] or 0.0)
        best_goodput = fixed[best]["goodput_per_s"] or 0.0
        ratio = (auto["goodput_per_s"] or 0.0) / best_goodput if best_goodput else None
        per_rate[name] = {"best_fixed": best, "auto_over_best_fixed": ratio,
                          "met": ratio is None or ratio >= TARGET_VS_BEST_FIXED}
        for s, r in fixed.items():
            g_auto, g_fixed = auto["goodput_per_s"] or 0.0, r["goodput_per_s"] or 0.0
            p_auto = auto["p99_ms"] if auto["p99_ms"] is not None else math.inf
            p_fixed = r["p99_ms"] if r["p99_ms"] is not None else math.inf
            if g_auto > BETTER_GOODPUT * g_fixed or (
                    g_auto >= SAME_GOODPUT * g_fixed and p_auto < p_fixed):
                better_than[s].append(name)
    return {
        "per_rate": per_rate,
        "never_worse_than_best_fixed": all(v["met"] for v in per_rate.values()),
        "better_than": better_than,
        "better_than_each_somewhere": all(better_than.values()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 3 s per load, 1 s warm-up, 2 s saturation, one round")
    p.add_argument("--duration", type=float, help="seconds measured per load (default 8)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per load (default 2)")
    p.add_argument("--rounds", type=int, help="rounds of the loads, alternated (default 2)")
    p.add_argument("--target-ms", type=float, default=100.0,
                   help="auto's batch_latency_target_ms, and the p99 target (default 100)")
    p.add_argument("--saturation-clients", type=int, default=64)
    p.add_argument("--saturation-seconds", type=float, help="default 5 (2 with --quick)")
    p.add_argument("--rates", help="comma list of rows/s instead of low,medium,high from S")
    args = p.parse_args(argv)
    duration = args.duration or (3.0 if args.quick else 8.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    rounds = max(1, args.rounds or (1 if args.quick else 2))
    sat_seconds = args.saturation_seconds or (2.0 if args.quick else 5.0)
    target_s = args.target_ms / 1e3
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

    with tempfile.TemporaryDirectory(prefix="jtfs-adaptive-") as tmp:
        model_root = Path(tmp) / "models"
        model_root.mkdir()
        log(f"adaptive: loading {MODEL} as {', '.join(SETTINGS)}")
        service = make_service(model_root, args.target_ms)
        try:
            for name in SETTINGS:  # TensorFlow's first calls are slow
                open_loop(service, name, 50.0, 0.0, 0.5, target_s, seed=0)
            sat = saturation(service, args.saturation_clients, sat_seconds)
            s = sat["rows_per_s"]
            log(f"adaptive: saturation {s:,.0f} rows/s ({args.saturation_clients} callers, "
                f"fixed_0)")
            if args.rates:
                values = [float(r) for r in args.rates.split(",") if r]
                rates = {f"r{i}": v for i, v in enumerate(values)}
            else:
                rates = {"low": min(0.05 * s, 1.0 / target_s), "medium": 0.5 * s,
                         "high": 0.9 * s}
            raw: dict[str, dict[str, list[dict[str, Any]]]] = {
                setting: {name: [] for name in rates} for setting in SETTINGS}
            for rnd in range(rounds):
                for name, rate in rates.items():
                    order = SETTINGS if rnd % 2 == 0 else SETTINGS[::-1]
                    for setting in order:
                        r = open_loop(service, setting, rate, warmup, duration, target_s,
                                      seed=rnd)
                        log(f"adaptive: {name} {rate:,.0f}/s {setting}: "
                            f"{r['rows_per_s']:,.0f} rows/s, p99 {r['p99_ms']} ms, "
                            f"goodput {r['goodput_per_s']:,.0f}/s, batch "
                            f"{r['mean_batch_size']}")
                        raw[setting][name].append(r)
        finally:
            service.stop()
    runs = {setting: {name: combine(rs) for name, rs in by_rate.items()}
            for setting, by_rate in raw.items()}
    result = {
        "model": MODEL,
        "target_ms": args.target_ms,
        "host": f"{os.cpu_count()} CPUs",
        "saturation": sat,
        "rates": rates,
        "duration_s": duration,
        "warmup_s": warmup,
        "rounds": rounds,
        "runs": runs,
        "verdict": verdict(runs, rates),
    }
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
