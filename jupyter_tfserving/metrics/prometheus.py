"""Prometheus exposition of :class:`~.stats.ServingStats` with TF Serving's metric names.

A ``prometheus_client`` collector registered in the server's own ``CollectorRegistry`` (never the
global one, so two servers in one process do not mix). Called by ``prometheus_client`` at scrape
time, on a worker thread. Names follow TF Serving's exporter: ``/tensorflow/serving/x`` becomes
``:tensorflow:serving:x``; counters keep their name without ``_total``, as TF Serving writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric

from .stats import Histogram, ServingStats

PREFIX = ":tensorflow:serving:"

# The label values of one sample: (model,), (model, status), (model, API, entrypoint), ...
_Key = TypeVar("_Key", bound=tuple[str, ...])


def _histogram(name: str, doc: str, labels: list[str],
               items: Mapping[_Key, Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(PREFIX + name, doc, labels=labels)
    for key, h in sorted(items.items()):
        family.add_metric(list(key), h.cumulative(), h.sum)
    return family


def _scalar(kind: str, name: str, doc: str, labels: list[str],
            items: Mapping[_Key, float]) -> Metric:
    """A counter or gauge whose samples carry exactly ``name`` (no ``_total``)."""
    metric = Metric(PREFIX + name, doc, kind)
    for key, value in sorted(items.items()):
        metric.add_sample(PREFIX + name, dict(zip(labels, key, strict=True)), value)
    return metric


class ServingCollector:
    """Yields every metric from a fresh snapshot of ``stats``; ``in_flight()`` gives the live
    handle counts per (model, version) from the manager; ``batch_timeouts()``, when given, the
    batch wait in use per model (microseconds) from the batch scheduler."""

    def __init__(self, stats: ServingStats,
                 in_flight: Callable[[], dict[tuple[str, int], int]],
                 batch_timeouts: Callable[[], Mapping[str, float]] | None = None) -> None:
        self._stats = stats
        self._in_flight = in_flight
        self._batch_timeouts = batch_timeouts

    def collect(self) -> Iterator[Metric]:
        s = self._stats.snapshot()
        yield _scalar("counter", "request_count", "The total number of requests.",
                       ["model_name", "status"], s.request_count)
        yield _histogram("request_latency",
                         "Distribution of wall time (in microseconds) of requests.",
                         ["model_name", "API", "entrypoint"], s.request_latency)
        yield _histogram("runtime_latency",
                         "Distribution of wall time (in microseconds) of model runs.",
                         ["model_name", "API", "runtime"], s.runtime_latency)
        batching = s.batching
        for name, attr, doc in (
            ("batching_session:queuing_latency", "queuing_latency_us",
             "Distribution of wall time (in microseconds) tasks spend in the batch queue."),
            ("batching_session:input_batch_size", "input_batch_size",
             "Distribution of batch sizes before padding."),
            ("batching_session:processed_batch_size", "processed_batch_size",
             "Distribution of batch sizes after padding."),
            ("batching_session:padding_size", "padding_size",
             "Distribution of padding rows added to batches."),
        ):
            yield _histogram(name, doc, ["model_name"],
                             {(m,): getattr(b, attr) for m, b in batching.items()})
        if self._batch_timeouts is not None:
            # Ours (TF Serving's timeout is a fixed parameter): what batch_timeout_micros "auto"
            # chose, the longest of the model's online queues; a fixed value as configured.
            yield _scalar("gauge", "batching_session:batch_timeout_micros",
                          "The batch timeout in use (microseconds): chosen per queue when "
                          "batch_timeout_micros is auto.", ["model_name"],
                          {(m,): float(v) for m, v in self._batch_timeouts().items()})
        versions = s.versions
        yield _scalar("counter", "version_request_count", "Requests per model version.",
                       ["model_name", "model_version"],
                       {(m, str(v)): st.request_count for (m, v), st in versions.items()})
        yield _scalar("counter", "version_error_count", "Failed requests per model version.",
                       ["model_name", "model_version"],
                       {(m, str(v)): st.error_count for (m, v), st in versions.items()})
        yield _histogram("version_request_latency",
                         "Distribution of request wall time (in microseconds) per version.",
                         ["model_name", "model_version"],
                         {(m, str(v)): st.latency_us for (m, v), st in versions.items()})
        yield _scalar("gauge", "version_in_flight", "Requests holding a handle on a version now.",
                     ["model_name", "model_version"],
                     {(m, str(v)): float(n) for (m, v), n in self._in_flight().items()})


def make_registry(stats: ServingStats,
                  in_flight: Callable[[], dict[tuple[str, int], int]],
                  batch_timeouts: Callable[[], Mapping[str, float]] | None = None,
                  ) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServingCollector(stats, in_flight, batch_timeouts))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Prometheus text format (version 0.0.4) of everything in ``registry``."""
    return generate_latest(registry)
