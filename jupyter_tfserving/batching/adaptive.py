"""The adaptive batch wait: ``batch_timeout_micros="auto"`` with ``batch_latency_target_ms``.

A queue whose parameters say ``auto`` owns one :class:`AdaptiveWait`. Each time a batch opens it
chooses that batch's timeout, from what the queue measured:

- **run time**: a batch of ``n`` rows (rows handed to the model, after padding) runs in
  ``a + b*n`` seconds, fitted by exponentially weighted least squares over recent batches, plus
  twice the fit's mean absolute error as a margin for noise;
- **the rate at which rows join a waiting batch**: the request rate (exponentially weighted
  means of the gaps between tasks and of their rows), tempered by what did join open batches
  over the time batches were open lately. Clients that wait for their answer (closed loop) send
  nothing while their rows sit in a batch: a single such client makes no batch grow however
  fast it sends, and its wait soon stays 0.

A task that opens a batch waits at most ``w``; about ``rate * w`` rows join it; then it runs.
The wait is the largest ``w`` with

    w + run(min(capacity, n0 + rate * w)) <= (1 - MARGIN) * target

(``n0``: the opening task's rows; with ``allowed_batch_sizes``, the run of the padded size), and
no longer than the batch takes to fill: the largest batches that keep the target. It is 0 (the
batch runs as soon as a batch thread is free, TF Serving's ``batch_timeout_micros: 0``) when no
batch has run yet, when the queue had been idle for a whole target before this task (an idle
server adds no latency), when fewer than one more task is expected within the time the target
leaves (low load: waiting would only add latency), or when the run alone takes the target.

A waiting batch also runs as soon as no task has joined it for ``QUIET_GAPS`` times the usual
gap between the tasks of a batch (:meth:`AdaptiveWait.quiet`): arrivals have stopped, e.g.
closed-loop clients that are all waiting for this very batch. The time a ready batch then waits
for a free batch thread is not modelled: under load, batches grow while they wait for one.

Threads: :meth:`opened`, :meth:`joined` and :meth:`quiet` are called by the scheduler under its
lock; :meth:`dispatched` and :meth:`ran` on a batch thread under the scheduler's statistics
lock. Those two publish what :meth:`opened` reads as single tuples, so it needs no lock of its
own. Each call is a few float operations (the scheduler's hot path);
nothing here reads a clock.
"""

from __future__ import annotations

import math

__all__ = ["DECAY", "MARGIN", "QUIET_GAPS", "AdaptiveWait"]

# The share of the target kept free for what the model cannot see (completing futures, waking a
# thread, a run slower than the fit's margin).
MARGIN = 0.1
# Weight of the newest sample in the exponentially weighted estimates: about the last 20
# batches (run time, rows gathered while waiting) or joins (gap between the tasks of a batch).
DECAY = 0.05
# Below this spread of batch sizes (rows, standard deviation) the slope of the run-time fit is
# not trusted: the run time is taken as proportional to the rows (the steepest line through
# the mean), which errs on the side of shorter waits until larger batches have been seen.
MIN_SIZE_SPREAD = 1.0
# A waiting batch runs once no task joined it for this many usual gaps between joins (for
# Poisson arrivals a gap this long has probability e**-6, about 0.25%).
QUIET_GAPS = 6.0
# Gaps between tasks count for at most this many targets in the request rate.
IDLE_GAP_TARGETS = 4.0
# Standard deviations of the rows that join a waiting batch kept in the budget (about the 98th
# percentile for Poisson arrivals).
ARRIVAL_SPREAD = 2.0
# What joined open batches is remembered for about this long (seconds, exponential decay) ...
EVIDENCE_SECONDS = 1.0
# ... and weighed against this many targets' worth of time at the request rate.
PRIOR_TARGETS = 0.25


