"""Call a function back to back from T threads for S seconds; used by the in-process
benchmarks (``inprocess``, ``model_throughput``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def call_for(call: Callable[[], object], threads: int, seconds: float
             ) -> tuple[int, float, float]:
    """Run ``call`` in a loop on ``threads`` daemon threads for ``seconds``; returns (calls
    completed, wall seconds, process CPU seconds over the same span). The first exception a
    thread raises is re-raised once all have stopped."""
    stop = threading.Event()
    counts = [0] * threads
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        n = 0
        try:
            while not stop.is_set():
                call()
                n += 1
        except BaseException as exc:  # report, do not hang
            errors.append(exc)
        counts[i] = n

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if errors:
        raise errors[0]
    return sum(counts), wall, cpu
