"""Serving metrics: one in-process store (``stats.ServingStats``), read two ways: as
Prometheus text with TF Serving's metric names (``prometheus``) and as JSON for the dashboard."""

from .stats import LATENCY_BUCKETS_US, Histogram, ServingStats

__all__ = ["LATENCY_BUCKETS_US", "Histogram", "ServingStats"]
