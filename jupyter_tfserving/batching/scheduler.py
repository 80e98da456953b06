"""A shared batch scheduler after TF Serving's ``SharedBatchScheduler`` + ``BatchingSession``.

One :class:`BatchScheduler` per server owns ``num_batch_threads`` worker threads shared by all
queues. A queue is made per caller-built key (model, version, signature, non-batch input shapes)
on first use; its worker threads take ready batches from the queues in round-robin order. Each
caller gets a Future that completes with exactly its own rows of every output, in order.

Guarantees: a batch never mixes inputs of different keys; padding rows (``allowed_batch_sizes``)
never reach a caller; every Future completes (result, the model's error, DEADLINE_EXCEEDED,
or UNAVAILABLE at :meth:`BatchScheduler.stop`); a full queue is refused at once (no unbounded
memory). Futures and observers are called outside the scheduler's lock.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Hashable, Mapping

import numpy as np

from jupyter_tfserving.batching.parameters import BatchingParameters
from jupyter_tfserving.core.status import Code, ServingError, invalid_argument

__all__ = ["BatchEvent", "BatchScheduler", "QueueStats", "RunFn"]

log = logging.getLogger(__name__)

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

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


class _Request:
    """One caller's request: one Future, fed by one task, or several when it was split."""

    def __init__(
        self, num_pieces: int, run: RunFn | None, deadline: float | None, pad: bool
    ) -> None:
        self.run = run
        self.future: concurrent.futures.Future[dict[str, np.ndarray]] = (
            concurrent.futures.Future()
        )
        self.deadline = deadline
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
        try:
            self.future.set_exception(error)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled by the caller meanwhile

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
            if len(pieces) == 1:
                result = pieces[0]
            else:
                result = {
                    name: _assemble([p[name] for p in pieces], self.pad, None)
                    for name in pieces[0]
                }
        except ServingError as exc:
            self._set(exception=exc)
            return
        self._set(result=result)

    def _set(
        self, result: dict[str, np.ndarray] | None = None, exception: ServingError | None = None
    ) -> None:
        try:
            if exception is not None:
                self.future.set_exception(exception)
            else:
                self.future.set_result(result)  # type: ignore[arg-type]
        except concurrent.futures.InvalidStateError:
            pass


@dataclass
class _Task:
    """A request, or one piece of a split request."""

    request: _Request
    index: int
    inputs: dict[str, np.ndarray]
    rows: int
    enqueued_at: float


@dataclass
class _Batch:
    tasks: list[_Task] = field(default_factory=list)
    rows: int = 0
    oldest: float = 0.0


