"""Latency quantile sketches: DDSketch (1% relative accuracy), since load and over a sliding window.

Who uses them: ``ServingStats`` keeps one ``LatencySketch`` and one ``WindowedSketch`` per served
version and reads p50/p90/p99 from them for the stats JSON; the shadow report keeps its own.
Prometheus keeps TF Serving's buckets (``stats.Histogram``); these sketches only answer quantiles.

Thread-safety: none here. Owners hold their own lock around ``add``/``merge``/``copy``/``merged``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ddsketch import LogCollapsingLowestDenseDDSketch

# Relative accuracy of every quantile: the answer is within 1% of the exact order statistic.
RELATIVE_ACCURACY = 0.01
# Bound on bins per sketch (at 1% accuracy, 2048 bins span values over ~17 orders of magnitude;
# past that the LOWEST bins collapse, so the upper quantiles stay accurate).
BIN_LIMIT = 2048


class LatencySketch:
    """Mergeable quantile sketch of non-negative values (latencies in microseconds).

    ``quantile(q)`` is within ``RELATIVE_ACCURACY`` of the exact nearest-rank q-quantile (the
    smallest value with at least ``q * count`` values at or below it, as ``stats.Histogram``
    and HdrHistogram define it; numpy's ``method="inverted_cdf"``), or None when empty. Memory
    is bounded by ``BIN_LIMIT``; two sketches merge exactly (merging equals adding every value
    to one).
    """

    __slots__ = ("_sketch",)

    def __init__(self) -> None:
        self._sketch = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, BIN_LIMIT)

    def add(self, value: float) -> None:
        self._sketch.add(value)

    def merge(self, other: LatencySketch) -> None:
        """Adds every value of ``other`` to this one (``other`` is unchanged)."""
        self._sketch.merge(other._sketch)

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1), or None when no value was added."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        n = self._sketch.count
        if n == 0:
            return None
        # DDSketch answers the order statistic at index floor(q' * (n - 1)); pick q' so that
        # index is the nearest rank ceil(q * n) - 1 (the 1e-9 absorbs q * n's rounding; the
        # half keeps floor() off a boundary).
        index = max(math.ceil(q * n - 1e-9) - 1, 0)
        value = self._sketch.get_quantile_value(
            1.0 if index >= n - 1 else (index + 0.5) / (n - 1))
        return None if value is None else float(value)

    @property
    def count(self) -> int:
        return int(self._sketch.count)

    @property
    def sum(self) -> float:
        return float(self._sketch.sum)

    def copy(self) -> LatencySketch:
        """An independent copy (merging into an empty sketch copies the bins)."""
        out = LatencySketch()
        out.merge(self)
        return out


class WindowedSketch:
    """A sketch of the values added over the last ``window_seconds``, and of all of them.

    The window is ``slots`` sub-window sketches of ``window_seconds / slots`` each, on a ring:
    adding into a slot whose time has passed first folds it into a "retired" sketch and starts
    it afresh, so memory is bounded by ``slots + 1`` sketches and old values leave the window
    whole slots at a time. ``merged`` covers the current (partial) slot and the ``slots - 1``
    before it, i.e. between ``window_seconds - window_seconds / slots`` and ``window_seconds``
    of history; ``total`` covers every value ever added (so one ``add`` per value serves both
    "recent" and "since start"). ``now`` (seconds, any monotonic origin) defaults to
    ``clock()`` and is injectable for tests.
    """

    __slots__ = ("window_seconds", "_slot_seconds", "_epochs", "_sketches", "_retired",
                 "_clock", "_epoch", "_current")

    def __init__(self, window_seconds: float = 60.0, slots: int = 6,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if window_seconds <= 0 or slots < 1:
            raise ValueError("window_seconds must be > 0 and slots >= 1")
        self.window_seconds = float(window_seconds)
        self._slot_seconds = self.window_seconds / slots
        self._epochs: list[int] = [-1] * slots  # slot index in time (now // slot_seconds)
        self._sketches: list[LatencySketch | None] = [None] * slots
        self._retired = LatencySketch()
        self._clock = clock
        # The slot of the last add (the per-request fast path skips the ring).
        self._epoch: int | None = None
        self._current = LatencySketch()

    def add(self, value: float, now: float | None = None) -> None:
        epoch = int((self._clock() if now is None else now) // self._slot_seconds)
        if epoch != self._epoch:
            self._enter(epoch)
        self._current.add(value)

    def _enter(self, epoch: int) -> None:
        """Make ``epoch``'s slot the current one, retiring what that slot held before."""
        i = epoch % len(self._epochs)
        sketch = self._sketches[i]
        if sketch is None or self._epochs[i] != epoch:
            if sketch is not None:
                self._retired.merge(sketch)
            sketch = self._sketches[i] = LatencySketch()
            self._epochs[i] = epoch
        self._epoch, self._current = epoch, sketch

    def merged(self, now: float | None = None) -> LatencySketch:
        """A new sketch of the values of the last window (empty when none)."""
        epoch = int((self._clock() if now is None else now) // self._slot_seconds)
        oldest = epoch - len(self._epochs)
        out = LatencySketch()
        for slot_epoch, sketch in zip(self._epochs, self._sketches, strict=True):
            if sketch is not None and oldest < slot_epoch <= epoch:
                out.merge(sketch)
        return out

    def total(self) -> LatencySketch:
        """A new sketch of every value ever added."""
        out = self._retired.copy()
        for sketch in self._sketches:
            if sketch is not None:
                out.merge(sketch)
        return out

    def copy(self) -> WindowedSketch:
        """An independent copy (same window, clock and slots)."""
        out = WindowedSketch(self.window_seconds, len(self._epochs), self._clock)
        out._epochs = list(self._epochs)
        out._sketches = [None if s is None else s.copy() for s in self._sketches]
        out._retired = self._retired.copy()
        if self._epoch is not None:
            out._enter(self._epoch)
        return out
