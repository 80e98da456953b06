"""Version evaluation's metrics, checked against direct computations written here (pairwise
AUC, the textbook formulas), and the disagreement table."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from jupyter_tfserving.core.status import ServingError
from jupyter_tfserving.jobs.evaluation import METRICS, auc, compare, log_loss


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    wins = 0.0
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    for p, n in itertools.product(pos, neg):
        wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(pos) * len(neg))


def test_metrics_match_direct_computation() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    probability = np.round(rng.random(200), 2)  # rounded: ties happen
    two = np.stack([1 - probability, probability], axis=1)
    assert auc(labels, probability) == pytest.approx(_pairwise_auc(labels, probability))
    assert auc(labels, two) == pytest.approx(_pairwise_auc(labels, probability))
    p = np.clip(probability, 1e-15, 1 - 1e-15)
    expected = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert log_loss(labels, probability) == pytest.approx(expected)
    assert METRICS["accuracy"](labels, two) == pytest.approx(
        np.mean(np.argmax(two, axis=1) == labels))
    assert METRICS["accuracy"](labels, probability) == pytest.approx(
        np.mean((probability >= 0.5).astype(int) == labels))
    y, predicted = rng.random((50, 2)), rng.random((50, 2))
    assert METRICS["mse"](y, predicted) == pytest.approx(np.mean((y - predicted) ** 2))
    assert METRICS["mae"](y, predicted) == pytest.approx(np.mean(np.abs(y - predicted)))


def test_compare_versions_and_where_they_disagree() -> None:
    labels = np.array([1.0, 2.0, 3.0, 4.0])
    stable = np.array([[1.0], [2.0], [3.0], [4.0]])
    canary = np.array([[1.0], [2.5], [3.0], [7.0]])

    def max_error(y: np.ndarray, p: np.ndarray) -> float:
        return float(np.max(np.abs(p.reshape(-1) - y)))

    result = compare({"1": stable, "2": canary}, labels, ["mse", "mae", max_error], top=3)
    assert result.metrics["1"] == {"mse": 0.0, "mae": 0.0, "max_error": 0.0}
    assert result.metrics["2"]["mse"] == pytest.approx((0.25 + 9) / 4)
    assert result.metrics["2"]["max_error"] == 3.0
    assert result.disagreements == [(3, 3.0), (1, 0.5)]  # rows that agree are left out
    with pytest.raises(ServingError, match="Unknown metric 'f1'"):
        compare({"1": stable}, labels, ["f1"])
    with pytest.raises(ServingError, match="3 outputs for 4 labels"):
        compare({"1": stable[:3]}, labels, ["mse"])
    with pytest.raises(ServingError, match="both positive and negative"):
        auc(np.ones(3), np.array([0.1, 0.2, 0.3]))
