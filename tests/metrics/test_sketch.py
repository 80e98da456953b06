"""The latency sketches: accuracy against exact quantiles, exact merges, the sliding window."""

from __future__ import annotations

import numpy as np
import pytest

from jupyter_tfserving.metrics.sketch import RELATIVE_ACCURACY, LatencySketch, WindowedSketch

QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)


def _sketch(values: np.ndarray) -> LatencySketch:
    sketch = LatencySketch()
    for v in values.tolist():
        sketch.add(v)
    return sketch


@pytest.mark.parametrize("name", ["lognormal", "exponential", "uniform", "bimodal", "pareto"])
def test_quantiles_within_one_percent_of_exact(name: str):
    rng = np.random.default_rng(14)
    n = 20_000
    values = {
        "lognormal": lambda: rng.lognormal(7.0, 1.0, n),  # ~1 ms median, long tail
        "exponential": lambda: rng.exponential(2_000.0, n),
        "uniform": lambda: rng.uniform(100.0, 50_000.0, n),
        "bimodal": lambda: np.concatenate([rng.normal(800.0, 50.0, n * 6 // 10),  # 40% slow
                                           rng.normal(20_000.0, 2_000.0, n * 4 // 10)]),
        "pareto": lambda: (rng.pareto(1.5, n) + 1.0) * 500.0,
    }[name]()
    sketch = _sketch(values)
    assert sketch.count == n
    for q in QUANTILES:
        # The sketch answers the nearest rank: the smallest value with >= q * n at or below it.
        exact = float(np.quantile(values, q, method="inverted_cdf"))
        assert sketch.quantile(q) == pytest.approx(exact, rel=RELATIVE_ACCURACY + 1e-9), q
        # And stays within 2% of numpy's default (interpolated) quantile.
        assert sketch.quantile(q) == pytest.approx(float(np.quantile(values, q)), rel=0.02), q


def test_small_counts_use_the_nearest_rank():
    values = np.arange(1.0, 21.0) * 1_000.0  # the first 20 requests after a load, say
    sketch = _sketch(values)
    for q in (0.0, 0.05, 0.1, 0.5, 0.51, 0.9, 0.95, 0.96, 0.99, 1.0):
        exact = float(np.quantile(values, q, method="inverted_cdf"))
        assert sketch.quantile(q) == pytest.approx(exact, rel=RELATIVE_ACCURACY + 1e-9), q
    assert sketch.quantile(0.99) == pytest.approx(20_000.0, rel=0.01)  # the slowest one
    with pytest.raises(ValueError):
        sketch.quantile(1.5)


def test_empty_sketch_has_no_quantiles():
    sketch = LatencySketch()
    assert sketch.count == 0 and sketch.quantile(0.5) is None and sketch.quantile(0.99) is None


def test_zero_and_single_values():
    sketch = _sketch(np.array([0.0]))
    assert sketch.quantile(0.5) == 0
    sketch = _sketch(np.array([1234.0]))
    assert sketch.quantile(0.0) == sketch.quantile(1.0) == pytest.approx(1234.0, rel=0.01)


def test_merge_equals_adding_to_one():
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(6.0, 0.5, 5_000), rng.lognormal(9.0, 1.5, 3_000)
    merged = _sketch(a)
    merged.merge(_sketch(b))
    one = _sketch(np.concatenate([a, b]))
    assert merged.count == one.count == 8_000
    assert merged.sum == pytest.approx(one.sum)
    for q in QUANTILES:
        assert merged.quantile(q) == one.quantile(q)


def test_copy_is_independent():
    sketch = _sketch(np.array([10.0, 20.0, 30.0]))
    copy = sketch.copy()
    copy.add(1e6)
    sketch.add(1.0)
    assert (sketch.count, copy.count) == (4, 4)
    assert copy.quantile(1.0) == pytest.approx(1e6, rel=0.01)
    assert sketch.quantile(1.0) == pytest.approx(30.0, rel=0.01)
    # Merging into an empty sketch, then adding to it, leaves the source alone.
    empty = LatencySketch()
    empty.merge(sketch)
    empty.add(5e5)
    assert sketch.count == 4


def test_window_drops_old_values():
    window = WindowedSketch(window_seconds=60.0)  # six slots of 10 s
    window.add(1_000.0, now=0.0)
    window.add(2_000.0, now=15.0)
    window.add(3_000.0, now=55.0)
    assert window.merged(now=59.0).count == 3
    # At t=60 the slot [0, 10) has left the window; at 70 so has [10, 20).
    assert window.merged(now=60.0).count == 2
    assert window.merged(now=70.0).count == 1
    assert window.merged(now=70.0).quantile(0.5) == pytest.approx(3_000.0, rel=0.01)
    assert window.merged(now=120.0).count == 0
    assert window.merged(now=120.0).quantile(0.5) is None


def test_window_reuses_slots_and_keeps_the_total():
    window = WindowedSketch(window_seconds=60.0, slots=6)
    for t in range(0, 600, 5):  # ten minutes, two values a slot: the ring wraps many times
        window.add(float(t + 1), now=float(t))
    recent = window.merged(now=599.0)
    assert recent.count == 12  # the slots [540, 600)
    assert recent.quantile(0.0) == pytest.approx(541.0, rel=0.01)
    total = window.total()
    assert total.count == 120
    assert total.quantile(0.0) == pytest.approx(1.0, rel=0.01)
    assert total.quantile(1.0) == pytest.approx(596.0, rel=0.01)


def test_window_uses_its_clock_and_copies():
    now = [100.0]
    window = WindowedSketch(window_seconds=10.0, slots=2, clock=lambda: now[0])
    window.add(7.0)
    copy = window.copy()
    window.add(8.0)
    assert (window.merged().count, copy.merged().count) == (2, 1)
    now[0] = 200.0
    assert window.merged().count == 0 and window.total().count == 2
    assert copy.total().count == 1


def test_window_rejects_bad_shapes():
    with pytest.raises(ValueError):
        WindowedSketch(window_seconds=0.0)
    with pytest.raises(ValueError):
        WindowedSketch(slots=0)