class AdaptiveWait:
    """Chooses the timeout of each batch of one queue to keep ``target_seconds``.

    ``capacity``: the most rows of a batch (the queue's execution batch size);
    ``allowed_batch_sizes``: the sizes batches are padded up to (empty: none).
    """

    __slots__ = ("target", "_budget", "_capacity", "_sizes", "_sw", "_sx", "_sy", "_sxx",
                 "_sxy", "_dev", "_fit", "_evidence", "_evidence_at", "_gap", "_rows",
                 "_join_gap", "_last_arrival", "last_wait")

    def __init__(self, target_seconds: float, capacity: int,
                 allowed_batch_sizes: tuple[int, ...] = ()) -> None:
        self.target = target_seconds
        self._budget = (1.0 - MARGIN) * target_seconds
        self._capacity = capacity
        self._sizes = allowed_batch_sizes
        # Weighted sums of the run-time regression (x: processed rows, y: seconds).
        self._sw = self._sx = self._sy = self._sxx = self._sxy = 0.0
        self._dev = 0.0  # weighted mean absolute error of the fit
        self._fit: tuple[float, float, float] | None = None  # (a, b, margin), seconds
        # (rows that joined open batches, seconds batches were open), decayed over time.
        self._evidence = (0.0, 0.0)
        self._evidence_at = -math.inf
        self._gap: float | None = None  # weighted mean gap between tasks (capped)
        self._rows = 1.0  # weighted mean rows per task
        self._join_gap: float | None = None  # weighted mean gap between tasks of a batch
        self._last_arrival = -math.inf
        self.last_wait = 0.0  # the latest wait chosen (seconds), for the metrics

    # ------------------------------------------------------------------ scheduler events

    def opened(self, now: float, rows: int) -> float:
        """A task of ``rows`` rows opens a batch at ``now`` (scheduler clock, seconds): the
        batch's timeout in seconds (also kept in :attr:`last_wait`)."""
        idle = self._arrived(now, rows)
        w = 0.0 if idle else self._choose(rows)
        self.last_wait = w
        return w

    def joined(self, now: float, rows: int, gap: float) -> None:
        """A task of ``rows`` rows joined an open batch at ``now``, ``gap`` seconds after the
        batch's previous task."""
        self._arrived(now, rows)
        mean = self._join_gap
        self._join_gap = gap if mean is None else mean + DECAY * (gap - mean)

    def _arrived(self, now: float, rows: int) -> bool:
        """Count a task in the request rate; True when the queue had been idle for a target."""
        gap = now - self._last_arrival
        self._last_arrival = now
        if math.isinf(gap):
            self._rows = float(rows)
            return True
        # A long gap only says "idle": capped, so that one pause does not hide for long the
        # load that follows it (not at one target: that would overstate a low rate).
        cap = IDLE_GAP_TARGETS * self.target
        capped = gap if gap < cap else cap
        mean = self._gap
        self._gap = capped if mean is None else mean + DECAY * (capped - mean)
        self._rows += DECAY * (rows - self._rows)
        return gap >= self.target

    def quiet(self) -> float:
        """How long a waiting batch may go without a new task before it runs (seconds; inf
        until a join was seen)."""
        gap = self._join_gap
        return math.inf if gap is None else QUIET_GAPS * gap

    def dispatched(self, now: float, waited: float, joined_rows: int) -> None:
        """A batch was taken by a batch thread at ``now``, ``waited`` seconds after it opened,
        holding ``joined_rows`` rows beyond those of the task that opened it."""
        gathered, open_time = self._evidence
        keep = math.exp(min(0.0, self._evidence_at - now) / EVIDENCE_SECONDS)
        self._evidence_at = now
        self._evidence = (gathered * keep + joined_rows, open_time * keep + max(waited, 0.0))

    def ran(self, rows: int, seconds: float) -> None:
        """A batch of ``rows`` processed rows ran (successfully) in ``seconds``."""
        fit = self._fit
        if fit is not None:
            self._dev += DECAY * (abs(seconds - fit[0] - fit[1] * rows) - self._dev)
        keep = 1.0 - DECAY
        x = float(rows)
        self._sw = self._sw * keep + 1.0
        self._sx = self._sx * keep + x
        self._sy = self._sy * keep + seconds
        self._sxx = self._sxx * keep + x * x
        self._sxy = self._sxy * keep + x * seconds
        sw = self._sw
        mean_x, mean_y = self._sx / sw, self._sy / sw
        var_x = self._sxx / sw - mean_x * mean_x
        steepest = mean_y / mean_x  # the line through the origin and the mean: a = 0
        if var_x < MIN_SIZE_SPREAD * MIN_SIZE_SPREAD:
            b = steepest
        else:
            b = (self._sxy / sw - mean_x * mean_y) / var_x
            # A run cannot get faster with more rows, nor cost less than nothing at 0 rows.
            b = min(max(b, 0.0), steepest)
        self._fit = (mean_y - b * mean_x, b, 2.0 * self._dev)

    # ------------------------------------------------------------------ estimates

    def run_time(self, rows: int) -> float | None:
        """The predicted run time (seconds, margin included) of a batch of ``rows`` rows
        before padding; None before any batch ran."""
        fit = self._fit
        if fit is None:
            return None
        return fit[0] + fit[1] * self._padded(rows) + fit[2]

    def gather_rate(self) -> float:
        """Rows per second expected to join a waiting batch: the request rate, tempered by
        what joined open batches lately (:data:`PRIOR_TARGETS` targets of prior at the
        request rate), and never above the request rate (0 before two tasks)."""
        gap = self._gap
        if gap is None:
            return 0.0
        if gap <= 0.0:
            return math.inf  # tasks without a gap (a clock that did not move)
        rate = self._rows / gap
        gathered, open_time = self._evidence
        prior = PRIOR_TARGETS * self.target
        return min(rate, (gathered + rate * prior) / (open_time + prior))

    def _padded(self, rows: int) -> int:
        for size in self._sizes:
            if size >= rows:
                return size
        return rows

    def _choose(self, n0: int) -> float:
        fit, capacity = self._fit, self._capacity
        if fit is None or n0 >= capacity:
            return 0.0
        rate = self.gather_rate()
        if math.isinf(rate):
            return 0.0  # the batch fills at once
        a, b, margin = fit
        budget = self._budget
        spare = budget - (a + b * self._padded(n0) + margin)
        # Waiting is worth it only if at least one more task is expected within the spare time.
        if rate * spare < 1.0:
            return 0.0
        if not self._sizes:
            # w + a + b*(n0 + rate*w) + margin <= budget, and no longer than the batch fills;
            # then less by the run of ARRIVAL_SPREAD standard deviations of the rows that join
            # (Poisson: sqrt(rate*w)), so that a busier than average wait keeps the target too.
            w = spare / (1.0 + b * rate)
            w -= b * ARRIVAL_SPREAD * math.sqrt(rate * w) / (1.0 + b * rate)
            w = min(w, (capacity - n0) / rate)
        else:
            # Each allowed size s costs run(s) for any batch of at most s rows: wait until the
            # batch would hold s rows, or as long as run(s) leaves, whichever is shorter.
            w = 0.0
            for size in self._sizes:
                if size < n0:
                    continue
                left = budget - (a + b * size + margin)
                if left <= 0.0:
                    break
                # Wait for x rows, x + ARRIVAL_SPREAD * sqrt(x) <= s - n0: a busier than
                # average wait still fits in s rows.
                k = ARRIVAL_SPREAD
                x = ((math.sqrt(k * k + 4.0 * (size - n0)) - k) / 2.0) ** 2
                w = max(w, min(x / rate, left))
        return min(max(w, 0.0), self.target)
