"""The model's own throughput, in this process, without HTTP, JSON or the scheduler::

    python -m benchmarks.model_throughput --path DIR/1 --batch-sizes 1,24 --threads 1,2 --seconds 3

Loads the SavedModel with the project's own platform loader
(``jupyter_tfserving.platforms.tensorflow.SavedModelLoader(path).load()``, the exact session the
server runs) and calls ``servable.run("serving_default", {"x": rows})`` back to back from T
threads for each batch size B. Prints JSON: per (B, T), rows/s, calls/s, mean ms per call, the
process CPU used per second and per row (``time.process_time``: CPU, not wall). Run it while no
server is running, so the two do not compete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from benchmarks.timing import call_for


def measure(servable, width: int, batch: int, threads: int, seconds: float) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((batch, width), dtype=np.float32)
    servable.run("serving_default", {"x": rows})  # warm
    calls, wall, cpu = call_for(lambda: servable.run("serving_default", {"x": rows}),
                                threads, seconds)
    return {
        "batch_size": batch,
        "threads": threads,
        "calls": calls,
        "rows_per_s": calls * batch / wall,
        "calls_per_s": calls / wall,
        "ms_per_call": 1e3 * wall * threads / calls if calls else None,
        "cpu_frac": cpu / wall,
        # the process's CPU (all threads: TensorFlow's intra-op pool included) per row
        "cpu_ms_per_row": 1e3 * cpu / (calls * batch) if calls else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--path", required=True)
    p.add_argument("--batch-sizes", default="1")
    p.add_argument("--threads", default="1")
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from jupyter_tfserving.platforms.tensorflow import SavedModelLoader

    servable = SavedModelLoader(args.path).load()
    try:
        width = servable.signatures()["serving_default"].inputs["x"].shape[1]
        results = []
        for batch in sorted({int(b) for b in args.batch_sizes.split(",") if b}):
            for threads in sorted({int(t) for t in args.threads.split(",") if t}):
                results.append(measure(servable, width, batch, threads, args.seconds))
    finally:
        servable.close()
    json.dump({"results": results}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