class _Queue:
    """One key's queue. All fields are guarded by the scheduler's lock."""

    def __init__(self, key: Hashable, params: BatchingParameters, now: float) -> None:
        self.key = key
        self.params = params
        self.capacity = params.execution_batch_size
        self.timeout = params.batch_timeout_micros / 1e6
        self.batches: deque[_Batch] = deque()
        self.last_used = now
        self.batches_run = 0
        self.tasks_run = 0
        self.rows_run = 0
        self.padding_rows = 0
        self.batches_failed = 0

    def ready(self, now: float) -> bool:
        if not self.batches:
            return False
        first = self.batches[0]
        return (
            len(self.batches) > 1
            or first.rows >= self.capacity
            or self.timeout == 0
            or now >= first.oldest + self.timeout
        )

    def due(self) -> float | None:
        """When the first batch's timeout expires (None: nothing queued)."""
        return self.batches[0].oldest + self.timeout if self.batches else None


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
        self._cond = threading.Condition(threading.Lock())
        self._queues: dict[Hashable, _Queue] = {}
        self._order: list[_Queue] = []
        self._next = 0  # round-robin: where the next search for a ready batch starts
        self._stopped = False
        self._observers: list[Callable[[BatchEvent], None]] = []
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
        with self._cond:
            self._observers.append(fn)

    def schedule(
        self,
        key: Hashable,
        inputs: Mapping[str, np.ndarray],
        run: RunFn,
        params: BatchingParameters,
        deadline: float | None = None,
    ) -> concurrent.futures.Future[dict[str, np.ndarray]]:
        """Enqueue one request; return at once with its Future. Never blocks on the model.

        Called from request worker threads or the IOLoop. ``key`` names the queue; every task
        with the same key must have the same input names and dtypes, and the same non-batch
        shapes unless ``params.pad_variable_length_inputs`` (then the key should leave those
        dimensions out). ``run`` takes the batched inputs and returns outputs whose axis 0 is
        the batch's (padded) size; it is called on a batch thread with the run function of the
        batch's first task (same key, same model). ``params`` apply only when this call creates
        the queue; a live queue keeps the parameters it was made with. ``deadline`` is an
        absolute time of ``clock``; a task still queued past it fails with DEADLINE_EXCEEDED.

        Raises ServingError at once: INVALID_ARGUMENT for inputs without a common positive row
        count, a task larger than ``max_batch_size`` without large batch splitting, or invalid
        parameters; UNAVAILABLE when the queue is full or the scheduler is stopped. The Future
        fails with the model's error (ServingError; other exceptions as INTERNAL), with INTERNAL
        when an output does not have the batch's rows, or with DEADLINE_EXCEEDED.
        """
        arrays, rows = _check_inputs(inputs)
        if deadline is not None and self._clock() >= deadline:
            request = _Request(1, None, deadline, params.pad_variable_length_inputs)
            request.fail(ServingError(Code.DEADLINE_EXCEEDED, DEADLINE_MESSAGE))
            return request.future
        with self._cond:
            if self._stopped:
                raise ServingError(Code.UNAVAILABLE, SHUTTING_DOWN_MESSAGE)
            now = self._clock()
            queue = self._queues.get(key)
            if queue is None:
                params.validate()
                self._prune(now)
                queue = _Queue(key, params, now)
                self._queues[key] = queue
                self._order.append(queue)
            queue.last_used = now
            request = self._enqueue(queue, arrays, rows, run, deadline, now)
            self._cond.notify()
        return request.future

    def queue_stats(self) -> list[QueueStats]:
        """A snapshot of every live queue, in creation order."""
        with self._cond:
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
                )
                for q in self._order
            ]

    def stop(self, timeout: float | None = None) -> None:
        """Stop at server shutdown: refuse new tasks, fail every queued task with UNAVAILABLE
        "Batch scheduler is shutting down", let running batches finish, and join the threads
        (waiting at most ``timeout`` seconds in all). Idempotent."""
        with self._cond:
            self._stopped = True
            queued = [t for q in self._order for b in q.batches for t in b.tasks]
            for q in self._order:
                q.batches.clear()
            self._cond.notify_all()
        error = ServingError(Code.UNAVAILABLE, SHUTTING_DOWN_MESSAGE)
        for task in queued:
            task.request.fail(error)
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            if t is threading.current_thread():
                continue
            t.join(None if end is None else max(0.0, end - time.monotonic()))

    # ------------------------------------------------------------------------------ enqueueing

    def _enqueue(
        self,
        queue: _Queue,
        arrays: dict[str, np.ndarray],
        rows: int,
        run: RunFn,
        deadline: float | None,
        now: float,
    ) -> _Request:
        """Place a task (split if allowed and needed) into ``queue``'s batches. Lock held."""
        params = queue.params
        cap = queue.capacity
        open_batch = queue.batches[-1] if queue.batches else None
        room = cap - open_batch.rows if open_batch is not None else 0
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
        if len(queue.batches) + new_batches > params.max_enqueued_batches:
            raise ServingError(Code.UNAVAILABLE, QUEUE_FULL_MESSAGE)

        request = _Request(len(sizes), run, deadline, params.pad_variable_length_inputs)
        start = 0
        for index, size in enumerate(sizes):
            if len(sizes) == 1:
                piece = arrays
            else:
                piece = {n: a[start : start + size] for n, a in arrays.items()}
            start += size
            task = _Task(request, index, piece, size, now)
            if not queue.batches or queue.batches[-1].rows + size > cap:
                queue.batches.append(_Batch(oldest=now))
            batch = queue.batches[-1]
            batch.tasks.append(task)
            batch.rows += size
        return request

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

    def _pick(self, now: float) -> tuple[_Queue, _Batch] | None:
        """Take the next ready batch, round-robin over queues. Lock held."""
        n = len(self._order)
        for i in range(n):
            index = (self._next + i) % n
            queue = self._order[index]
            if queue.ready(now):
                self._next = index + 1
                return queue, queue.batches.popleft()
        return None

    def _wait_time(self, now: float) -> float | None:
        dues = [d for q in self._order if (d := q.due()) is not None]
        return max(0.0, min(dues) - now) if dues else None

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    now = self._clock()
                    picked = self._pick(now)
                    if picked is not None:
                        if any(q.ready(now) for q in self._order):
                            self._cond.notify()
                        break
                    self._cond.wait(self._wait_time(now))
            try:
                self._process(*picked)
            except BaseException:  # pragma: no cover - _process fails its tasks itself
                log.exception("Batch thread failed")

    def _process(self, queue: _Queue, batch: _Batch) -> None:
        """Run one batch and complete its tasks. Called on a batch thread, lock not held."""
        params = queue.params
        start = self._clock()
        live: list[_Task] = []
        for task in batch.tasks:
            request = task.request
            if request.deadline is not None and start >= request.deadline:
                request.fail(ServingError(Code.DEADLINE_EXCEEDED, DEADLINE_MESSAGE))
            elif request.start():
                live.append(task)
        if not live:
            return
        rows = sum(t.rows for t in live)
        processed = rows
        for size in params.allowed_batch_sizes:
            if size >= rows:
                processed = size
                break
        latencies = [start - t.enqueued_at for t in live]
        error: ServingError | None = None
        outputs: dict[str, np.ndarray] = {}
        run_seconds = 0.0
        try:
            names = set(live[0].inputs)
            if any(set(t.inputs) != names for t in live):
                raise ServingError(Code.INTERNAL, "Tasks of one batch have different inputs")
            batched = {
                name: _assemble(
                    [t.inputs[name] for t in live], params.pad_variable_length_inputs, processed
                )
                for name in live[0].inputs
            }
            run = live[0].request.run
            assert run is not None
            run_start = self._clock()
            try:
                result = run(batched)
            finally:
                run_seconds = self._clock() - run_start
            outputs = _check_outputs(result, processed)
        except ServingError as exc:
            error = exc
        except Exception as exc:
            error = ServingError(Code.INTERNAL, str(exc) or type(exc).__name__)
        except BaseException as exc:
            # Not even KeyboardInterrupt may leave this batch's callers waiting.
            self._finish(queue, live, rows, processed, ServingError(Code.INTERNAL, repr(exc)))
            raise

        self._account(queue, len(live), rows, processed, error)
        self._notify_observers(
            BatchEvent(queue.key, rows, processed, processed - rows, latencies, run_seconds, error)
        )
        self._complete(live, outputs, error)

    def _finish(
        self, queue: _Queue, live: list[_Task], rows: int, processed: int, error: ServingError
    ) -> None:
        self._account(queue, len(live), rows, processed, error)
        self._complete(live, {}, error)

    def _account(
        self, queue: _Queue, tasks: int, rows: int, processed: int, error: ServingError | None
    ) -> None:
        with self._cond:
            queue.batches_run += 1
            queue.tasks_run += tasks
            queue.rows_run += rows
            queue.padding_rows += processed - rows
            if error is not None:
                queue.batches_failed += 1

    def _notify_observers(self, event: BatchEvent) -> None:
        with self._cond:
            observers = list(self._observers)
        for fn in observers:
            try:
                fn(event)
            except Exception:
                log.exception("Batch observer %r failed", fn)

    @staticmethod
    def _complete(
        live: list[_Task], outputs: dict[str, np.ndarray], error: ServingError | None
    ) -> None:
        if error is not None:
            for task in live:
                task.request.fail(error)
            return
        if len(live) == 1 and all(a.shape[0] == live[0].rows for a in outputs.values()):
            # The only task and no padding: the outputs are all its own, hand them over as is.
            live[0].request.piece_done(live[0].index, outputs)
            return
        offset = 0
        for task in live:
            end = offset + task.rows
            # Copies: a caller's result must not keep alive, or share memory with, other rows.
            mine = {name: a[offset:end].copy() for name, a in outputs.items()}
            offset = end
            task.request.piece_done(task.index, mine)


