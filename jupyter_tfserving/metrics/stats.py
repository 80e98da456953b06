"""Thread-safe counters and histograms for requests, model runs and batches.

Who writes: the REST layer records one request when it answers (``record_request``); the
service records each model run (``record_runtime``); the batch scheduler's observer records each
batch (``record_batch``). Who reads: the Prometheus collector at scrape time and the stats JSON
route. All methods take one short lock; nothing here blocks or does I/O.

Latency is kept twice per version: TF Serving's buckets (``Histogram``) for Prometheus, and a
DDSketch (``sketch.WindowedSketch``) from which the stats JSON reads p50/p90/p99, since load
and over the last minute (buckets 1.8x wide cannot give a trustworthy p99).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict, TypeVar

from .sketch import WindowedSketch

K = TypeVar("K")
V = TypeVar("V")

# TF Serving's latency buckets: ExponentialBuckets(10, 1.8, 33), in microseconds.
LATENCY_BUCKETS_US: tuple[float, ...] = tuple(10 * 1.8**i for i in range(33))
# The "recent" window of the per-version latency quantiles (six slots of 10 s).
RECENT_WINDOW_SECONDS = 60.0
# Batch size buckets (rows): powers of two up to 2**16, like TF Serving's batch size histograms.
BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(17))


class Histogram:
    """A cumulative-bucket histogram (Prometheus' model). Not locked: its owner locks."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, cumulative count), ..., ("+Inf", count)]`` as Prometheus wants it."""
        out, running = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=False):  # counts[-1] is +Inf
            running += n
            out.append((_le(bound), running))
        out.append(("+Inf", self.count))
        return out

    def copy(self) -> Histogram:
        h = Histogram(self.bounds)
        h.counts = list(self.counts)
        h.sum, h.count = self.sum, self.count
        return h


def _latency_histogram() -> Histogram:
    return Histogram(LATENCY_BUCKETS_US)


def _entry(table: dict[K, V], key: K, make: Callable[[], V]) -> V:
    """``table[key]``, made by ``make()`` only when missing (the record_* methods run per
    request: ``setdefault`` would build a throw-away default every time)."""
    value = table.get(key)
    if value is None:
        value = table[key] = make()
    return value


def _le(bound: float) -> str:
    return repr(float(bound))


class LatencyJSON(TypedDict):
    """Since load: quantiles from the sketch; sum, count and cumulative buckets exact."""

    p50: float | None
    p90: float | None
    p99: float | None
    sum: float
    count: int
    buckets: list[list[str | int]]


class RecentLatencyJSON(TypedDict):
    """The last ``window_seconds`` (to within one 10 s slot), from the windowed sketch."""

    window_seconds: float
    count: int
    p50: float | None
    p90: float | None
    p99: float | None


class VersionStatsJSON(TypedDict):
    """One version's figures as the stats route writes them."""

    request_count: int
    error_count: int
    latency_us: LatencyJSON
    recent_latency_us: RecentLatencyJSON


@dataclass
class VersionStats:
    """Requests that one version answered (or that failed while routed to it)."""

    request_count: int = 0
    error_count: int = 0
    latency_us: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_US))
    # One sketch add per request serves both "recent" (.merged) and "since load" (.total).
    latency_sketch: WindowedSketch = field(
        default_factory=lambda: WindowedSketch(RECENT_WINDOW_SECONDS))


@dataclass
class BatchStats:
    batches: int = 0
    input_batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))
    processed_batch_size: Histogram = field(
        default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))
    padding_size: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))
    queuing_latency_us: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_US))


