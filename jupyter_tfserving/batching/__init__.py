"""Server-side request batching, after TF Serving's SharedBatchScheduler and BatchingSession.

- :class:`BatchingParameters` (TF Serving's names and defaults), parsed from TF Serving's
  ``--batching_parameters_file`` text proto by :func:`parse_batching_parameters` /
  :func:`read_batching_parameters_file`.
- :class:`BatchScheduler`: one per server; per-key queues, shared worker threads, a Future per
  request with exactly that request's rows. :class:`BatchEvent` (observer hook) and
  :class:`QueueStats` (snapshot) report what it does.
- :class:`AdaptiveWait`: the batch wait of a queue whose ``batch_timeout_micros`` is ``"auto"``
  (ours), chosen from measured run times and the arrival rate to keep
  ``batch_latency_target_ms``.

This package imports only the standard library, numpy, protobuf and ``jupyter_tfserving.core``.
"""

from __future__ import annotations

from jupyter_tfserving.batching.adaptive import AdaptiveWait
from jupyter_tfserving.batching.parameters import (
    AUTO,
    BatchingParameters,
    BatchingParametersProto,
    parse_batching_parameters,
    read_batching_parameters_file,
)
from jupyter_tfserving.batching.scheduler import (
    BatchEvent,
    BatchScheduler,
    QueueStats,
    RunFn,
    RunFuture,
)

__all__ = [
    "AUTO",
    "AdaptiveWait",
    "BatchEvent",
    "BatchScheduler",
    "BatchingParameters",
    "BatchingParametersProto",
    "QueueStats",
    "RunFn",
    "RunFuture",
    "parse_batching_parameters",
    "read_batching_parameters_file",
]
