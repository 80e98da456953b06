"""The stats store and its Prometheus exposition."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from jupyter_tfserving.metrics.prometheus import exposition, make_registry
from jupyter_tfserving.metrics.stats import LATENCY_BUCKETS_US, Histogram, ServingStats


def test_tf_serving_latency_buckets():
    assert len(LATENCY_BUCKETS_US) == 33
    assert LATENCY_BUCKETS_US[0] == 10 and abs(LATENCY_BUCKETS_US[1] - 18) < 1e-9


def test_histogram_buckets_and_quantiles():
    h = Histogram([1, 2, 4])
    for v in (0.5, 1, 1.5, 3, 100):
        h.observe(v)
    assert h.cumulative() == [("1.0", 2), ("2.0", 3), ("4.0", 4), ("+Inf", 5)]
    assert h.quantile(0.4) == 1 and h.quantile(0.6) == 2 and h.quantile(1.0) == 4
    assert Histogram([1]).quantile(0.5) is None


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
    assert v1["latency_us"]["count"] == 2 and v1["latency_us"]["p99"] >= 2000
    assert snap.version_json("m", 3)["request_count"] == 0
    # The snapshot does not move when the store does.
    stats.record_request("m", 1, "predict", "OK", 0.001)
    assert snap.version_json("m", 1)["request_count"] == 2


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
