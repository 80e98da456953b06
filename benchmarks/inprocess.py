"""Scenario 1, the serving path's own cost: no HTTP, no TensorFlow, a model that does nothing.

    python -m benchmarks.inprocess --threads 1,8 --seconds 3

Builds a real :class:`~jupyter_tfserving.service.ModelService` over a temporary model_root
whose only model, ``noop``, is loaded by a fake loader factory into :class:`NoopServable` (a
"python" servable implementing core/servable.py's protocol whose ``run`` returns its inputs;
signature ``x`` float [-1, 1] -> ``x``, so it is batchable). It waits for ``noop/1`` to be
AVAILABLE, then drives, from T threads each, back to back:

- ``dataplane_loop``: the data plane as the REST and gRPC front ends call it: T requests in
  flight as coroutines on one asyncio event loop (admit, begin and decode on the loop, the run
  awaited without a thread, encode on the loop), batching on;
- ``dataplane_batching``: a request through the data plane, as a front end makes it, minus
  the transport: ``dataplane.admit()``, ``begin_predict`` (route, signature, decode: the row
  becomes a float32 array), ``submit_predict`` (batch scheduler) ``.result()``, encode (the
  output back to a list) and release; batching on (the server's default parameters);
- ``dataplane_unbatched``: the same with batching off (``submit_predict`` runs on a request
  thread);
- ``core_batching``: ``manager.acquire()`` + ``scheduler.schedule(...).result()`` + ``release()``:
  the manager and scheduler alone, no JSON;
- ``manager_only``: ``manager.acquire()`` + ``release()``.

For each it reports calls/s (wall) and calls per CPU-second of the whole process
(``time.process_time`` over the window: every thread, the scheduler's included), which is the
"per core" figure, comparable to TF Serving's launch claim of ~100,000 requests/s per core for
its C++ core (Olston et al., 2017; measured there without RPC and without TensorFlow).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from benchmarks.timing import call_for
from jupyter_tfserving.core.servable import ExampleBatch, LoadSpec, SignatureInfo, TensorInfo
from jupyter_tfserving.core.state import ServableId, ServableState
from jupyter_tfserving.dataplane import ModelRef
from jupyter_tfserving.service import ModelService, ServiceOptions

MODEL = "noop"
ROW = [[1.0]]
TF_SERVING_CLAIM_PER_CORE = 100_000.0

_SIGNATURE = SignatureInfo(
    inputs={"x": TensorInfo("DT_FLOAT", (-1, 1), "x:0")},
    outputs={"x": TensorInfo("DT_FLOAT", (-1, 1), "x:0")},
)


class NoopServable:
    """A "python" servable: ``run`` returns its inputs."""

    def signatures(self) -> Mapping[str, SignatureInfo]:
        return {"serving_default": _SIGNATURE}

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(inputs)

    def run_examples(self, signature_name: str, batch: ExampleBatch) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        return {"signature_def": {"signature_def": {}}}

    def close(self) -> None:
        pass


class NoopLoader:
    def load(self) -> NoopServable:
        return NoopServable()


def noop_loader_factory(servable_id: ServableId, spec: LoadSpec) -> NoopLoader:
    return NoopLoader()


def make_service(model_root: str, batching: bool, request_threads: int) -> ModelService:
    os.makedirs(os.path.join(model_root, MODEL, "1"), exist_ok=True)  # any dir is a version
    options = ServiceOptions(
        model_root=model_root,
        file_system_poll_wait_seconds=0,  # scan once
        num_request_threads=request_threads,
    )
    if not batching:
        options.batching = None
    service = ModelService(options, loader_factory=noop_loader_factory)
    service.start()
    service.manager.wait_for(MODEL, 1, [ServableState.AVAILABLE], timeout=30)
    return service


def dataplane_path(service: ModelService) -> Callable[[], None]:
    dataplane, ref = service.dataplane, ModelRef(MODEL)

    def decode(signature: SignatureInfo) -> dict[str, np.ndarray]:
        return {"x": np.asarray(ROW, np.float32)}

    def call() -> None:
        with dataplane.admit():
            c = dataplane.begin_predict(ref, None, decode)
            outputs = dataplane.submit_predict(c).result()
            outputs["x"].tolist()

    return call


def drive_loop(service: ModelService, concurrency: int, seconds: float) -> dict[str, Any]:
    """``dataplane_loop``: the data plane as the REST and gRPC front ends call it: one asyncio
    event loop, ``concurrency`` requests in flight as coroutines, each admitted, begun and
    decoded on the loop, its run awaited (``asyncio.wrap_future``) without holding a thread,
    its answer encoded on the loop."""
    dataplane, ref = service.dataplane, ModelRef(MODEL)

    def decode(signature: SignatureInfo) -> dict[str, np.ndarray]:
        return {"x": np.asarray(ROW, np.float32)}

    async def one() -> None:
        with dataplane.admit():
            c = dataplane.begin_predict(ref, None, decode)
            outputs = await asyncio.wrap_future(dataplane.submit_predict(c))
            outputs["x"].tolist()

    async def run() -> tuple[int, float, float]:
        for _ in range(200):  # warm
            await one()
        stop = False
        counts = [0] * concurrency

        async def client(i: int) -> None:
            while not stop:
                await one()
                counts[i] += 1

        cpu0, t0 = time.process_time(), time.perf_counter()
        tasks = [asyncio.create_task(client(i)) for i in range(concurrency)]
        await asyncio.sleep(seconds)
        stop = True
        await asyncio.gather(*tasks)
        return sum(counts), time.perf_counter() - t0, time.process_time() - cpu0

    n, wall, cpu = asyncio.run(run())
    return result(concurrency, n, wall, cpu)


def core_path(service: ModelService) -> Callable[[], None]:
    manager, scheduler = service.manager, service.scheduler
    params = service.dataplane.batching_parameters(MODEL)
    inputs = {"x": np.ones((1, 1), np.float32)}
    key = (MODEL, 1, "serving_default", (("x", "<f4", (1,)),))

    def call() -> None:
        handle = manager.acquire(MODEL)
        try:
            servable = handle.servable
            scheduler.schedule(key, inputs, lambda x: servable.run("serving_default", x),
                               params, None).result()
        finally:
            handle.release()

    return call


def manager_path(service: ModelService) -> Callable[[], None]:
    manager = service.manager

    def call() -> None:
        manager.acquire(MODEL).release()

    return call


def drive(call: Callable[[], None], threads: int, seconds: float) -> dict[str, Any]:
    for _ in range(200):  # warm
        call()
    n, wall, cpu = call_for(call, threads, seconds)
    return result(threads, n, wall, cpu)


def result(threads: int, n: int, wall: float, cpu: float) -> dict[str, Any]:
    return {
        "threads": threads,
        "calls": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "cores_used": cpu / wall,
        "calls_per_s": n / wall,
        "calls_per_cpu_s": n / cpu if cpu > 0 else None,
        "us_per_call_cpu": 1e6 * cpu / n if n else None,
        "vs_tf_serving_claim": (n / cpu) / TF_SERVING_CLAIM_PER_CORE if cpu > 0 else None,
    }


VARIANTS: dict[str, tuple[bool, Callable[[ModelService], Callable[[], None]] | None]] = {
    "dataplane_loop": (True, None),  # drive_loop: coroutines on one event loop
    "dataplane_batching": (True, dataplane_path),
    "dataplane_unbatched": (False, dataplane_path),
    "core_batching": (True, core_path),
    "manager_only": (True, manager_path),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", default="1,8")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",") if t]
    out: dict[str, Any] = {"cpu_count": os.cpu_count(), "tf_serving_claim_per_core":
                           TF_SERVING_CLAIM_PER_CORE, "variants": {}}
    for name in [v for v in args.variants.split(",") if v]:
        batching, make_call = VARIANTS[name]
        with tempfile.TemporaryDirectory(prefix="bench-inprocess-") as root:
            service = make_service(root, batching, request_threads=max(thread_counts))
            try:
                if make_call is None:
                    out["variants"][name] = [drive_loop(service, t, args.seconds)
                                             for t in thread_counts]
                else:
                    call = make_call(service)
                    out["variants"][name] = [drive(call, t, args.seconds)
                                             for t in thread_counts]
            finally:
                service.stop(timeout=10)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
