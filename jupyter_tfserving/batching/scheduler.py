"""A shared batch scheduler after TF Serving's ``SharedBatchScheduler`` + ``BatchingSession``.

One :class:`BatchScheduler` per server owns ``num_batch_threads`` worker threads shared by all
queues. A queue is made per caller-built key (model, version, signature, non-batch input shapes)
on first use; its worker threads take ready batches from the queues in round-robin order. Each
caller gets a Future that completes with exactly its own rows of every output, in order.

Guarantees: a batch never mixes inputs of different keys; padding rows (``allowed_batch_sizes``)
never reach a caller; every Future completes (result, the model's error, DEADLINE_EXCEEDED,
or UNAVAILABLE at :meth:`BatchScheduler.stop`); a full queue is refused at once (no unbounded
memory). Futures and observers are called outside the scheduler's lock.

Cost per call: an idle batch thread sleeps on a lock of its own, and a task wakes at most one,
only when none is already on its way (a woken thread takes everything ready, and wakes the next
if more is queued). A batch of one task without padding rows is run on that task's arrays and
its outputs are handed over as they are (no concatenate, no split); an unsplit task completes
its Future directly, without a lock or object of its own beyond the task.

A queue whose ``batch_timeout_micros`` is ``"auto"`` times each batch with the wait its
:class:`~jupyter_tfserving.batching.adaptive.AdaptiveWait` chooses when the batch opens, and
also runs a waiting batch once no task has joined it for the controller's quiet time; it tells
the controller of each task, each batch taken and each run. Every other queue keeps TF Serving's
fixed timeout and pays one attribute test per task and per batch for this.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

import numpy as np

from jupyter_tfserving.batching.adaptive import AdaptiveWait
from jupyter_tfserving.batching.parameters import BatchingParameters
from jupyter_tfserving.core.status import Code, ServingError, invalid_argument

__all__ = ["BatchEvent", "BatchScheduler", "QueueStats", "RunFn", "RunFuture"]

log = logging.getLogger(__name__)

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class RunFuture(concurrent.futures.Future[dict[str, np.ndarray]]):
    """A scheduled request's Future. ``run_seconds``: how long the model ran the batch that
    answered it (its last piece's, when it was split), set before the result; None until then
    and when it failed. Readers compare versions by it: it leaves out the time queued."""

    run_seconds: float | None = None

# How long online work must have been idle before a bulk batch starts (see BatchScheduler):
# longer than a busy client's turnaround between an answer and its next request, so that under
# steady online traffic a bulk job waits (strict priority) and runs in the pauses.
BULK_QUIET_SECONDS = 0.02
QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"
SHUTTING_DOWN_MESSAGE = "Batch scheduler is shutting down"
DEADLINE_MESSAGE = "Deadline exceeded while waiting in the batch queue"


@dataclass(frozen=True)
class BatchEvent:
    """What an observer learns after each batch (ran, or failed before running).

    ``input_batch_size``: real rows of the tasks that were run; ``processed_batch_size``: rows
    handed to the model (after padding to ``allowed_batch_sizes``); ``padding_rows``: their
    difference; ``queuing_latencies``: seconds each run task waited in the queue (scheduler
    clock); ``run_seconds``: time in the run function (0 if it was not called); ``error``: the
    error every task of the batch got, or None.
    """

    key: Hashable
    input_batch_size: int
    processed_batch_size: int
    padding_rows: int
    queuing_latencies: list[float]
    run_seconds: float
    error: ServingError | None


@dataclass(frozen=True)
class QueueStats:
    """A snapshot of one queue: what waits in it, and what it has run so far."""

    key: Hashable
    params: BatchingParameters
    enqueued_tasks: int
    enqueued_rows: int
    enqueued_batches: int
    batches_run: int
    tasks_run: int
    rows_run: int
    padding_rows: int
    batches_failed: int
    # The batch timeout in use now (microseconds): the fixed one, or the latest an "auto"
    # queue chose.
    batch_timeout_micros: int


class _Request:
    """A split request: one Future fed by several tasks (an unsplit request has no _Request;
    its one task completes the Future itself)."""

    __slots__ = ("future", "pad", "_lock", "_started", "_done", "_pieces", "_remaining")

    def __init__(
        self, future: RunFuture, num_pieces: int, pad: bool
    ) -> None:
        self.future = future
        self.pad = pad
        self._lock = threading.Lock()
        self._started = False
        self._done = False
        self._pieces: list[dict[str, np.ndarray] | None] = [None] * num_pieces
        self._remaining = num_pieces

    def start(self) -> bool:
        """Called by a worker before a piece runs: False if the request is already finished
        (failed, cancelled by the caller) and the piece must be skipped."""
        with self._lock:
            if self._done:
                return False
            if not self._started:
                if not self.future.set_running_or_notify_cancel():
                    self._done = True
                    return False
                self._started = True
            return True

    def fail(self, error: ServingError) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        _set_exception(self.future, error)

    def piece_done(self, index: int, outputs: dict[str, np.ndarray]) -> None:
        with self._lock:
            if self._done:
                return
            self._pieces[index] = outputs
            self._remaining -= 1
            if self._remaining:
                return
            self._done = True
            pieces = [p for p in self._pieces if p is not None]
            self._pieces = []
        try:
            result = {
                name: _assemble([p[name] for p in pieces], self.pad, None) for name in pieces[0]
            }
        except ServingError as exc:
            _set_exception(self.future, exc)
            return
        _set_result(self.future, result)


def _set_result(
    future: concurrent.futures.Future[dict[str, np.ndarray]], result: dict[str, np.ndarray]
) -> None:
    try:
        future.set_result(result)
    except concurrent.futures.InvalidStateError:
        return  # cancelled by the caller meanwhile (no contextlib.suppress: a hot path)


def _set_exception(
    future: concurrent.futures.Future[dict[str, np.ndarray]], error: BaseException
) -> None:
    try:
        future.set_exception(error)
    except concurrent.futures.InvalidStateError:
        return  # cancelled by the caller meanwhile


class _Task:
    """A request, or one piece of a split request (``request`` not None, ``index`` its place).

    An unsplit task owns its Future alone: exactly one party (the queue, then the one batch
    thread that took its batch, or ``stop``) completes it, so it needs no lock of its own.
    """

    __slots__ = ("future", "request", "index", "inputs", "rows", "enqueued_at", "run", "deadline")

    def __init__(
        self,
        future: RunFuture,
        request: _Request | None,
        index: int,
        inputs: dict[str, np.ndarray],
        rows: int,
        enqueued_at: float,
        run: RunFn,
        deadline: float | None,
    ) -> None:
        self.future = future
        self.request = request
        self.index = index
        self.inputs = inputs
        self.rows = rows
        self.enqueued_at = enqueued_at
        self.run = run
        self.deadline = deadline

    def start(self) -> bool:
        request = self.request
        if request is None:
            return self.future.set_running_or_notify_cancel()
        return request.start()

    def fail(self, error: ServingError) -> None:
        request = self.request
        if request is None:
            _set_exception(self.future, error)
        else:
            request.fail(error)

    def done(self, outputs: dict[str, np.ndarray]) -> None:
        request = self.request
        if request is None:
            _set_result(self.future, outputs)
        else:
            request.piece_done(self.index, outputs)


class _Batch:
    __slots__ = ("tasks", "rows", "oldest", "newest")

    def __init__(self, task: _Task, now: float) -> None:
        self.tasks = [task]
        self.rows = task.rows
        self.oldest = now
        self.newest = now  # when its latest task came (kept by adaptive queues only)


class _Queue:
    """One key's queue. The queued batches are guarded by the scheduler's lock, the counters
    of what ran by its statistics lock."""

    def __init__(self, key: Hashable, params: BatchingParameters, now: float,
                 bulk: bool = False, quiet_seconds: float = 0.0) -> None:
        self.key = key
        self.params = params
        self.bulk = bulk  # low priority: runs only while no online batch is ready or running
        # ... and once online work has been idle this long
        self.quiet_seconds = quiet_seconds
        self.capacity = params.execution_batch_size
        timeout = params.batch_timeout_micros
        # "auto": the adaptive wait sets ``timeout`` and ``quiet`` as each batch opens
        # (``open_batch``). Only the last batch can be open, and one before it is ready anyway,
        # so a new value never moves the due time of a batch that a worker is timing.
        self.adaptive = None if not isinstance(timeout, str) else AdaptiveWait(
            params.batch_latency_target_ms / 1e3, self.capacity, params.allowed_batch_sizes)
        self.timeout = 0.0 if isinstance(timeout, str) else timeout / 1e6
        self.quiet = math.inf  # a waiting batch runs once no task joined it for this long
        # every queued batch is ready
        self.immediate = self.timeout == 0 and self.adaptive is None
        self.allowed_batch_sizes = params.allowed_batch_sizes
        self.pad = params.pad_variable_length_inputs
        self.batches: deque[_Batch] = deque()
        self.last_used = now
        self.batches_run = 0
        self.tasks_run = 0
        self.rows_run = 0
        self.padding_rows = 0
        self.batches_failed = 0

    def ready(self, now: float) -> bool:
        batches = self.batches
        if not batches:
            return False
        if self.immediate or len(batches) > 1:
            return True
        first = batches[0]
        return (first.rows >= self.capacity or now >= first.oldest + self.timeout
                or now >= first.newest + self.quiet)

    def due(self) -> float | None:
        """When the first batch's timeout expires (None: nothing queued)."""
        if not self.batches:
            return None
        first = self.batches[0]
        return min(first.oldest + self.timeout, first.newest + self.quiet)

    def open_batch(self, task: _Task, now: float) -> None:
        """Append a new batch holding ``task``; an adaptive queue times it first. Lock held."""
        adaptive = self.adaptive
        if adaptive is not None:
            self.timeout = adaptive.opened(now, task.rows)
            self.quiet = adaptive.quiet()
        self.batches.append(_Batch(task, now))

    def joined(self, batch: _Batch, rows: int, now: float) -> None:
        """An adaptive queue's task of ``rows`` rows was added to the open ``batch``. Lock
        held."""
        assert self.adaptive is not None
        self.adaptive.joined(now, rows, now - batch.newest)
        batch.newest = now


class BatchScheduler:
    """Batches tasks per key and runs them on shared worker threads.

    Made once per server (``num_batch_threads`` from the global batching parameters), used by
    request handlers via :meth:`schedule`, stopped once at shutdown via :meth:`stop`. ``clock``
    (seconds, monotonic) measures batch timeouts, deadlines and latencies; tests inject one.

    A queue is dropped once it has been empty for ``idle_queue_seconds`` (checked when another
    queue is created), so keys that include input shapes do not accumulate forever; the next task
    for that key makes a new queue with that call's parameters.
    """

    def __init__(
        self,
        num_batch_threads: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        thread_name_prefix: str = "batch_threads",
        idle_queue_seconds: float = 300.0,
    ) -> None:
        if num_batch_threads <= 0:
            raise invalid_argument(f"num_batch_threads must be positive; was {num_batch_threads}")
        self._clock = clock
        self._idle_queue_seconds = idle_queue_seconds
        # One plain lock guards the queues; an idle worker sleeps on its own "park" lock (held
        # by itself, released by whoever wakes it), so waking one is a single release.
        self._lock = threading.Lock()
        self._idle: list[threading.Lock] = []  # parked workers, the last parked on top
        self._waking = 0  # workers released from their park lock that have not looked yet
        self._stats_lock = threading.Lock()
        self._queues: dict[Hashable, _Queue] = {}
        self._order: list[_Queue] = []
        self._next = 0  # round-robin: where the next search for a ready batch starts
        # Bulk batches start only when no online batch is ready or running (a model run takes
        # every core it can: one beside an online batch would slow it down), and at most this
        # many run at once, so that online work keeps a thread (with one thread, it waits for
        # one bulk batch at most).
        self._bulk_limit = max(1, num_batch_threads - 1)
        self._bulk_running = 0
        self._online_running = 0
        # ... nor until online work has been idle for BULK_QUIET_SECONDS: between a client's
        # answer and its next request, a bulk batch would take the cores that request needs.
        self._online_ended = float("-inf")
        self._stopped = False
        self._observers: tuple[Callable[[BatchEvent], None], ...] = ()
        self._threads = [
            threading.Thread(
                target=self._work, name=f"{thread_name_prefix}_{i}", daemon=True
            )
            for i in range(num_batch_threads)
        ]
        for t in self._threads:
            t.start()

    # ----------------------------------------------------------------------------- public API

    def add_observer(self, fn: Callable[[BatchEvent], None]) -> None:
        """Register ``fn``, called on a batch thread, outside the scheduler's lock, after every
        batch and before that batch's Futures complete. It must be quick and thread-safe; an
        exception it raises is logged and ignored."""
        with self._lock:
            self._observers = (*self._observers, fn)

    def schedule(
        self,
        key: Hashable,
        inputs: Mapping[str, np.ndarray],
        run: RunFn,
        params: BatchingParameters,
        deadline: float | None = None,
        *,
        bulk: bool = False,
        quiet_seconds: float = BULK_QUIET_SECONDS,
    ) -> RunFuture:
        """Enqueue one request; return at once with its Future. Never blocks on the model.

        Called from request worker threads or the IOLoop. ``key`` names the queue; every task
        with the same key must have the same input names and dtypes, and the same non-batch
        shapes unless ``params.pad_variable_length_inputs`` (then the key should leave those
        dimensions out). ``run`` takes the batched inputs and returns outputs whose axis 0 is
        the batch's (padded) size; it is called on a batch thread with the run function of the
        batch's first task (same key, same model). A batch of one task that needs no padding
        rows is run on that task's own arrays (no copy, as an unbatched run would be), and its
        outputs are handed over as the model returned them. ``params`` apply only when this
        call creates the queue; a live queue keeps the parameters it was made with.
        ``deadline`` is an absolute time of ``clock``; a task still queued past it fails with
        DEADLINE_EXCEEDED. ``bulk`` (a bulk job's work; it applies when the call creates the
        queue, so a bulk job's key must differ from online keys): its batches start only when
        no online batch is ready or running nor ended in the last ``BULK_QUIET_SECONDS``, at
        most ``num_batch_threads - 1`` of them at once
        (one with a single thread), so online latency holds while a job runs.
        ``quiet_seconds`` (a bulk queue's, when the call creates it) replaces
        ``BULK_QUIET_SECONDS``: shadow traffic uses 0, so that its copies run between one
        client's requests rather than only in pauses of the whole server.

        Raises ServingError at once: INVALID_ARGUMENT for inputs without a common positive row
        count, a task larger than ``max_batch_size`` without large batch splitting, or invalid
        parameters; UNAVAILABLE when the queue is full or the scheduler is stopped. The Future
        fails with the model's error (ServingError; other exceptions as INTERNAL), with INTERNAL
        when an output does not have the batch's rows, or with DEADLINE_EXCEEDED.
        """
        arrays, rows = _check_inputs(inputs)
        future = RunFuture()
        if deadline is not None and self._clock() >= deadline:
            future.set_exception(ServingError(Code.DEADLINE_EXCEEDED, DEADLINE_MESSAGE))
            return future
        wake = None
        with self._lock:
            if self._stopped:
                raise ServingError(Code.UNAVAILABLE, SHUTTING_DOWN_MESSAGE)
            now = self._clock()
            queue = self._queues.get(key)
            if queue is None:
                params.validate()
                self._prune(now)
                queue = _Queue(key, params, now, bulk, quiet_seconds if bulk else 0.0)
                self._queues[key] = queue
                self._order.append(queue)
            queue.last_used = now
            batches = queue.batches
            opened = not batches
            # The common cases first: the task fits as it is in the open batch, or in a new
            # batch of an empty queue (max_enqueued_batches is at least 1).
            if opened:
                if rows <= queue.capacity:
                    queue.open_batch(_Task(future, None, 0, arrays, rows, now, run, deadline),
                                     now)
                else:
                    self._enqueue(queue, future, arrays, rows, run, deadline, now)
            elif batches[-1].rows + rows <= queue.capacity:
                last = batches[-1]
                last.tasks.append(_Task(future, None, 0, arrays, rows, now, run, deadline))
                last.rows += rows
                if queue.adaptive is not None:
                    queue.joined(last, rows, now)
            else:
                self._enqueue(queue, future, arrays, rows, run, deadline, now)
            # Wake one parked worker, unless one is already on its way (it takes whatever is
            # ready when it looks, and wakes another if more is queued); a batch that is not
            # ready yet needs a worker only to time it, i.e. when it is the queue's first.
            if (
                self._idle
                and not self._waking
                and (queue.immediate or opened or queue.ready(now))
            ):
                wake = self._idle.pop()
                self._waking += 1
        if wake is not None:
            wake.release()
        return future

    def queue_stats(self) -> list[QueueStats]:
        """A snapshot of every live queue, in creation order."""
        with self._lock, self._stats_lock:
            return [
                QueueStats(
                    key=q.key,
                    params=q.params,
                    enqueued_tasks=sum(len(b.tasks) for b in q.batches),
                    enqueued_rows=sum(b.rows for b in q.batches),
                    enqueued_batches=len(q.batches),
                    batches_run=q.batches_run,
                    tasks_run=q.tasks_run,
                    rows_run=q.rows_run,
                    padding_rows=q.padding_rows,
                    batches_failed=q.batches_failed,
                    batch_timeout_micros=round(q.timeout * 1e6),
                )
                for q in self._order
            ]

    def stop(self, timeout: float | None = None) -> None:
        """Stop at server shutdown: refuse new tasks, fail every queued task with UNAVAILABLE
        "Batch scheduler is shutting down", let running batches finish, and join the threads
        (waiting at most ``timeout`` seconds in all). Idempotent."""
        with self._lock:
            self._stopped = True
            queued = [t for q in self._order for b in q.batches for t in b.tasks]
            for q in self._order:
                q.batches.clear()
            parked = list(self._idle)
            self._idle.clear()
            self._waking += len(parked)
        for park in parked:
            park.release()
        error = ServingError(Code.UNAVAILABLE, SHUTTING_DOWN_MESSAGE)
        for task in queued:
            task.fail(error)
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            if t is threading.current_thread():
                continue
            t.join(None if end is None else max(0.0, end - time.monotonic()))

    # ------------------------------------------------------------------------------ enqueueing

    def _enqueue(
        self,
        queue: _Queue,
        future: RunFuture,
        arrays: dict[str, np.ndarray],
        rows: int,
        run: RunFn,
        deadline: float | None,
        now: float,
    ) -> None:
        """Place a task (split if allowed and needed) into ``queue``'s batches. Lock held."""
        params = queue.params
        cap = queue.capacity
        batches = queue.batches
        room = cap - batches[-1].rows if batches else 0
        if rows <= room:
            sizes = [rows]
            new_batches = 0
        elif params.enable_large_batch_splitting:
            first = max(room, 0)
            rest = rows - first
            new_batches = -(-rest // cap)
            sizes = ([first] if first else []) + [cap] * (rest // cap)
            if rest % cap:
                sizes.append(rest % cap)
            if new_batches > params.max_enqueued_batches:
                raise invalid_argument(
                    f"Task size {rows} is larger than maximum input batch size "
                    f"{params.max_enqueued_batches * cap}"
                )
        else:
            if rows > params.max_batch_size:
                raise invalid_argument(
                    f"Task size {rows} is larger than maximum input batch size "
                    f"{params.max_batch_size}"
                )
            sizes = [rows]
            new_batches = 1
        if len(batches) + new_batches > params.max_enqueued_batches:
            raise ServingError(Code.UNAVAILABLE, QUEUE_FULL_MESSAGE)

        request = None if len(sizes) == 1 else _Request(future, len(sizes), queue.pad)
        start = 0
        for index, size in enumerate(sizes):
            if request is None:
                piece = arrays
            else:
                piece = {n: a[start : start + size] for n, a in arrays.items()}
            start += size
            task = _Task(future, request, index, piece, size, now, run, deadline)
            if not batches or batches[-1].rows + size > cap:
                queue.open_batch(task, now)
            else:
                batch = batches[-1]
                batch.tasks.append(task)
                batch.rows += size
                if queue.adaptive is not None:
                    queue.joined(batch, size, now)

    def _prune(self, now: float) -> None:
        """Drop queues empty and unused for ``idle_queue_seconds``. Lock held."""
        idle = [
            q
            for q in self._order
            if not q.batches and now - q.last_used >= self._idle_queue_seconds
        ]
        for q in idle:
            del self._queues[q.key]
            self._order.remove(q)
        if idle:
            self._next = 0

    # ------------------------------------------------------------------------------ the workers

    def _bulk_may_start(self, queue: _Queue, now: float) -> bool:
        return (self._bulk_running < self._bulk_limit and not self._online_running
                and now >= self._online_ended + queue.quiet_seconds)

    def _take(self, index: int) -> tuple[_Queue, _Batch]:
        queue = self._order[index]
        self._next = index + 1
        if queue.bulk:
            self._bulk_running += 1
        else:
            self._online_running += 1
        return queue, queue.batches.popleft()

    def _pick(self, now: float) -> tuple[_Queue, _Batch] | None:
        """Take the next ready batch, round-robin over queues; a bulk queue's only when no
        online batch is ready or running and fewer than the bulk limit run. Lock held."""
        order = self._order
        n = len(order)
        if n == 1:
            queue = order[0]
            if queue.batches and (queue.immediate or queue.ready(now)) and (
                    not queue.bulk or self._bulk_may_start(queue, now)):
                return self._take(0)
            return None
        bulk = -1
        for i in range(n):
            index = (self._next + i) % n
            queue = order[index]
            if queue.ready(now):
                if queue.bulk:
                    if bulk < 0 and self._bulk_may_start(queue, now):
                        bulk = index
                    continue
                return self._take(index)
        if bulk >= 0:
            return self._take(bulk)
        return None

    def _wait_time(self, now: float) -> float | None:
        # Bulk queues wait for a free bulk slot and no online batch running (a worker ending
        # one looks again), then for the quiet period after the last online batch.
        bulk_blocked = self._bulk_running >= self._bulk_limit or self._online_running
        ended = self._online_ended
        dues = [max(d, ended + q.quiet_seconds) if q.bulk else d for q in self._order
                if (d := q.due()) is not None and not (q.bulk and bulk_blocked)]
        return max(0.0, min(dues) - now) if dues else None

    def _work(self) -> None:
        park = threading.Lock()  # held by this worker, except while someone wakes it
        park.acquire()
        lock = self._lock
        idle = self._idle
        clock = self._clock
        while True:
            wake = None
            with lock:
                while True:
                    if self._stopped:
                        return
                    now = clock()
                    picked = self._pick(now)
                    if picked is not None:
                        # More queued (ready, or to be timed) and nobody coming: wake one more.
                        if idle and not self._waking and any(q.batches for q in self._order):
                            wake = idle.pop()
                            self._waking += 1
                        break
                    timeout = self._wait_time(now)
                    idle.append(park)
                    lock.release()
                    try:
                        woken = park.acquire(True, -1 if timeout is None else timeout)
                    finally:
                        lock.acquire()
                    if woken:
                        self._waking -= 1
                    elif park in idle:
                        idle.remove(park)  # the timeout ran out: nobody woke this worker
                    else:
                        # Woken just as the timeout ran out: the waker took this worker off
                        # the idle list and releases its park lock right after its own
                        # unlock; take that release, so that the park lock is held again.
                        lock.release()
                        park.acquire()
                        lock.acquire()
                        self._waking -= 1
            if wake is not None:
                wake.release()
            try:
                self._process(*picked)
            except BaseException:  # pragma: no cover - _process fails its tasks itself
                log.exception("Batch thread failed")
            with lock:
                if picked[0].bulk:
                    self._bulk_running -= 1
                else:
                    self._online_running -= 1
                    self._online_ended = clock()

    def _process(self, queue: _Queue, batch: _Batch) -> None:
        """Run one batch and complete its tasks. Called on a batch thread, lock not held."""
        clock = self._clock
        start = clock()
        tasks = batch.tasks
        live: list[_Task] = []
        for task in tasks:
            deadline = task.deadline
            if deadline is not None and start >= deadline:
                task.fail(ServingError(Code.DEADLINE_EXCEEDED, DEADLINE_MESSAGE))
            elif task.start():
                live.append(task)
        if not live:
            return
        rows = batch.rows if len(live) == len(tasks) else sum(t.rows for t in live)
        processed = rows
        for size in queue.allowed_batch_sizes:
            if size >= rows:
                processed = size
                break
        latencies = [start - t.enqueued_at for t in live]
        error: ServingError | None = None
        outputs: dict[str, np.ndarray] = {}
        run_seconds = 0.0
        try:
            first = live[0]
            if len(live) == 1 and processed == rows:
                # One task, no padding rows: its own inputs are the batch (no concatenate).
                batched = first.inputs
            else:
                names = first.inputs.keys()
                if any(t.inputs.keys() != names for t in live):
                    raise ServingError(Code.INTERNAL, "Tasks of one batch have different inputs")
                pad = queue.pad
                batched = {
                    name: _assemble([t.inputs[name] for t in live], pad, processed)
                    for name in first.inputs
                }
            run_start = clock()
            try:
                result = first.run(batched)
            finally:
                run_seconds = clock() - run_start
            outputs = _check_outputs(result, processed)
        except ServingError as exc:
            error = exc
        except Exception as exc:
            error = ServingError(Code.INTERNAL, str(exc) or type(exc).__name__)
        except BaseException as exc:
            # Not even KeyboardInterrupt may leave this batch's callers waiting.
            error = ServingError(Code.INTERNAL, repr(exc))
            self._account(queue, len(live), rows, processed, error)
            self._complete(live, {}, rows, processed, error, run_seconds)
            raise

        self._account(queue, len(live), rows, processed, error)
        if queue.adaptive is not None:
            self._adapt(queue, batch, start, processed, run_seconds, error)
        observers = self._observers
        if observers:
            event = BatchEvent(
                queue.key, rows, processed, processed - rows, latencies, run_seconds, error
            )
            for fn in observers:
                try:
                    fn(event)
                except Exception:
                    log.exception("Batch observer %r failed", fn)
        self._complete(live, outputs, rows, processed, error, run_seconds)

    def _account(
        self, queue: _Queue, tasks: int, rows: int, processed: int, error: ServingError | None
    ) -> None:
        with self._stats_lock:
            queue.batches_run += 1
            queue.tasks_run += tasks
            queue.rows_run += rows
            queue.padding_rows += processed - rows
            if error is not None:
                queue.batches_failed += 1

    def _adapt(self, queue: _Queue, batch: _Batch, start: float, processed: int,
               run_seconds: float, error: ServingError | None) -> None:
        """Tell an adaptive queue's controller how long ``batch`` was open before a thread took
        it at ``start``, what joined it, and (when it ran) its run time."""
        adaptive = queue.adaptive
        assert adaptive is not None
        with self._stats_lock:
            adaptive.dispatched(start, start - batch.oldest, batch.rows - batch.tasks[0].rows)
            if error is None:
                adaptive.ran(processed, run_seconds)

    @staticmethod
    def _complete(
        live: list[_Task],
        outputs: dict[str, np.ndarray],
        rows: int,
        processed: int,
        error: ServingError | None,
        run_seconds: float,
    ) -> None:
        if error is not None:
            for task in live:
                task.fail(error)
            return
        for task in live:
            task.future.run_seconds = run_seconds
        if len(live) == 1 and processed == rows:
            # The only task and no padding: the outputs are all its own, hand them over as is.
            live[0].done(outputs)
            return
        offset = 0
        for task in live:
            end = offset + task.rows
            # Copies: a caller's result must not keep alive, or share memory with, other rows.
            mine = {name: a[offset:end].copy() for name, a in outputs.items()}
            offset = end
            task.done(mine)


# --------------------------------------------------------------------------------- array helpers


def _check_inputs(inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """The inputs as arrays (a new dict) and their common row count, or INVALID_ARGUMENT."""
    if not inputs:
        raise invalid_argument("Batching requires at least one input tensor")
    ndarray = np.ndarray
    arrays = {
        name: value if type(value) is ndarray else np.asarray(value)
        for name, value in inputs.items()
    }
    rows: int | None = None
    for name, a in arrays.items():
        if a.ndim == 0:
            raise invalid_argument(
                f"Batching input tensor {name!r} is a scalar; it needs a batch dimension"
            )
        if rows is None:
            rows = a.shape[0]
        elif a.shape[0] != rows:
            raise invalid_argument(
                "Batching session Run() input tensors must have equal 0th-dimension size"
            )
    assert rows is not None
    if rows == 0:
        raise invalid_argument("Batching input tensors must have at least one row; have 0")
    return arrays, rows


def _fill_value(dtype: np.dtype) -> object:
    return b"" if dtype.kind == "O" else 0


def _assemble(parts: list[np.ndarray], pad: bool, padded_rows: int | None) -> np.ndarray:
    """Concatenate ``parts`` along axis 0 into a fresh array.

    With ``pad``, parts whose non-batch dimensions differ are padded at the end of each dimension
    to the largest (zeros; ``b""`` for object arrays); without it they must match. With
    ``padded_rows`` larger than the total, the extra rows are copies of the first row.
    Mismatches raise ServingError(INTERNAL): the caller's key should have kept them apart.
    """
    first = parts[0]
    dtype = first.dtype
    inner = first.shape[1:]
    same = True
    for p in parts:
        if p.dtype != dtype:
            raise ServingError(Code.INTERNAL, "Tensors of one batch have different dtypes")
        if same and p.shape[1:] != inner:
            same = False
    if same:
        # The common case: one np.concatenate (always a new array), then any padding rows.
        if padded_rows is None:
            return np.concatenate(parts)
        rows = sum(p.shape[0] for p in parts)
        if padded_rows <= rows:
            return np.concatenate(parts)
        out = np.empty((padded_rows, *inner), dtype=dtype)
        np.concatenate(parts, out=out[:rows])
        out[rows:] = out[0]
        return out
    # Non-batch dimensions differ: only allowed with padding, to the largest of each.
    if not pad:
        raise ServingError(
            Code.INTERNAL,
            "Tensors of one batch have different non-batch dimensions: "
            + ", ".join(str(p.shape) for p in parts),
        )
    if any(p.ndim != first.ndim for p in parts):
        raise ServingError(Code.INTERNAL, "Tensors of one batch have different ranks")
    inner = tuple(max(dims) for dims in zip(*(p.shape[1:] for p in parts), strict=True))
    rows = sum(p.shape[0] for p in parts)
    total = max(rows, padded_rows or 0)
    out = np.full((total, *inner), _fill_value(dtype), dtype=dtype)
    offset = 0
    for p in parts:
        n = p.shape[0]
        out[(slice(offset, offset + n),) + tuple(slice(0, d) for d in p.shape[1:])] = p
        offset += n
    if total > rows:
        out[rows:] = out[0]
    return out


def _check_outputs(result: object, processed: int) -> dict[str, np.ndarray]:
    """The run function's outputs as arrays, each with ``processed`` rows, else INTERNAL."""
    if type(result) is not dict and not isinstance(result, Mapping):
        raise ServingError(
            Code.INTERNAL, f"Batched run returned {type(result).__name__}, not a mapping"
        )
    ndarray = np.ndarray
    outputs: dict[str, np.ndarray] = {}
    for name, value in result.items():
        a = value if type(value) is ndarray else np.asarray(value)
        n = a.shape[0] if a.ndim else 0
        if n != processed:
            raise ServingError(
                Code.INTERNAL, f"Batched output tensor has {n} rows, expected {processed}"
            )
        outputs[name] = a
    return outputs
