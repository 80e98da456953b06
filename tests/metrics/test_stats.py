"""The stats store and its Prometheus exposition."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jupyter_tfserving.metrics.prometheus import exposition, make_registry
from jupyter_tfserving.metrics.stats import (
    LATENCY_BUCKETS_US,
    RECENT_WINDOW_SECONDS,
    Histogram,
    ServingStats,
)


def test_tf_serving_latency_buckets():
    assert len(LATENCY_BUCKETS_US) == 33
    assert LATENCY_BUCKETS_US[0] == 10 and abs(LATENCY_BUCKETS_US[1] - 18) < 1e-9


def test_histogram_buckets():
    h = Histogram([1, 2, 4])
    for v in (0.5, 1, 1.5, 3, 100):
        h.observe(v)
    assert h.cumulative() == [("1.0", 2), ("2.0", 3), ("4.0", 4), ("+Inf", 5)]


def test_requests_per_model_and_version():
    stats = ServingStats()
    stats.record_request("m", 1, "predict", "OK", 0.001)
    stats.record_request("m", 1, "predict", "INVALID_ARGUMENT", 0.002)
    stats.record_request("m", None, "predict", "NOT_FOUND", 0.0001)
    stats.record_request("m", 2, "predict", "OK", 0.5)
    snap = stats.snapshot()
    assert snap.request_count == {
        ("m", "OK"): 2, ("m", "INVALID_ARGUMENT"): 1, ("m", "NOT_FOUND"): 1
    }
    v1 = snap.version_json("m", 1)
    assert (v1["request_count"], v1["error_count"]) == (2, 1)
    assert v1["latency_us"]["count"] == 2
    assert v1["latency_us"]["p99"] == pytest.approx(2000, rel=0.01)  # the nearest rank
    assert snap.version_json("m", 3)["request_count"] == 0
    # The snapshot does not move when the store does.
    stats.record_request("m", 1, "predict", "OK", 0.001)
    assert snap.version_json("m", 1)["request_count"] == 2


def test_version_quantiles_come_from_the_sketch():
    stats = ServingStats()
    # 1..1000 ms: a p99 inside one 1.8x-wide bucket, which the bucket bound would miss by ~40%.
    for ms in range(1, 1001):
        stats.record_request("m", 1, "predict", "OK", ms / 1000)
    latency = stats.snapshot().version_json("m", 1)["latency_us"]
    for q, key in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
        exact = float(np.quantile(np.arange(1, 1001) * 1000.0, q, method="inverted_cdf"))
        assert latency[key] == pytest.approx(exact, rel=0.01), key
    # Sum, count and buckets stay exact (they are what Prometheus sees).
    assert latency["count"] == 1000 and latency["sum"] == pytest.approx(500_500_000.0)
    assert latency["buckets"][-1] == ["+Inf", 1000]


def test_recent_latency_covers_the_last_minute():
    now = [1_000.0]
    stats = ServingStats(clock=lambda: now[0])
    empty = stats.version_json("m", 1)
    assert empty["latency_us"]["p50"] is None and empty["latency_us"]["p90"] is None
    assert empty["recent_latency_us"] == {
        "window_seconds": RECENT_WINDOW_SECONDS, "count": 0, "p50": None, "p90": None,
        "p99": None}
    for _ in range(10):
        stats.record_request("m", 1, "predict", "OK", 0.100)  # a slow start (no warmup)
    now[0] += 90.0  # a minute and a half later, fast
    for _ in range(30):
        stats.record_request("m", 1, "predict", "OK", 0.002)
    snap = stats.snapshot()
    v1 = snap.version_json("m", 1)
    assert v1["recent_latency_us"]["count"] == 30
    assert v1["recent_latency_us"]["p99"] == pytest.approx(2_000.0, rel=0.01)
    assert v1["latency_us"]["count"] == 40
    assert v1["latency_us"]["p99"] == pytest.approx(100_000.0, rel=0.01)
    # The snapshot's window moves on with the clock, and does not see later requests.
    stats.record_request("m", 1, "predict", "OK", 0.002)
    now[0] += 60.0
    later = snap.version_json("m", 1)
    assert later["recent_latency_us"]["count"] == 0 and later["latency_us"]["count"] == 40
    assert stats.snapshot().version_json("m", 1)["latency_us"]["count"] == 41


def test_prometheus_text_uses_tf_serving_names():
    stats = ServingStats()
    stats.record_request("m", 1, "predict", "OK", 0.001)
    stats.record_runtime("m", "predict", 0.0005)
    stats.record_batch("m", input_rows=3, processed_rows=4, queuing_seconds=[0.001, 0.002, 0.0])
    text = exposition(make_registry(stats, lambda: {("m", 1): 2})).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[(":tensorflow:serving:request_count",
                    (("model_name", "m"), ("status", "OK")))] == 1
    assert samples[(":tensorflow:serving:request_latency_count",
                    (("API", "predict"), ("entrypoint", "REST"), ("model_name", "m")))] == 1
    assert samples[(":tensorflow:serving:runtime_latency_count",
                    (("API", "predict"), ("model_name", "m"), ("runtime", "TF1Session")))] == 1
    assert samples[(":tensorflow:serving:batching_session:padding_size_sum",
                    (("model_name", "m"),))] == 1
    assert samples[(":tensorflow:serving:batching_session:queuing_latency_count",
                    (("model_name", "m"),))] == 3
    assert samples[(":tensorflow:serving:version_in_flight",
                    (("model_name", "m"), ("model_version", "1")))] == 2


def test_each_registry_is_its_own():
    from prometheus_client import REGISTRY

    a, b = ServingStats(), ServingStats()
    a.record_request("only_a", 1, "predict", "OK", 0.001)
    text_b = exposition(make_registry(b, dict)).decode()
    assert "only_a" not in text_b
    assert "only_a" not in exposition(REGISTRY).decode()
