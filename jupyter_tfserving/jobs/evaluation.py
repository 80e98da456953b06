"""Comparing versions on the same labelled rows: metrics per version, and where they disagree.

``evaluate`` (issue 13) runs each version over the same data as a bulk job, then calls
:func:`compare` with every version's outputs and the labels. Metrics are plain functions of
``(labels, predictions) -> float`` (numpy only): the built-in ones by name, or any callable.
Regression: ``mse``, ``mae``; classification: ``accuracy`` (argmax of class scores, or a
threshold of 0.5 on one probability), ``log_loss`` and ``auc`` (binary: the probability of the
positive class, or the second column of two). Pure functions; no transport, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..core.status import invalid_argument

Metric = Callable[[np.ndarray, np.ndarray], float]
EPSILON = 1e-15


def _flat(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(len(values), -1)


def mse(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Mean squared error over every value."""
    return float(np.mean((_flat(predictions) - _flat(labels)) ** 2))


def mae(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Mean absolute error over every value."""
    return float(np.mean(np.abs(_flat(predictions) - _flat(labels))))


def _classes(predictions: np.ndarray) -> np.ndarray:
    scores = _flat(predictions)
    if scores.shape[1] == 1:
        return (scores[:, 0] >= 0.5).astype(np.int64)
    return np.argmax(scores, axis=1)


def _positive_probability(predictions: np.ndarray) -> np.ndarray:
    scores = _flat(predictions)
    if scores.shape[1] == 1:
        return scores[:, 0]
    if scores.shape[1] == 2:
        return scores[:, 1]
    raise invalid_argument("auc and log_loss here are binary: one probability per row, or "
                           f"two class scores; the predictions have {scores.shape[1]}")


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """The share of rows whose predicted class (argmax, or probability >= 0.5) is the label."""
    return float(np.mean(_classes(predictions) == np.asarray(labels).reshape(-1)))


def log_loss(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Binary cross-entropy of the positive class's probability (clipped away from 0 and 1)."""
    p = np.clip(_positive_probability(predictions), EPSILON, 1 - EPSILON)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def auc(labels: np.ndarray, predictions: np.ndarray) -> float:
    """The area under the ROC curve: the chance a positive row scores above a negative one
    (ties count half), computed from ranks."""
    scores = _positive_probability(predictions)
    y = np.asarray(labels).reshape(-1).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        raise invalid_argument("auc needs both positive and negative labels")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


METRICS: dict[str, Metric] = {"mse": mse, "mae": mae, "accuracy": accuracy,
                              "log_loss": log_loss, "auc": auc}


@dataclass(frozen=True)
class Comparison:
    """``metrics[version][name]``; ``disagreements``: the rows where the versions' outputs
    differ most (row index, the largest absolute difference between any two versions), most
    first."""

    metrics: dict[str, dict[str, float]]
    disagreements: list[tuple[int, float]]


def compare(outputs: Mapping[str, np.ndarray], labels: np.ndarray,
            metrics: Sequence[str | Metric], top: int = 10) -> Comparison:
    """Every metric of every version's ``outputs`` (one array per version, rows aligned with
    ``labels``), and the ``top`` rows where the versions disagree most. INVALID_ARGUMENT for an
    unknown metric name or outputs whose rows do not match the labels."""
    chosen: list[tuple[str, Metric]] = []
    for metric in metrics:
        if isinstance(metric, str):
            if metric not in METRICS:
                raise invalid_argument(f"Unknown metric {metric!r} (built in: "
                                       f"{', '.join(sorted(METRICS))}; or pass a function)")
            chosen.append((metric, METRICS[metric]))
        else:
            chosen.append((getattr(metric, "__name__", repr(metric)), metric))
    rows = len(labels)
    for version, values in outputs.items():
        if len(values) != rows:
            raise invalid_argument(f"Version {version} has {len(values)} outputs for "
                                   f"{rows} labels")
    table = {version: {name: float(fn(labels, values)) for name, fn in chosen}
             for version, values in outputs.items()}
    disagreements: list[tuple[int, float]] = []
    if len(outputs) > 1 and rows:
        stacked = np.stack([_flat(v) for v in outputs.values()])  # [versions, rows, values]
        spread = (stacked.max(axis=0) - stacked.min(axis=0)).max(axis=1)
        worst = np.argsort(-spread, kind="mergesort")[:top]
        disagreements = [(int(i), float(spread[i])) for i in worst if spread[i] > 0]
    return Comparison(table, disagreements)
