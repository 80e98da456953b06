"""Server-side request batching, after TF Serving's SharedBatchScheduler and BatchingSession.

- :class:`BatchingParameters` (TF Serving's names and defaults), parsed from TF Serving's
  ``--batching_parameters_file`` text proto by :func:`parse_batching_parameters` /
  :func:`read_batching_parameters_file`.
- :class:`BatchScheduler`: one per server; per-key queues, shared worker threads, a Future per
  request with exactly that request's rows. :class:`BatchEvent` (observer hook) and
  :class:`QueueStats` (snapshot) report what it does.

This package imports only the standard library, numpy, protobuf and ``jupyter_tfserving.core``.
"""

from __future__ import annotations

from jupyter_tfserving.batching.parameters import (
    BatchingParameters,
    BatchingParametersProto,
    parse_batching_parameters,
    read_batching_parameters_file,
)
from jupyter_tfserving.batching.scheduler import BatchEvent, BatchScheduler, QueueStats, RunFn

__all__ = [
    "BatchEvent",
    "BatchScheduler",
    "BatchingParameters",
    "BatchingParametersProto",
    "QueueStats",
    "RunFn",
    "parse_batching_parameters",
    "read_batching_parameters_file",
]
