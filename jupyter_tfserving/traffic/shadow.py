"""Shadow traffic: a candidate version answers a copy of a fraction of a model's live requests,
after the version serving them has answered, and the two answers are compared (DESIGN §10).

Who calls: ``ModelService`` builds one :class:`ShadowTraffic` and wires it: :meth:`observe` to
the data plane's exchanges (``DataPlane.add_exchange_observer``), :meth:`version_changed` to
the manager's listeners, :meth:`rollout_changed` to the control plane's; it calls :meth:`stop`
when it stops. The management routes call :meth:`set` and :meth:`report` on worker threads.

What holds:

- A model has at most one shadow: a candidate version and a fraction in (0, 1]. It is started
  only on an AVAILABLE candidate that is not the version serving the model's unversioned
  requests and has the same signatures as that version (names, input names and dtypes, output
  names); else FAILED_PRECONDITION or INVALID_ARGUMENT saying why.
- Mirrored: the model's unversioned requests (no version, no label) answered by a version
  other than the candidate, each with probability ``fraction``. The exchange reaches
  :meth:`observe` once the serving version has answered; :meth:`observe` only samples and
  queues (it never blocks, runs a model or copies arrays), so the client's answer and latency
  never depend on the shadow. The shadow's own thread starts each run: a predict through the
  data plane's shadow lane (the shared scheduler runs it only while no online batch is ready
  or running; unlike a bulk job's, without waiting for a quiet period) on a
  handle acquired on the candidate, a classify or regress (the candidate's ``run_examples``) on
  the service's request executor. At most ``max_pending`` runs are pending (sampled, not yet
  compared): a sampled request past that, or one the full bulk queue refuses, is dropped and
  counted (``dropped``); so is one sampled while the shadow's thread has used up its CPU
  budget (``max_cpu_share`` of one core, :data:`MAX_CPU_SHARE`, over about a second: under
  heavy traffic a shadow compares what that budget allows and costs the server a bounded
  share, under light traffic it compares every copy). A run that fails is counted
  (``errors``), never retried.
- Each pair (the serving version's outputs, the candidate's) is compared output by output; see
  :func:`compare_output` for the rule and when an output, and a pair, *agrees*. ``agreement``
  is the fraction of pairs in which every output agrees.
- Latencies: on both sides the model's run of the batch that answered the request
  (``Exchange.run_seconds``, the candidate's ``RunFuture.run_seconds``; a classify's or
  regress's ``run_examples``): the time queued is left out, since the shadow waits in the
  low-priority lane by design and would always look slower. The serving requests' end-to-end
  latency is in the version's statistics.
- A shadow ends when its fraction is set to 0 ("stopped"), the model is promoted ("promoted")
  or rolled back ("rolled back"), or the candidate leaves AVAILABLE for any reason
  ("unloaded"); its report stays readable (until the next shadow of the model). Runs still
  pending when it ends are not recorded.
- Bounded memory: per model one report (sketches of bounded size, per-output figures, the
  :data:`WORST_KEPT` worst pairs, with the request's inputs only while request logging is on
  for the model) and at most ``max_pending`` requests held for runs.

Threads: :meth:`observe` and the listeners run on the threads that call them and return at
once; runs are started, and pairs compared, on one thread of this object's (started with the
first shadow); every method is thread-safe. Imports nothing of tornado, Jupyter or TensorFlow.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from ..batching.scheduler import QUEUE_FULL_MESSAGE
from ..core.manager import Manager
from ..core.servable import ExampleBatch, SignatureInfo
from ..core.state import ServableId, ServableState, VersionStatus
from ..core.status import Code, ServingError, failed_precondition, invalid_argument, not_found
from ..core.validation import check_model_name, check_version
from ..dataplane import DataPlane, Exchange, PredictCall
from ..metrics.sketch import LatencySketch

log = logging.getLogger(__name__)

# Shadow runs pending at once (sampled, not yet compared), over all models.
MAX_PENDING = 64
# The share of one core's time the shadow's own thread may spend (starting runs, comparing,
# recording), over a second or so: copies past it are dropped, so a shadow costs a busy
# server a bounded part of its throughput and a quiet one compares every copy. A copy costs
# the server about three times its thread's time in all (the observer, the scheduler, the
# candidate's run): benchmarks/README.md, "Traffic tools".
MAX_CPU_SHARE = 0.02
# Pairs kept in a report's "worst" list.
WORST_KEPT = 10

# What a worst pair keeps of its request: a predict's inputs, or a classify's or regress's
# examples; the transport encodes it (``encode_request`` of :meth:`ShadowTraffic.report`).
ShadowRequest = Mapping[str, np.ndarray] | ExampleBatch
RequestEncoder = Callable[[ShadowRequest], Any]


# ----------------------------------------------------------------------------- the report


class QuantilesJSON(TypedDict):
    p50: float | None
    p90: float | None
    p99: float | None


class LatencyJSON(TypedDict):
    count: int
    p50: float | None
    p90: float | None
    p99: float | None


class OutputReportJSON(TypedDict):
    pairs: int
    mismatches: int
    agreement: float | None
    max_abs_diff: float | None
    mean_abs_diff: float | None
    argmax_agreement: float | None
    abs_diff_quantiles: QuantilesJSON


class WorstJSON(TypedDict):
    time: float
    serving_version: int
    output: str
    max_abs_diff: float | None
    mismatch: str | None
    request: Any


class ShadowReportJSON(TypedDict):
    model: str
    active: bool
    candidate_version: int
    fraction: float
    started_at: float
    ended_at: float | None
    end_reason: str | None
    pairs: int
    dropped: int
    errors: int
    mismatches: int
    agreement: float | None
    outputs: dict[str, OutputReportJSON]
    latency_us: dict[str, LatencyJSON]
    worst: list[WorstJSON]


# ----------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class OutputDiff:
    """One output of one pair compared. ``mismatch``: why the two cannot be compared (None when
    they can); ``max_abs_diff``/``mean_abs_diff``: numeric outputs; ``argmax_rows`` and
    ``argmax_agreed``: class scores; ``agrees``: see :func:`compare_output`."""

    mismatch: str | None
    agrees: bool
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    abs_diff_sum: float = 0.0
    abs_diff_count: int = 0
    argmax_rows: int = 0
    argmax_agreed: int = 0


def is_class_scores(arr: np.ndarray) -> bool:
    """Class scores: a float output of rank 2 with more than one column ([batch, classes])."""
    return arr.dtype.kind == "f" and arr.ndim == 2 and arr.shape[1] > 1


def compare_output(served: np.ndarray | None, shadow: np.ndarray | None) -> OutputDiff:
    """Compare one output of the serving version (``served``) with the candidate's.

    - A *mismatch* (never agrees, never raises): the output is missing on one side, or the
      shapes differ, or the dtypes differ (two string dtypes compare as strings).
    - Strings: they agree when every element is equal.
    - Numbers (bool, int, float, complex): the absolute differences, element by element
      (max and mean; equal values, NaN against NaN included, differ by 0; a NaN or infinity on
      one side only makes the output disagree and is left out of the max and mean). Class
      scores (:func:`is_class_scores`) agree when every row's argmax agrees (the rows that
      agree are counted); other numbers when ``np.allclose(shadow, served, equal_nan=True)``
      (numpy's defaults: ``|shadow - served| <= 1e-8 + 1e-5 * |served|``).
    """
    if served is None:
        return OutputDiff("missing from the serving version's outputs", False)
    if shadow is None:
        return OutputDiff("missing from the candidate's outputs", False)
    a, b = np.asarray(served), np.asarray(shadow)
    if a.shape != b.shape:
        return OutputDiff(f"shape {list(a.shape)} vs {list(b.shape)}", False)
    strings = a.dtype.kind in "OSU" and b.dtype.kind in "OSU"
    if a.dtype != b.dtype and not strings:
        return OutputDiff(f"dtype {a.dtype} vs {b.dtype}", False)
    if strings:
        return OutputDiff(None, bool(np.array_equal(a, b)))
    if a.dtype.kind not in "biufc":
        return OutputDiff(f"dtype {a.dtype} cannot be compared", False)
    wide = np.complex128 if a.dtype.kind == "c" else np.float64
    x, y = a.astype(wide).reshape(-1), b.astype(wide).reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(x - y)
    diff[(x == y) | (np.isnan(x) & np.isnan(y))] = 0.0
    finite = np.isfinite(diff)
    values = diff[finite]
    max_diff = float(values.max()) if values.size else 0.0
    total = float(values.sum())
    mean_diff = total / values.size if values.size else 0.0
    rows = agreed = 0
    if is_class_scores(a):
        rows = a.shape[0]
        agreed = int(np.count_nonzero(np.argmax(a, axis=1) == np.argmax(b, axis=1)))
        agrees = agreed == rows
    else:
        agrees = bool(np.allclose(y, x, equal_nan=True))
    return OutputDiff(None, agrees and bool(finite.all()), max_diff, mean_diff, total,
                      int(values.size), rows, agreed)


def signature_difference(served: Mapping[str, SignatureInfo],
                         candidate: Mapping[str, SignatureInfo]) -> str | None:
    """How the candidate's signatures differ from the serving version's (names, input names
    and dtypes, output names), or None when they do not."""
    if set(served) != set(candidate):
        return _names_differ("signatures", served, candidate)
    for name in sorted(served):
        s, c = served[name], candidate[name]
        if set(s.inputs) != set(c.inputs):
            return f"signature {name}: " + _names_differ("inputs", s.inputs, c.inputs)
        for key in sorted(s.inputs):
            if s.inputs[key].dtype != c.inputs[key].dtype:
                return (f"signature {name}: input {key} is {s.inputs[key].dtype} in the "
                        f"serving version and {c.inputs[key].dtype} in the candidate")
        if set(s.outputs) != set(c.outputs):
            return f"signature {name}: " + _names_differ("outputs", s.outputs, c.outputs)
    return None


def _names_differ(what: str, served: Mapping[str, Any], candidate: Mapping[str, Any]) -> str:
    missing = sorted(set(served) - set(candidate))
    extra = sorted(set(candidate) - set(served))
    parts = ([f"the candidate lacks {', '.join(missing)}"] if missing else []) + (
        [f"the candidate has {', '.join(extra)} besides"] if extra else [])
    return f"{what} differ: {'; '.join(parts)}"


def check_fraction(fraction: object) -> float:
    """A shadow's fraction: a number in [0, 1] (0 ends the shadow), else INVALID_ARGUMENT."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0.0 <= float(fraction) <= 1.0:
        raise invalid_argument(
            f"A shadow's fraction must be a number between 0 and 1, got {fraction!r}")
    return float(fraction)


# ----------------------------------------------------------------------------- one shadow


@dataclass
class _OutputStats:
    pairs: int = 0
    mismatches: int = 0
    agreed: int = 0
    max_abs_diff: float | None = None
    abs_diff_sum: float = 0.0
    abs_diff_count: int = 0
    argmax_rows: int = 0
    argmax_agreed: int = 0
    # Each pair's max abs difference.
    diffs: LatencySketch = field(default_factory=LatencySketch)

    def add(self, diff: OutputDiff) -> None:
        self.pairs += 1
        self.agreed += diff.agrees
        if diff.mismatch is not None:
            self.mismatches += 1
            return
        if diff.max_abs_diff is not None:
            self.max_abs_diff = max(self.max_abs_diff or 0.0, diff.max_abs_diff)
            self.abs_diff_sum += diff.abs_diff_sum
            self.abs_diff_count += diff.abs_diff_count
            self.diffs.add(diff.max_abs_diff)
        self.argmax_rows += diff.argmax_rows
        self.argmax_agreed += diff.argmax_agreed

    def json(self) -> OutputReportJSON:
        return {"pairs": self.pairs, "mismatches": self.mismatches,
                "agreement": self.agreed / self.pairs if self.pairs else None,
                "max_abs_diff": self.max_abs_diff,
                "mean_abs_diff": (self.abs_diff_sum / self.abs_diff_count
                                  if self.abs_diff_count else
                                  0.0 if self.max_abs_diff is not None else None),
                "argmax_agreement": (self.argmax_agreed / self.argmax_rows
                                     if self.argmax_rows else None),
                "abs_diff_quantiles": _quantiles(self.diffs)}


def _quantiles(sketch: LatencySketch) -> QuantilesJSON:
    return {"p50": sketch.quantile(0.5), "p90": sketch.quantile(0.9),
            "p99": sketch.quantile(0.99)}


def _latency(sketch: LatencySketch) -> LatencyJSON:
    return {"count": sketch.count, "p50": sketch.quantile(0.5), "p90": sketch.quantile(0.9),
            "p99": sketch.quantile(0.99)}


@dataclass(order=True)
class _Worst:
    """A kept pair; ordered by how badly it disagrees (see :meth:`_Shadow.record`)."""

    rank: tuple[bool, bool, float, int]
    time: float = field(compare=False)
    serving_version: int = field(compare=False)
    output: str = field(compare=False)
    max_abs_diff: float | None = field(compare=False)
    mismatch: str | None = field(compare=False)
    request: ShadowRequest | None = field(compare=False)


class _Shadow:
    """One model's shadow and its figures; guarded by the owning ShadowTraffic's lock, except
    ``active`` and ``fraction`` (read without it by :meth:`ShadowTraffic.observe`)."""

    def __init__(self, model: str, candidate: int, fraction: float) -> None:
        self.model = model
        self.candidate = candidate
        self.fraction = fraction
        self.active = True
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.pairs = self.dropped = self.errors = self.mismatches = self.agreed = 0
        self.outputs: dict[str, _OutputStats] = {}
        self.serving_latency = LatencySketch()
        self.shadow_latency = LatencySketch()
        self.worst: list[_Worst] = []  # a min-heap of at most WORST_KEPT
        self._order = itertools.count()

    def end(self, reason: str) -> None:
        if self.active:
            self.active = False
            self.ended_at = time.time()
            self.end_reason = reason

    def record(self, when: float, exchange: Exchange, diffs: Mapping[str, OutputDiff],
               seconds: float, request: ShadowRequest | None) -> None:
        """Count one pair. Its rank among the worst: mismatches first, then disagreements,
        then by max abs difference (of its worst output)."""
        self.pairs += 1
        self.agreed += all(d.agrees for d in diffs.values())
        self.mismatches += any(d.mismatch is not None for d in diffs.values())
        for name, diff in diffs.items():
            self.outputs.setdefault(name, _OutputStats()).add(diff)
        self.serving_latency.add(exchange.run_seconds * 1e6)
        self.shadow_latency.add(seconds * 1e6)
        if not diffs:
            return
        name, worst = max(diffs.items(), key=lambda kv: _rank(kv[1]))
        entry = _Worst((*_rank(worst), -next(self._order)), when, exchange.version, name,
                       worst.max_abs_diff, worst.mismatch, request)
        if len(self.worst) < WORST_KEPT:
            heapq.heappush(self.worst, entry)
        elif entry > self.worst[0]:
            heapq.heapreplace(self.worst, entry)

    def json(self, logging_on: bool, encode_request: RequestEncoder | None) -> ShadowReportJSON:
        worst: list[WorstJSON] = []
        for w in sorted(self.worst, reverse=True):
            request = None
            if logging_on and encode_request is not None and w.request is not None:
                request = encode_request(w.request)
            worst.append({"time": w.time, "serving_version": w.serving_version,
                          "output": w.output, "max_abs_diff": w.max_abs_diff,
                          "mismatch": w.mismatch, "request": request})
        return {"model": self.model, "active": self.active,
                "candidate_version": self.candidate, "fraction": self.fraction,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "end_reason": self.end_reason, "pairs": self.pairs, "dropped": self.dropped,
                "errors": self.errors, "mismatches": self.mismatches,
                "agreement": self.agreed / self.pairs if self.pairs else None,
                "outputs": {name: stats.json() for name, stats in sorted(self.outputs.items())},
                "latency_us": {"serving": _latency(self.serving_latency),
                               "shadow": _latency(self.shadow_latency)},
                "worst": worst}


def _rank(diff: OutputDiff) -> tuple[bool, bool, float]:
    return diff.mismatch is not None, not diff.agrees, diff.max_abs_diff or 0.0


# ----------------------------------------------------------------------------- the service's


class ShadowTraffic:
    """The shadows of one service's models (see the module docstring).

    ``serving_version(model)``: the version serving the model's unversioned requests now (the
    control plane's rule); ``logging_on(model)``: whether request logging is on for the model
    (the worst pairs keep their request only then); ``executor``: the service's request
    threads (classify and regress runs); ``rng``: the sampling (seed it in tests)."""

    def __init__(self, manager: Manager, dataplane: DataPlane, executor: Executor, *,
                 serving_version: Callable[[str], int | None],
                 logging_on: Callable[[str], bool] = lambda model: False,
                 max_pending: int = MAX_PENDING, max_cpu_share: float = MAX_CPU_SHARE,
                 rng: random.Random | None = None) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if not 0 < max_cpu_share <= 1:
            raise ValueError(f"max_cpu_share must be in (0, 1], got {max_cpu_share}")
        self._manager = manager
        self._dataplane = dataplane
        self._executor = executor
        self._serving_version = serving_version
        self._logging_on = logging_on
        self.max_pending = max_pending
        self.max_cpu_share = max_cpu_share
        # A token bucket of the thread's CPU seconds: refilled at max_cpu_share per second,
        # holding at most one second's worth; a copy is taken only while it is not empty.
        self._budget = max_cpu_share
        self._budget_at = time.monotonic()
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._shadows: dict[str, _Shadow] = {}  # every model that had one, ended ones too
        self._tasks: deque[Callable[[], None]] = deque()
        self._pending = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ operations

    def set(self, model: str, version: int | None, fraction: float,
            encode_request: RequestEncoder | None = None) -> ShadowReportJSON:
        """Start a shadow of ``model`` on candidate ``version`` taking ``fraction`` of its
        unversioned requests, or (``fraction`` 0; ``version`` may be None) end it; the report.
        Setting a running shadow's fraction keeps its figures; another candidate starts a new
        report. Errors: INVALID_ARGUMENT for a bad fraction or version or different signatures,
        NOT_FOUND for an unknown model (or, ending, a model with no shadow),
        FAILED_PRECONDITION for a candidate that is not AVAILABLE or serves the model's
        unversioned requests now, UNAVAILABLE once stopped. Blocking only briefly (it reads
        both versions' signatures)."""
        check_model_name(model)
        fraction = check_fraction(fraction)
        if fraction == 0.0:
            with self._lock:
                shadow = self._shadows.get(model)
                if shadow is None:
                    raise not_found(f"Model {model} has no shadow")
                shadow.end("stopped")
            return self.report(model, encode_request)
        if version is None:
            raise invalid_argument("A shadow needs the candidate's 'version'")
        check_version(version)
        self._check_candidate(model, version)
        with self._lock:
            if self._stopping:
                raise ServingError(Code.UNAVAILABLE, "The model server is shutting down")
            current = self._shadows.get(model)
            if current is not None and current.active and current.candidate == version:
                current.fraction = fraction
            else:
                if current is not None:
                    current.end("retargeted")
                self._shadows[model] = _Shadow(model, version, fraction)
            self._start_thread()
        return self.report(model, encode_request)

    def report(self, model: str, encode_request: RequestEncoder | None = None
               ) -> ShadowReportJSON:
        """The model's shadow report (its last shadow's, once ended); NOT_FOUND when the model
        never had one. ``encode_request`` turns a worst pair's request into JSON (the worst
        pairs carry their request only while request logging is on for the model)."""
        logging_on = self._logging_on(model)
        with self._lock:
            shadow = self._shadows.get(model)
            if shadow is None:
                raise not_found(f"Model {model} has no shadow")
            return shadow.json(logging_on, encode_request)

    def maybe_report(self, model: str, encode_request: RequestEncoder | None = None
                     ) -> ShadowReportJSON | None:
        """:meth:`report`, or None when the model never had a shadow (the stats)."""
        try:
            return self.report(model, encode_request)
        except ServingError as exc:
            if exc.code == Code.NOT_FOUND:
                return None
            raise

    def _check_candidate(self, model: str, version: int) -> None:
        """The start checks of the module docstring."""
        statuses = {s.version: s for s in self._manager.version_statuses(model)}
        status = statuses.get(version)
        if status is None or status.state is not ServableState.AVAILABLE:
            state = status.state.value if status is not None else "unknown"
            raise failed_precondition(
                f"Version {version} of model {model} is {state}; a shadow needs an AVAILABLE "
                "candidate")
        serving = self._serving_version(model)
        if serving is None:
            raise failed_precondition(
                f"No version of model {model} serves its unversioned requests; there is "
                "nothing to shadow")
        if serving == version:
            raise failed_precondition(
                f"Version {version} serves the unversioned requests of model {model}; shadow "
                "another version")
        with self._manager.acquire(model, serving) as served, \
                self._manager.acquire(model, version) as candidate:
            difference = signature_difference(served.servable.signatures(),
                                              candidate.servable.signatures())
        if difference is not None:
            raise invalid_argument(
                f"Version {version} of model {model} cannot shadow version {serving}: "
                f"{difference}")

    # ------------------------------------------------------------------ hooks

    def observe(self, exchange: Exchange) -> None:
        """The data plane's exchange observer: sample and queue a mirrored run (see the module
        docstring). Never blocks."""
        ref = exchange.ref
        if ref.version is not None or ref.label is not None:
            return
        shadow = self._shadows.get(ref.name)
        if shadow is None or not shadow.active or exchange.version == shadow.candidate:
            return
        if self._rng.random() >= shadow.fraction:
            return
        now = time.time()
        with self._lock:
            if self._stopping or not shadow.active:
                return
            if self._pending >= self.max_pending or not self._within_budget():
                shadow.dropped += 1
                return
            self._pending += 1
            self._tasks.append(functools.partial(self._dispatch, shadow, exchange, now))
            self._wake.notify()

    def version_changed(self, servable_id: ServableId, status: VersionStatus) -> None:
        """Manager listener: a candidate that leaves AVAILABLE ends its shadow ("unloaded")."""
        shadow = self._shadows.get(servable_id.name)
        if shadow is None or not shadow.active or shadow.candidate != servable_id.version \
                or status.state is ServableState.AVAILABLE:
            return
        try:  # events arrive late: look at the version's state now
            now = {s.version: s.state for s in self._manager.version_statuses(servable_id.name)}
        except ServingError:
            now = {}
        if now.get(servable_id.version) is not ServableState.AVAILABLE:
            with self._lock:
                shadow.end("unloaded")

    def rollout_changed(self, model: str, what: str) -> None:
        """Control plane listener: a promote ("promoted") or rollback ("rolled back") of the
        model ends its shadow."""
        with self._lock:
            shadow = self._shadows.get(model)
            if shadow is not None:
                shadow.end(what)

    def stop(self, timeout: float | None = None) -> None:
        """Start no more runs (those queued are dropped; those running complete unrecorded)
        and end the thread. Blocking, briefly."""
        with self._lock:
            self._stopping = True
            self._tasks.clear()
            self._pending = 0
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # ------------------------------------------------------------------ the thread

    def _start_thread(self) -> None:
        """Lock held."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="tfserving-shadow",
                                            daemon=True)
            self._thread.start()

    def _within_budget(self) -> bool:
        """Refill the CPU budget for the time since the last look; True while it holds some.
        Lock held."""
        now = time.monotonic()
        share = self.max_cpu_share
        self._budget = min(share, self._budget + (now - self._budget_at) * share)
        self._budget_at = now
        return self._budget > 0

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._tasks and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                task = self._tasks.popleft()
            started = time.thread_time()
            try:
                task()
            except Exception:  # a bug here must not end the thread
                log.exception("jupyter_tfserving: a shadow task failed")
            spent = time.thread_time() - started
            with self._lock:
                self._budget -= spent

    def _post(self, task: Callable[[], None]) -> None:
        """Queue a task for the thread (from any thread); dropped once stopping."""
        with self._lock:
            if not self._stopping:
                self._tasks.append(task)
                self._wake.notify()

    def _done(self, shadow: _Shadow, error: bool = False, dropped: bool = False) -> None:
        """A pending run ended without a pair."""
        with self._lock:
            if self._stopping:
                return
            self._pending -= 1
            if shadow.active:
                shadow.errors += error
                shadow.dropped += dropped

    def _dispatch(self, shadow: _Shadow, exchange: Exchange, when: float) -> None:
        """Start the candidate's run of the exchange's request (the shadow's thread)."""
        if not shadow.active:
            return self._done(shadow)
        model = exchange.ref.name
        try:
            if exchange.inputs is None:
                self._executor.submit(self._run_examples, shadow, exchange, when)
                return
            handle = self._manager.acquire(model, shadow.candidate)
            try:
                signature = handle.servable.signatures()[exchange.signature_name]
            except BaseException:
                handle.release()
                raise
            call = PredictCall(handle, exchange.signature_name, signature, dict(exchange.inputs))
            future = self._dataplane.submit_predict(call, shadow=True)
        except ServingError as exc:
            return self._done(shadow, error=exc.message != QUEUE_FULL_MESSAGE,
                              dropped=exc.message == QUEUE_FULL_MESSAGE)
        except RuntimeError:  # the executor was shut down: the service is stopping
            return self._done(shadow, dropped=True)
        except Exception:
            log.exception("jupyter_tfserving: shadow run of %s version %s failed to start",
                          model, shadow.candidate)
            return self._done(shadow, error=True)

        def ran(f: Future[dict[str, np.ndarray]]) -> None:
            seconds = future.run_seconds or 0.0
            self._post(functools.partial(self._finish, shadow, exchange, when, seconds, f))

        future.add_done_callback(ran)

    def _run_examples(self, shadow: _Shadow, exchange: Exchange, when: float) -> None:
        """A classify or regress shadow run (a request thread)."""
        future: Future[dict[str, np.ndarray]] = Future()
        started = time.perf_counter()
        try:
            assert exchange.examples is not None
            with self._manager.acquire(exchange.ref.name, shadow.candidate) as handle:
                started = time.perf_counter()
                future.set_result(handle.servable.run_examples(exchange.signature_name,
                                                               exchange.examples))
        except Exception as exc:
            future.set_exception(exc)
        seconds = time.perf_counter() - started
        self._post(functools.partial(self._finish, shadow, exchange, when, seconds, future))

    def _finish(self, shadow: _Shadow, exchange: Exchange, when: float, seconds: float,
                future: Future[dict[str, np.ndarray]]) -> None:
        """Compare a finished run with the serving version's answer (the shadow's thread)."""
        exc = future.exception()
        if exc is not None:
            if not isinstance(exc, ServingError):
                log.warning("jupyter_tfserving: shadow run of %s version %s failed: %r",
                            exchange.ref.name, shadow.candidate, exc)
            return self._done(shadow, error=True)
        outputs = future.result()
        served = exchange.outputs
        diffs = {name: compare_output(served.get(name), outputs.get(name))
                 for name in sorted(set(served) | set(outputs))}
        request: ShadowRequest | None = None
        if self._logging_on(exchange.ref.name):
            request = exchange.inputs if exchange.inputs is not None else exchange.examples
        with self._lock:
            if self._stopping:
                return
            self._pending -= 1
            if shadow.active:
                shadow.record(when, exchange, diffs, seconds, request)
