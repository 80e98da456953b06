"""BatchScheduler: per-caller results, batch forming, padding, splitting, errors, fairness, stop.

Concurrency is made deterministic with Events: a run function blocks its first batch until the
test releases it, so that the tasks scheduled meanwhile pile up in the queue. ``result(timeout)``
bounds only how long a broken scheduler could hang the test; no test asserts a duration.
"""

from __future__ import annotations

import concurrent.futures
import random
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from jupyter_tfserving.batching import BatchEvent, BatchingParameters, BatchScheduler
from jupyter_tfserving.core.status import Code, ServingError

WAIT = 10.0  # seconds: only a guard against hangs
MakeScheduler = Callable[..., BatchScheduler]


class Recorder:
    """A run function that records every batch it gets (copies), optionally blocks its first
    batch until ``release`` is set, and computes outputs with ``fn`` (default y = 2x)."""

    def __init__(
        self,
        *,
        block_first: bool = False,
        fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
        label: str = "",
        log: list[str] | None = None,
    ) -> None:
        self.batches: list[dict[str, np.ndarray]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.block_first = block_first
        self.fn = fn or (lambda b: {"y": b["x"] * 2})
        self.label = label
        self.log = log
        self._lock = threading.Lock()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            first = not self.batches
            self.batches.append({k: np.array(v, copy=True) for k, v in batch.items()})
            if self.log is not None:
                self.log.append(self.label)
        if first and self.block_first:
            self.started.set()
            assert self.release.wait(WAIT)
        return self.fn(batch)

    def wait_started(self) -> None:
        assert self.started.wait(WAIT)

    def sizes(self) -> list[int]:
        with self._lock:
            return [len(next(iter(b.values()))) for b in self.batches]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make_scheduler() -> Iterator[Callable[..., BatchScheduler]]:
    made: list[BatchScheduler] = []

    def make(num_batch_threads: int = 1, **kwargs: object) -> BatchScheduler:
        s = BatchScheduler(num_batch_threads, **kwargs)  # type: ignore[arg-type]
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop(timeout=WAIT)


def col(*values: float) -> np.ndarray:
    """A float32 column: one row per value, shape (n, 1)."""
    return np.array(values, dtype=np.float32).reshape(-1, 1)


def params(**kwargs: object) -> BatchingParameters:
    kwargs.setdefault("num_batch_threads", 1)
    return BatchingParameters(**kwargs)  # type: ignore[arg-type]


def code_of(future: concurrent.futures.Future) -> ServingError:
    exc = future.exception(WAIT)
    assert isinstance(exc, ServingError), exc
    return exc


# ------------------------------------------------------------------------------- correctness


def test_many_concurrent_callers_each_get_exactly_their_rows(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(2)
    p = params(max_batch_size=16, allowed_batch_sizes=(4, 8, 16))

    def run(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": b["x"] * 2 + 1, "rev": b["x"][:, ::-1].copy(), "tag": b["s"]}

    def caller(cid: int) -> None:
        rng = random.Random(cid)
        for i in range(40):
            n = rng.randint(1, 5)
            x = np.arange(n * 3, dtype=np.float64).reshape(n, 3) + cid * 100000 + i * 100
            s = np.array([f"{cid}-{i}-{r}".encode() for r in range(n)], dtype=object)
            out = sched.schedule("k", {"x": x, "s": s}, run, p).result(WAIT)
            assert set(out) == {"y", "rev", "tag"}
            np.testing.assert_array_equal(out["y"], x * 2 + 1)
            np.testing.assert_array_equal(out["rev"], x[:, ::-1])
            assert list(out["tag"]) == list(s)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for f in [pool.submit(caller, c) for c in range(8)]:
            f.result(60)
    [stats] = sched.queue_stats()
    assert stats.tasks_run == 8 * 40
    assert stats.enqueued_tasks == 0


def test_batches_form_while_threads_are_busy(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    rec = Recorder(block_first=True)
    p = params(max_batch_size=4)
    first = sched.schedule("k", {"x": col(0)}, rec, p)
    rec.wait_started()
    rest = [sched.schedule("k", {"x": col(v)}, rec, p) for v in range(1, 7)]
    stats = sched.queue_stats()[0]
    assert (stats.enqueued_tasks, stats.enqueued_rows, stats.enqueued_batches) == (6, 6, 2)
    rec.release.set()
    np.testing.assert_array_equal(first.result(WAIT)["y"], col(0))
    for v, f in enumerate(rest, start=1):
        np.testing.assert_array_equal(f.result(WAIT)["y"], col(2 * v))
    assert rec.sizes() == [1, 4, 2]
    np.testing.assert_array_equal(rec.batches[1]["x"], col(1, 2, 3, 4))


def test_timeout_zero_runs_a_lone_task_at_once(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    out = sched.schedule("k", {"x": col(3)}, Recorder(), params(max_batch_size=100)).result(WAIT)
    np.testing.assert_array_equal(out["y"], col(6))


def test_padding_to_allowed_batch_sizes_never_leaks(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    events: list[BatchEvent] = []
    sched.add_observer(events.append)
    rec = Recorder(block_first=True, fn=lambda b: {"y": b["x"] + 0.5, "n": np.arange(len(b["x"]))})
    p = params(max_batch_size=8, allowed_batch_sizes=(2, 4, 8))
    f0 = sched.schedule("k", {"x": col(1)}, rec, p)
    rec.wait_started()
    fs = [
        sched.schedule("k", {"x": col(10, 11)}, rec, p),
        sched.schedule("k", {"x": col(20)}, rec, p),
    ]
    rec.release.set()
    np.testing.assert_array_equal(f0.result(WAIT)["y"], col(1.5))
    a, b = (f.result(WAIT) for f in fs)
    np.testing.assert_array_equal(a["y"], col(10.5, 11.5))
    np.testing.assert_array_equal(a["n"], [0, 1])
    np.testing.assert_array_equal(b["y"], col(20.5))
    np.testing.assert_array_equal(b["n"], [2])
    # 1 row -> 2 and 3 rows -> 4, padded with copies of the first row.
    assert rec.sizes() == [2, 4]
    np.testing.assert_array_equal(rec.batches[0]["x"], col(1, 1))
    np.testing.assert_array_equal(rec.batches[1]["x"], col(10, 11, 20, 10))
    assert [(e.input_batch_size, e.processed_batch_size, e.padding_rows) for e in events] == [
        (1, 2, 1),
        (3, 4, 1),
    ]
    assert [len(e.queuing_latencies) for e in events] == [1, 2]
    assert all(e.error is None and e.key == "k" for e in events)
    assert sched.queue_stats()[0].padding_rows == 2


def test_results_do_not_share_memory(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    rec = Recorder(block_first=True, fn=lambda b: {"y": b["x"]})  # returns the batch buffer
    p = params(max_batch_size=8)
    f0 = sched.schedule("k", {"x": col(0)}, rec, p)
    rec.wait_started()
    fa = sched.schedule("k", {"x": col(1)}, rec, p)
    fb = sched.schedule("k", {"x": col(2)}, rec, p)
    rec.release.set()
    f0.result(WAIT)
    a, b = fa.result(WAIT)["y"], fb.result(WAIT)["y"]
    assert not np.shares_memory(a, b)
    a[:] = 99
    np.testing.assert_array_equal(b, col(2))


def test_pad_variable_length_inputs(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    rec = Recorder(block_first=True, fn=lambda b: {"y": b["x"], "s": b["s"]})
    p = params(max_batch_size=8, pad_variable_length_inputs=True)
    f0 = sched.schedule("k", {"x": np.ones((1, 1)), "s": np.array([[b"z"]], dtype=object)}, rec, p)
    rec.wait_started()
    fa = sched.schedule(
        "k",
        {"x": np.array([[1.0, 2.0]]), "s": np.array([[b"a"]], dtype=object)},
        rec,
        p,
    )
    fb = sched.schedule(
        "k",
        {"x": np.array([[3.0, 4.0, 5.0]]), "s": np.array([[b"b", b"c"]], dtype=object)},
        rec,
        p,
    )
    rec.release.set()
    f0.result(WAIT)
    np.testing.assert_array_equal(rec.batches[1]["x"], [[1, 2, 0], [3, 4, 5]])
    assert rec.batches[1]["s"].tolist() == [[b"a", b""], [b"b", b"c"]]
    # Outputs are not un-padded on non-batch dimensions (as TF Serving).
    np.testing.assert_array_equal(fa.result(WAIT)["y"], [[1, 2, 0]])
    assert fa.result(WAIT)["s"].tolist() == [[b"a", b""]]
    np.testing.assert_array_equal(fb.result(WAIT)["y"], [[3, 4, 5]])


def test_mismatched_shapes_without_padding_fail_internal(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    rec = Recorder(block_first=True)
    p = params(max_batch_size=8)
    f0 = sched.schedule("k", {"x": col(0)}, rec, p)
    rec.wait_started()
    fa = sched.schedule("k", {"x": np.ones((1, 2))}, rec, p)
    fb = sched.schedule("k", {"x": np.ones((1, 3))}, rec, p)
    rec.release.set()
    f0.result(WAIT)
    assert code_of(fa).code == Code.INTERNAL
    assert code_of(fb).code == Code.INTERNAL
    assert rec.sizes() == [1]  # never ran


@pytest.mark.parametrize(
    "other",
    [{"z": np.ones((1, 1))}, {"x": np.ones((1, 1), dtype=np.int32)}],
    ids=["names", "dtype"],
)
def test_tasks_that_cannot_share_a_batch_fail_internal(
    make_scheduler: MakeScheduler, other: dict[str, np.ndarray]
) -> None:
    sched = make_scheduler(1)
    rec = Recorder(block_first=True)
    p = params(max_batch_size=8)
    f0 = sched.schedule("k", {"x": col(0)}, rec, p)
    rec.wait_started()
    fa = sched.schedule("k", {"x": np.ones((1, 1), dtype=np.float32)}, rec, p)
    fb = sched.schedule("k", other, rec, p)
    rec.release.set()
    f0.result(WAIT)
    assert code_of(fa).code == Code.INTERNAL
    assert code_of(fb).code == Code.INTERNAL
    assert rec.sizes() == [1]


# ---------------------------------------------------------------------------------- splitting


def test_large_batch_splitting_reassembles_in_order(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(2)
    rec = Recorder()
    p = params(max_batch_size=4, enable_large_batch_splitting=True)
    x = col(*range(10))
    out = sched.schedule("k", {"x": x}, rec, p).result(WAIT)
    np.testing.assert_array_equal(out["y"], x * 2)
    assert sorted(rec.sizes()) == [2, 4, 4]


def test_splitting_fills_the_open_batch_first(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    rec = Recorder(block_first=True)
    p = params(
        max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=4
    )
    f0 = sched.schedule("k", {"x": col(0)}, rec, p)
    rec.wait_started()
    fa = sched.schedule("k", {"x": col(100)}, rec, p)
    fb = sched.schedule("k", {"x": col(*range(1, 8))}, rec, p)  # 7 rows: 3 + 4
    rec.release.set()
    f0.result(WAIT)
    np.testing.assert_array_equal(fa.result(WAIT)["y"], col(200))
    np.testing.assert_array_equal(fb.result(WAIT)["y"], col(*range(2, 16, 2)))
    assert rec.sizes() == [1, 4, 4]
    np.testing.assert_array_equal(rec.batches[1]["x"], col(100, 1, 2, 3))


def test_split_request_fails_once_if_a_piece_fails(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    calls: list[int] = []

    def run(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(b["x"]))
        if len(calls) == 2:
            raise ServingError(Code.INVALID_ARGUMENT, "second piece is bad")
        return {"y": b["x"]}

    p = params(max_batch_size=2, enable_large_batch_splitting=True)
    f = sched.schedule("k", {"x": col(1, 2, 3, 4, 5)}, run, p)
    err = code_of(f)
    assert (err.code, err.message) == (Code.INVALID_ARGUMENT, "second piece is bad")


def test_without_splitting_a_large_task_is_invalid(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    with pytest.raises(ServingError) as info:
        sched.schedule("k", {"x": col(*range(5))}, Recorder(), params(max_batch_size=4))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.message == "Task size 5 is larger than maximum input batch size 4"


def test_split_task_larger_than_the_whole_queue_is_invalid(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    p = params(max_batch_size=2, max_enqueued_batches=3, enable_large_batch_splitting=True)
    with pytest.raises(ServingError) as info:
        sched.schedule("k", {"x": col(*range(7))}, Recorder(), p)
    assert info.value.code == Code.INVALID_ARGUMENT


# ------------------------------------------------------------------------------------- errors


def test_queue_full_is_unavailable_at_once(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    rec = Recorder(block_first=True)
    p = params(max_batch_size=1, max_enqueued_batches=2)
    f0 = sched.schedule("k", {"x": col(0)}, rec, p)
    rec.wait_started()
    queued = [sched.schedule("k", {"x": col(v)}, rec, p) for v in (1, 2)]
    with pytest.raises(ServingError) as info:
        sched.schedule("k", {"x": col(3)}, rec, p)
    assert info.value.code == Code.UNAVAILABLE
    assert info.value.message == (
        "The batch scheduling queue to which this task was submitted is full"
    )
    rec.release.set()
    for v, f in enumerate([f0, *queued]):
        np.testing.assert_array_equal(f.result(WAIT)["y"], col(2 * v))


def test_deadline_exceeded_in_the_queue(make_scheduler: MakeScheduler) -> None:
    clock = FakeClock()
    sched = make_scheduler(1, clock=clock)
    rec = Recorder(block_first=True)
    p = params(max_batch_size=8)
    f0 = sched.schedule("k", {"x": col(0)}, rec, p, deadline=clock.now + 1)
    rec.wait_started()
    late = sched.schedule("k", {"x": col(1)}, rec, p, deadline=clock.now + 1)
    ok = sched.schedule("k", {"x": col(2)}, rec, p, deadline=clock.now + 100)
    clock.now += 5
    rec.release.set()
    np.testing.assert_array_equal(f0.result(WAIT)["y"], col(0))  # it was running in time
    err = code_of(late)
    assert (err.code, err.message) == (
        Code.DEADLINE_EXCEEDED,
        "Deadline exceeded while waiting in the batch queue",
    )
    np.testing.assert_array_equal(ok.result(WAIT)["y"], col(4))
    np.testing.assert_array_equal(rec.batches[1]["x"], col(2))
    # Already past: the Future fails at once.
    assert code_of(sched.schedule("k", {"x": col(3)}, rec, p, deadline=clock.now)).code == (
        Code.DEADLINE_EXCEEDED
    )


def test_cancelled_tasks_are_skipped(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    rec = Recorder(block_first=True)
    p = params(max_batch_size=8)
    f0 = sched.schedule("k", {"x": col(0)}, rec, p)
    rec.wait_started()
    gone = sched.schedule("k", {"x": col(1)}, rec, p)
    kept = sched.schedule("k", {"x": col(2)}, rec, p)
    assert gone.cancel()
    rec.release.set()
    f0.result(WAIT)
    np.testing.assert_array_equal(kept.result(WAIT)["y"], col(4))
    np.testing.assert_array_equal(rec.batches[1]["x"], col(2))


@pytest.mark.parametrize(
    "raised, expected",
    [
        (
            ServingError(Code.INVALID_ARGUMENT, "model says no"),
            (Code.INVALID_ARGUMENT, "model says no"),
        ),
        (ValueError("boom"), (Code.INTERNAL, "boom")),
    ],
)
def test_failing_batch_fails_each_task_with_the_models_error(
    make_scheduler: MakeScheduler, raised: Exception, expected: tuple[Code, str]
) -> None:
    sched = make_scheduler(1)
    events: list[BatchEvent] = []
    sched.add_observer(events.append)

    def fail(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise raised

    rec = Recorder(block_first=True, fn=fail)
    p = params(max_batch_size=8)
    f0 = sched.schedule("k", {"x": col(0)}, rec, p)
    rec.wait_started()
    fs = [sched.schedule("k", {"x": col(v)}, rec, p) for v in (1, 2, 3)]
    rec.release.set()
    for f in [f0, *fs]:
        err = code_of(f)
        assert (err.code, err.message) == expected
    assert rec.sizes() == [1, 3]
    assert [e.error is not None for e in events] == [True, True]
    assert sched.queue_stats()[0].batches_failed == 2


def test_wrong_output_rows_fail_every_task_internal(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    rec = Recorder(block_first=True, fn=lambda b: {"y": b["x"][:1]})
    p = params(max_batch_size=8)
    f0 = sched.schedule("k", {"x": col(0)}, rec, p)
    rec.wait_started()
    fs = [sched.schedule("k", {"x": col(v)}, rec, p) for v in (1, 2, 3)]
    rec.release.set()
    np.testing.assert_array_equal(f0.result(WAIT)["y"], col(0))  # 1 row was right for 1 task
    for f in fs:
        err = code_of(f)
        assert (err.code, err.message) == (
            Code.INTERNAL,
            "Batched output tensor has 1 rows, expected 3",
        )


def test_invalid_inputs_raise_at_once(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    p = params()
    cases = [
        {"x": col(1, 2), "z": col(1)},  # different row counts
        {"x": np.zeros((0, 3))},  # no rows
        {"x": np.float32(1.0)},  # no batch dimension
        {},  # nothing
    ]
    for inputs in cases:
        with pytest.raises(ServingError) as info:
            sched.schedule("k", inputs, Recorder(), p)
        assert info.value.code == Code.INVALID_ARGUMENT
    with pytest.raises(ServingError) as info:
        sched.schedule("k", {"x": col(1)}, Recorder(), params(max_batch_size=0))
    assert info.value.code == Code.INVALID_ARGUMENT


def test_queue_keeps_the_parameters_it_was_made_with(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    sched.schedule("k", {"x": col(1)}, Recorder(), params(max_batch_size=2)).result(WAIT)
    with pytest.raises(ServingError) as info:
        sched.schedule("k", {"x": col(1, 2, 3)}, Recorder(), params(max_batch_size=10))
    assert info.value.message == "Task size 3 is larger than maximum input batch size 2"
    # Another key gets its own queue with its own parameters.
    out = sched.schedule("k2", {"x": col(1, 2, 3)}, Recorder(), params(max_batch_size=10))
    np.testing.assert_array_equal(out.result(WAIT)["y"], col(2, 4, 6))


# ----------------------------------------------------------------------- scheduling policies


def test_round_robin_across_keys(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    order: list[str] = []
    ra = Recorder(block_first=True, label="a", log=order)
    rb = Recorder(label="b", log=order)
    p = params(max_batch_size=1)
    fs = [sched.schedule("a", {"x": col(0)}, ra, p)]
    ra.wait_started()
    fs += [sched.schedule("a", {"x": col(v)}, ra, p) for v in (1, 2, 3)]
    fs += [sched.schedule("b", {"x": col(v)}, rb, p) for v in (1, 2, 3)]
    ra.release.set()
    for f in fs:
        f.result(WAIT)
    assert order == ["a", "b", "a", "b", "a", "b", "a"]


def test_batch_timeout_waits_for_more_tasks(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    rec = Recorder()
    # A timeout far longer than the test: the batch runs only because it fills up.
    p = params(max_batch_size=3, batch_timeout_micros=600_000_000)
    fs = [sched.schedule("k", {"x": col(v)}, rec, p) for v in (1, 2, 3)]
    for v, f in enumerate(fs, start=1):
        np.testing.assert_array_equal(f.result(WAIT)["y"], col(2 * v))
    assert rec.sizes() == [3]


def test_batch_timeout_expires_for_a_batch_that_is_not_full(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    rec = Recorder()
    p = params(max_batch_size=100, batch_timeout_micros=20_000)
    out = sched.schedule("k", {"x": col(5)}, rec, p).result(WAIT)
    np.testing.assert_array_equal(out["y"], col(10))
    assert rec.sizes() == [1]


def test_batch_timeout_with_injected_clock(make_scheduler: MakeScheduler) -> None:
    clock = FakeClock()
    sched = make_scheduler(1, clock=clock)
    rec = Recorder()
    p = params(max_batch_size=100, batch_timeout_micros=1_000)  # 1 ms of the fake clock
    f = sched.schedule("k", {"x": col(1)}, rec, p)
    assert sched.queue_stats()[0].enqueued_tasks == 1  # the fake clock has not moved
    clock.now += 1.0
    # The worker re-reads the clock when its timed wait ends (about 1 ms of real time).
    np.testing.assert_array_equal(f.result(WAIT)["y"], col(2))


# -------------------------------------------------------------------------------------- stop


def test_stop_fails_queued_tasks_and_joins(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(2, thread_name_prefix="stop_test_batch")
    rec = Recorder(block_first=True)
    p = params(max_batch_size=100, batch_timeout_micros=600_000_000)
    full = params(max_batch_size=1)
    running = sched.schedule("run", {"x": col(7)}, rec, full)
    rec.wait_started()
    queued = [sched.schedule("k", {"x": col(v)}, rec, p) for v in (1, 2)]
    stopper = threading.Thread(target=sched.stop, kwargs={"timeout": WAIT})
    stopper.start()
    for f in queued:
        err = code_of(f)
        assert (err.code, err.message) == (Code.UNAVAILABLE, "Batch scheduler is shutting down")
    rec.release.set()  # the running batch finishes normally
    np.testing.assert_array_equal(running.result(WAIT)["y"], col(14))
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("stop_test_batch")]
    with pytest.raises(ServingError) as info:
        sched.schedule("k", {"x": col(1)}, rec, p)
    assert info.value.code == Code.UNAVAILABLE
    sched.stop()  # idempotent


def test_observer_errors_do_not_break_batches(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)

    def bad(event: BatchEvent) -> None:
        raise RuntimeError("observer bug")

    seen: list[BatchEvent] = []
    sched.add_observer(bad)
    sched.add_observer(seen.append)
    out = sched.schedule("k", {"x": col(1)}, Recorder(), params()).result(WAIT)
    np.testing.assert_array_equal(out["y"], col(2))
    assert [(e.input_batch_size, e.processed_batch_size, e.padding_rows) for e in seen] == [
        (1, 1, 0)
    ]
    assert seen[0].run_seconds >= 0


def test_idle_queues_are_dropped(make_scheduler: MakeScheduler) -> None:
    clock = FakeClock()
    sched = make_scheduler(1, clock=clock, idle_queue_seconds=60)
    sched.schedule("old", {"x": col(1)}, Recorder(), params()).result(WAIT)
    clock.now += 61
    sched.schedule("new", {"x": col(1)}, Recorder(), params()).result(WAIT)
    assert [s.key for s in sched.queue_stats()] == ["new"]


# ------------------------------------------------------------------------------- fast paths


def test_single_task_batch_runs_on_exactly_the_callers_rows(make_scheduler: MakeScheduler) -> None:
    # A batch of one task without padding skips concatenate and split: the model gets the
    # caller's rows, and the caller gets the model's outputs for exactly those rows.
    sched = make_scheduler(1)
    events: list[BatchEvent] = []
    sched.add_observer(events.append)
    seen: list[dict[str, np.ndarray]] = []
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    s = np.array([b"a", b"b", b"c"], dtype=object)

    def run(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(b)
        return {"y": b["x"] * 2, "s": b["s"]}

    out = sched.schedule("k", {"x": x, "s": s}, run, params(max_batch_size=8)).result(WAIT)
    [batch] = seen
    assert set(batch) == {"x", "s"}
    np.testing.assert_array_equal(batch["x"], x)
    assert batch["x"].dtype == np.float32 and batch["s"].tolist() == [b"a", b"b", b"c"]
    assert set(out) == {"y", "s"}
    np.testing.assert_array_equal(out["y"], x * 2)
    assert out["y"].shape == (3, 2) and out["s"].tolist() == [b"a", b"b", b"c"]
    assert [(e.input_batch_size, e.processed_batch_size, e.padding_rows) for e in events] == [
        (3, 3, 0)
    ]
    [stats] = sched.queue_stats()
    assert (stats.batches_run, stats.tasks_run, stats.rows_run) == (1, 1, 3)


def test_single_task_batch_is_still_padded_and_unpadded(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    rec = Recorder(fn=lambda b: {"y": b["x"] * 2})
    p = params(max_batch_size=8, allowed_batch_sizes=(4, 8))
    out = sched.schedule("k", {"x": col(1, 2, 3)}, rec, p).result(WAIT)
    assert rec.sizes() == [4]
    np.testing.assert_array_equal(rec.batches[0]["x"], col(1, 2, 3, 1))
    np.testing.assert_array_equal(out["y"], col(2, 4, 6))
    assert out["y"].base is None  # a copy of its rows, not a view of the padded output


def test_single_task_batch_passes_the_models_errors_on(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(1)
    f = sched.schedule("k", {"x": col(1)}, lambda b: {"y": col(1, 2)}, params())
    err = code_of(f)
    assert (err.code, err.message) == (
        Code.INTERNAL,
        "Batched output tensor has 2 rows, expected 1",
    )
    f = sched.schedule("k", {"x": col(1)}, lambda b: [b["x"]], params())  # type: ignore
    assert code_of(f).code == Code.INTERNAL


def test_assemble_concatenates_into_a_new_array() -> None:
    from jupyter_tfserving.batching.scheduler import _assemble

    a, b = col(1, 2), col(3)
    out = _assemble([a, b], False, None)
    np.testing.assert_array_equal(out, col(1, 2, 3))
    assert not np.shares_memory(out, a) and not np.shares_memory(out, b)
    one = _assemble([a], False, None)
    np.testing.assert_array_equal(one, a)
    assert not np.shares_memory(one, a)
    padded = _assemble([a, b], False, 5)
    np.testing.assert_array_equal(padded, col(1, 2, 3, 1, 1))
    with pytest.raises(ServingError) as info:
        _assemble([a, b.astype(np.float64)], False, None)
    assert info.value.code == Code.INTERNAL
    with pytest.raises(ServingError):
        _assemble([a, np.ones((1, 2), np.float32)], False, None)


# ------------------------------------------------------------------------- waking the threads


def test_a_timed_batch_is_timed_while_the_other_thread_is_busy(
    make_scheduler: MakeScheduler,
) -> None:
    # Two threads: one blocks on queue "b"; the other must still run queue "t"'s batch when its
    # timeout expires, whichever thread was woken first.
    sched = make_scheduler(2)
    rec_b = Recorder(block_first=True)
    rec_t = Recorder()
    p_timed = params(max_batch_size=100, batch_timeout_micros=20_000)
    timed = sched.schedule("t", {"x": col(1)}, rec_t, p_timed)
    blocked = sched.schedule("b", {"x": col(2)}, rec_b, params(max_batch_size=100))
    rec_b.wait_started()
    np.testing.assert_array_equal(timed.result(WAIT)["y"], col(2))
    assert not blocked.done()
    rec_b.release.set()
    np.testing.assert_array_equal(blocked.result(WAIT)["y"], col(4))


def test_idle_threads_all_take_work(make_scheduler: MakeScheduler) -> None:
    # Three keys, three threads, each run blocks until all three run at once: this needs every
    # thread woken (a lost wake-up would hang until WAIT).
    sched = make_scheduler(3)
    barrier = threading.Barrier(3, timeout=WAIT)

    def run(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        barrier.wait()
        return {"y": b["x"]}

    fs = [sched.schedule(k, {"x": col(1)}, run, params()) for k in ("a", "b", "c")]
    for f in fs:
        np.testing.assert_array_equal(f.result(WAIT)["y"], col(1))


def test_many_callers_many_keys_mixed_timeouts(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(2)
    keys = {
        "now": params(max_batch_size=4),
        "soon": params(max_batch_size=4, batch_timeout_micros=1_000),
        "split": params(
            max_batch_size=3, enable_large_batch_splitting=True, max_enqueued_batches=100
        ),
        "padded": params(max_batch_size=4, allowed_batch_sizes=(2, 4)),
    }

    def run(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": b["x"] * 3}

    def caller(cid: int) -> None:
        rng = random.Random(cid)
        for i in range(60):
            key = rng.choice(sorted(keys))
            n = rng.randint(1, 6 if key == "split" else 2)
            x = col(*(cid * 1000 + i * 10 + r for r in range(n)))
            try:
                out = sched.schedule(key, {"x": x}, run, keys[key]).result(WAIT)
            except ServingError as exc:
                assert exc.code == Code.UNAVAILABLE  # a full queue: refused at once
                continue
            np.testing.assert_array_equal(out["y"], x * 3)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        for f in [pool.submit(caller, c) for c in range(6)]:
            f.result(60)
    assert all(s.enqueued_tasks == 0 for s in sched.queue_stats())


def test_stop_wakes_parked_threads_with_pending_timers(make_scheduler: MakeScheduler) -> None:
    sched = make_scheduler(3, thread_name_prefix="stop_timer_batch")
    p = params(max_batch_size=100, batch_timeout_micros=600_000_000)
    queued = [sched.schedule(k, {"x": col(1)}, Recorder(), p) for k in ("a", "b")]
    sched.stop(timeout=WAIT)
    for f in queued:
        assert code_of(f).code == Code.UNAVAILABLE
    assert not [t for t in threading.enumerate() if t.name.startswith("stop_timer_batch")]


# ------------------------------------------------------------------------------- bulk jobs


def test_online_batches_run_before_bulk_batches(make_scheduler: MakeScheduler) -> None:
    """A bulk job's batches (``bulk=True``) wait while any online batch is ready: with the one
    thread busy, online and bulk tasks queue up, and every online batch runs first."""
    sched = make_scheduler(1)
    order: list[str] = []
    busy = Recorder(block_first=True, label="busy", log=order)
    job = Recorder(label="job", log=order)
    online = Recorder(label="online", log=order)
    p = params(max_batch_size=1)
    fs = [sched.schedule("busy", {"x": col(0)}, busy, p)]
    busy.wait_started()
    fs += [sched.schedule("job", {"x": col(v)}, job, p, bulk=True) for v in (1, 2, 3)]
    fs += [sched.schedule("online", {"x": col(v)}, online, p) for v in (1, 2, 3)]
    busy.release.set()
    results = [f.result(WAIT)["y"].tolist() for f in fs]
    assert results == [[[0.0]], [[2.0]], [[4.0]], [[6.0]], [[2.0]], [[4.0]], [[6.0]]]
    assert order == ["busy", "online", "online", "online", "job", "job", "job"]


def test_bulk_batches_leave_a_thread_to_online_work(make_scheduler: MakeScheduler) -> None:
    """With two threads at most one bulk batch runs at a time: a second waits though a thread
    is idle, and that thread serves an online request at once."""
    sched = make_scheduler(2)
    job = Recorder(block_first=True, label="job")
    online = Recorder(label="online")
    p = params(max_batch_size=1, num_batch_threads=2)
    first = sched.schedule("job", {"x": col(1)}, job, p, bulk=True)
    job.wait_started()
    second = sched.schedule("job", {"x": col(2)}, job, p, bulk=True)
    answer = sched.schedule("online", {"x": col(5)}, online, p)
    assert answer.result(WAIT)["y"].tolist() == [[10.0]]
    assert not second.done() and job.sizes() == [1]  # waiting for the bulk slot
    job.release.set()
    assert first.result(WAIT)["y"].tolist() == [[2.0]]
    assert second.result(WAIT)["y"].tolist() == [[4.0]]


def test_no_bulk_batch_starts_while_an_online_batch_runs(make_scheduler: MakeScheduler) -> None:
    """A model run takes every core it can: a bulk batch waits while an online batch runs,
    though a thread is idle and the bulk slot free, and starts when the online batch ends."""
    sched = make_scheduler(3)
    online = Recorder(block_first=True, label="online")
    job = Recorder(label="job")
    p = params(max_batch_size=1, num_batch_threads=3)
    answer = sched.schedule("online", {"x": col(5)}, online, p)
    online.wait_started()
    bulk = sched.schedule("job", {"x": col(1)}, job, p, bulk=True)
    threading.Event().wait(0.1)
    assert not bulk.done() and job.sizes() == []
    online.release.set()
    assert answer.result(WAIT)["y"].tolist() == [[10.0]]
    assert bulk.result(WAIT)["y"].tolist() == [[2.0]]


@pytest.mark.parametrize("quiet", [None, 0.0, 0.5])
def test_a_bulk_batch_waits_for_online_work_to_be_quiet(make_scheduler: MakeScheduler,
                                                        quiet: float | None) -> None:
    """After an online batch ends, a ready bulk batch waits ``BULK_QUIET_SECONDS`` (a closed-loop
    client's next request comes in that gap) before it starts; ``quiet_seconds`` replaces that
    for the queue it creates (shadow traffic uses 0): the batch still waits for the running
    online batch, then for that long."""
    import time

    from jupyter_tfserving.batching.scheduler import BULK_QUIET_SECONDS

    sched = make_scheduler(2)
    ended: list[float] = []
    started: list[float] = []

    def online(inputs):
        threading.Event().wait(0.05)
        ended.append(time.monotonic())
        return {"y": inputs["x"]}

    def copy(inputs):
        started.append(time.monotonic())
        return {"y": inputs["x"]}

    p = params(max_batch_size=1, num_batch_threads=2)
    answer = sched.schedule("online", {"x": col(1)}, online, p)
    low = (sched.schedule("job", {"x": col(2)}, copy, p, bulk=True) if quiet is None else
           sched.schedule("shadow", {"x": col(2)}, copy, p, bulk=True, quiet_seconds=quiet))
    answer.result(WAIT)
    low.result(WAIT)
    assert started[0] >= ended[0]
    if quiet == 0.0:
        assert started[0] - ended[0] < 0.5
    else:
        assert started[0] - ended[0] >= (quiet or BULK_QUIET_SECONDS) * 0.9