# --------------------------------------------------------------------------------- array helpers


def _check_inputs(inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """The inputs as arrays and their common row count, or INVALID_ARGUMENT."""
    if not inputs:
        raise invalid_argument("Batching requires at least one input tensor")
    arrays = {name: np.asarray(value) for name, value in inputs.items()}
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
    return b"" if dtype == object else 0


def _assemble(parts: list[np.ndarray], pad: bool, padded_rows: int | None) -> np.ndarray:
    """Concatenate ``parts`` along axis 0 into a fresh array.

    With ``pad``, parts whose non-batch dimensions differ are padded at the end of each dimension
    to the largest (zeros; ``b""`` for object arrays); without it they must match. With
    ``padded_rows`` larger than the total, the extra rows are copies of the first row.
    Mismatches raise ServingError(INTERNAL): the caller's key should have kept them apart.
    """
    first = parts[0]
    dtype = first.dtype
    if any(p.dtype != dtype for p in parts):
        raise ServingError(Code.INTERNAL, "Tensors of one batch have different dtypes")
    inner = first.shape[1:]
    if any(p.shape[1:] != inner for p in parts):
        if not pad:
            raise ServingError(
                Code.INTERNAL,
                "Tensors of one batch have different non-batch dimensions: "
                + ", ".join(str(p.shape) for p in parts),
            )
        if any(p.ndim != first.ndim for p in parts):
            raise ServingError(Code.INTERNAL, "Tensors of one batch have different ranks")
        inner = tuple(max(dims) for dims in zip(*(p.shape[1:] for p in parts)))
    rows = sum(p.shape[0] for p in parts)
    total = max(rows, padded_rows or 0)
    if all(p.shape[1:] == inner for p in parts):
        out = np.empty((total, *inner), dtype=dtype)
    else:
        out = np.full((total, *inner), _fill_value(dtype), dtype=dtype)
    offset = 0
    for p in parts:
        n = p.shape[0]
        out[(slice(offset, offset + n), *(slice(0, d) for d in p.shape[1:]))] = p
        offset += n
    if total > rows:
        out[rows:] = out[0]
    return out


def _check_outputs(result: object, processed: int) -> dict[str, np.ndarray]:
    """The run function's outputs as arrays, each with ``processed`` rows, else INTERNAL."""
    if not isinstance(result, Mapping):
        raise ServingError(
            Code.INTERNAL, f"Batched run returned {type(result).__name__}, not a mapping"
        )
    outputs: dict[str, np.ndarray] = {}
    for name, value in result.items():
        a = np.asarray(value)
        n = a.shape[0] if a.ndim else 0
        if n != processed:
            raise ServingError(
                Code.INTERNAL, f"Batched output tensor has {n} rows, expected {processed}"
            )
        outputs[name] = a
    return outputs