class ServingStats:
    """Every serving metric of one server (one per ModelService)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: seconds on any monotonic origin, for the recent-latency window."""
        self._lock = threading.Lock()
        self._clock = clock
        # (model, status) -> count, as TF Serving's :tensorflow:serving:request_count
        self.request_count: dict[tuple[str, str], int] = {}
        # (model, API, entrypoint) -> latency histogram (request_latency)
        self.request_latency: dict[tuple[str, str, str], Histogram] = {}
        # (model, API, runtime) -> latency histogram (runtime_latency)
        self.runtime_latency: dict[tuple[str, str, str], Histogram] = {}
        # (model, version) -> per-version stats (for the dashboard and per-version metrics)
        self.versions: dict[tuple[str, int], VersionStats] = {}
        # model -> batching histograms
        self.batching: dict[str, BatchStats] = {}

    def record_request(self, model: str, version: int | None, api: str, status: str,
                       seconds: float, entrypoint: str = "REST") -> None:
        """One finished request: ``status`` is the canonical code name (``"OK"``...);
        ``version`` is the version it was routed to, or None when routing itself failed."""
        micros = seconds * 1e6
        now = self._clock()
        with self._lock:
            key = (model, status)
            self.request_count[key] = self.request_count.get(key, 0) + 1
            _entry(self.request_latency, (model, api, entrypoint), _latency_histogram
                   ).observe(micros)
            if version is not None:
                stats = _entry(self.versions, (model, version), VersionStats)
                stats.request_count += 1
                if status != "OK":
                    stats.error_count += 1
                stats.latency_us.observe(micros)
                stats.latency_sketch.add(micros, now)

    def record_runtime(self, model: str, api: str, seconds: float,
                       runtime: str = "TF1Session") -> None:
        """One model run (a whole batch when batched)."""
        with self._lock:
            _entry(self.runtime_latency, (model, api, runtime), _latency_histogram
                   ).observe(seconds * 1e6)

    def record_batch(self, model: str, input_rows: int, processed_rows: int,
                     queuing_seconds: Iterable[float]) -> None:
        """One batch: its real rows, its rows after padding, and each task's time queued."""
        with self._lock:
            stats = _entry(self.batching, model, BatchStats)
            stats.batches += 1
            stats.input_batch_size.observe(input_rows)
            stats.processed_batch_size.observe(processed_rows)
            stats.padding_size.observe(processed_rows - input_rows)
            for s in queuing_seconds:
                stats.queuing_latency_us.observe(s * 1e6)

    def retain_versions(self, model: str, versions: Collection[int]) -> None:
        """Forget the per-version statistics of ``model``'s versions not in ``versions`` (the
        service calls this as the manager forgets ended versions, so memory stays bounded)."""
        with self._lock:
            for key in [k for k in self.versions if k[0] == model and k[1] not in versions]:
                del self.versions[key]

    def snapshot(self) -> ServingStats:
        """A consistent deep copy, for readers that format at leisure."""
        copy = ServingStats(self._clock)
        with self._lock:
            copy.request_count = dict(self.request_count)
            copy.request_latency = {k: h.copy() for k, h in self.request_latency.items()}
            copy.runtime_latency = {k: h.copy() for k, h in self.runtime_latency.items()}
            copy.versions = {
                k: VersionStats(v.request_count, v.error_count, v.latency_us.copy(),
                                v.latency_sketch.copy())
                for k, v in self.versions.items()
            }
            copy.batching = {
                k: BatchStats(b.batches, b.input_batch_size.copy(), b.processed_batch_size.copy(),
                              b.padding_size.copy(), b.queuing_latency_us.copy())
                for k, b in self.batching.items()
            }
        return copy

    def version_json(self, model: str, version: int) -> VersionStatsJSON:
        """Dashboard view of one version (caller passes a snapshot for consistency)."""
        stats = self.versions.get((model, version)) or VersionStats()
        h = stats.latency_us
        since_load = stats.latency_sketch.total()
        recent = stats.latency_sketch.merged(self._clock())
        return {
            "request_count": stats.request_count,
            "error_count": stats.error_count,
            "latency_us": {
                "p50": since_load.quantile(0.5),
                "p90": since_load.quantile(0.9),
                "p99": since_load.quantile(0.99),
                "sum": h.sum,
                "count": h.count,
                "buckets": [[le, n] for le, n in h.cumulative()],
            },
            "recent_latency_us": {
                "window_seconds": stats.latency_sketch.window_seconds,
                "count": recent.count,
                "p50": recent.quantile(0.5),
                "p90": recent.quantile(0.9),
                "p99": recent.quantile(0.99),
            },
        }
