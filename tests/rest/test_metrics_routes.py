"""Prometheus and stats routes on a real server, fed by real requests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


async def test_prometheus_and_stats_follow_traffic(rest, publish):
    publish("half_plus_two", 1)
    await rest.wait_for("half_plus_two", 1)
    for _ in range(3):
        code, _, _ = await rest.call("/v1/models/half_plus_two:predict", {"instances": [[1.0]]})
        assert code == 200
    code, _, _ = await rest.call("/v1/models/half_plus_two:predict", {"instances": [["x"]]})
    assert code == 400
    code, _, _ = await rest.call("/v1/models/nope:predict", {"instances": [[1.0]]})
    assert code == 404

    code, text, headers = await rest.call("/monitoring/prometheus/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[(":tensorflow:serving:request_count",
                    (("model_name", "half_plus_two"), ("status", "OK")))] == 3
    assert samples[(":tensorflow:serving:request_count",
                    (("model_name", "half_plus_two"), ("status", "INVALID_ARGUMENT")))] == 1
    assert samples[(":tensorflow:serving:request_count",
                    (("model_name", "nope"), ("status", "NOT_FOUND")))] == 1

    code, data, _ = await rest.call("/api/stats")
    assert code == 200
    [model] = data["models"]
    [version] = model["versions"]
    assert (version["version"], version["state"], version["in_flight"]) == (1, "AVAILABLE", 0)
    assert (version["request_count"], version["error_count"]) == (4, 1)
    assert version["latency_us"]["count"] == 4 and version["latency_us"]["p50"] > 0


async def test_metrics_routes_require_the_login(rest):
    for path in ("/monitoring/prometheus/metrics", "/api/stats"):
        code, _, _ = await rest.call(path, auth=False)
        assert code == 403
