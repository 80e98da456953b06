"""``evaluate(name, data, labels, versions=...)``: versions of a model compared on labelled rows.

Each version runs over the same data as a server-side bulk job (``kernel.bulk``; all at once,
on the server's bulk lane), then the kernel reads the results back and
:func:`~jupyter_tfserving.jobs.evaluation.compare` computes every metric per version and the
rows where the versions disagree most. The :class:`Evaluation` shows as a table in the
notebook, draws a matplotlib ``Figure`` (never pyplot) and is kept as the model's last
evaluation, which ``dashboard()`` shows next to the canary split.

Runs on the kernel's thread and blocks it.
"""

from __future__ import annotations

import html
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.status import ServingError
from ..jobs.evaluation import Comparison, Metric, compare
from .bulk import DEFAULT_OUTPUT_DIR, BulkJob, bulk_predict, upload
from .client import TFServingClient

REGRESSION_METRICS = ("mse", "mae")
CLASSIFICATION_METRICS = ("accuracy",)
BINARY_METRICS = ("accuracy", "log_loss", "auc")
# Metrics where a smaller value is better (the others: larger).
SMALLER_IS_BETTER = {"mse", "mae", "log_loss"}

_last: dict[str, Evaluation] = {}
_last_lock = threading.Lock()


@dataclass
class Evaluation:
    """The versions of ``model`` compared on the same labelled rows.

    ``metrics[f"v{n}"][metric]``; ``disagreements``: (row, largest difference between two
    versions' outputs), most first; ``tags``: each version's labels (``stable``, ``canary``)
    at the time; ``jobs``: the bulk job each version ran as."""

    model: str
    versions: list[int]
    output: str
    comparison: Comparison
    tags: dict[int, list[str]] = field(default_factory=dict)
    jobs: dict[int, BulkJob] = field(default_factory=dict)
    outputs: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    finished_at: float = field(default_factory=time.time)

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return self.comparison.metrics

    def table(self) -> Any:
        """The metrics as a pandas DataFrame: one row per version, one column per metric."""
        import pandas as pd

        frame = pd.DataFrame.from_dict(self.metrics, orient="index")
        frame.index = [self._name(v) for v in self.versions]
        frame.index.name = "version"
        return frame

    def disagreement_table(self) -> Any:
        """The rows where the versions disagree most: row, label, each version's output."""
        import pandas as pd

        rows = [i for i, _ in self.comparison.disagreements]
        frame = pd.DataFrame({"row": rows,
                              "difference": [d for _, d in self.comparison.disagreements]})
        if self.labels is not None:
            frame["label"] = [_cell(self.labels[i]) for i in rows]
        for v in self.versions:
            frame[self._name(v)] = [_cell(self.outputs[v][i]) for i in rows]
        return frame

    def best(self, metric: str | None = None) -> int:
        """The version that scores best on ``metric`` (default: the first metric)."""
        metric = metric or next(iter(next(iter(self.metrics.values()))))
        scores = {v: self.metrics[f"v{v}"][metric] for v in self.versions}
        pick = min if metric in SMALLER_IS_BETTER else max
        return pick(scores, key=lambda v: scores[v])

    def _name(self, version: int) -> str:
        tags = self.tags.get(version)
        return f"v{version}" + (f" ({', '.join(tags)})" if tags else "")

    def figure(self) -> Any:
        """A matplotlib Figure: one panel per metric, a bar per version."""
        from matplotlib.figure import Figure

        names = list(next(iter(self.metrics.values())))
        fig = Figure(figsize=(max(3.0, 2.6 * len(names)), 2.8), layout="constrained")
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        labels = [self._name(v) for v in self.versions]
        colours = [f"C{i}" for i in range(len(self.versions))]
        for ax, metric in zip(axes, names, strict=True):
            values = [self.metrics[f"v{v}"][metric] for v in self.versions]
            ax.bar(labels, values, color=colours)
            better = "lower" if metric in SMALLER_IS_BETTER else "higher"
            ax.set_title(f"{metric} ({better} is better)", fontsize=9)
            ax.tick_params(axis="x", labelsize=8, rotation=15)
            for i, value in enumerate(values):
                ax.annotate(f"{value:.4g}", (i, value), ha="center", va="bottom", fontsize=8)
        fig.suptitle(f"{self.model}: {len(self.labels) if self.labels is not None else '?'} "
                     "rows", fontsize=10)
        return fig

    def to_html(self) -> str:
        """The metrics table (the best version of each metric in bold) and the top
        disagreements, as HTML (the notebook's and the dashboard's view)."""
        names = list(next(iter(self.metrics.values())))
        best = {m: self.best(m) for m in names}
        head = "".join(f"<th>{html.escape(m)}</th>" for m in names)
        body = ""
        for v in self.versions:
            cells = "".join(
                f"<td>{'<b>' if best[m] == v else ''}{self.metrics[f'v{v}'][m]:.4g}"
                f"{'</b>' if best[m] == v else ''}</td>" for m in names)
            body += f"<tr><td>{html.escape(self._name(v))}</td>{cells}</tr>"
        rows = self.comparison.disagreements[:5]
        where = ", ".join(f"row {i} (by {d:.3g})" for i, d in rows) or "none"
        return (f"<div><b>{html.escape(self.model)}</b>: {html.escape(self.output)} on "
                f"{len(self.labels) if self.labels is not None else '?'} rows"
                f"<table><tr><th>version</th>{head}</tr>{body}</table>"
                f"<small>Largest disagreements: {where}</small></div>")

    def _repr_html_(self) -> str:
        return self.to_html()


def _cell(value: Any) -> Any:
    array = np.asarray(value)
    return array.item() if array.size == 1 else array.tolist()


def last_evaluation(model: str) -> Evaluation | None:
    """The model's last evaluation in this kernel (the dashboard shows it)."""
    with _last_lock:
        return _last.get(model)


def default_metrics(labels: np.ndarray, outputs: np.ndarray) -> tuple[str, ...]:
    """Classification metrics for integer or boolean labels with class scores or
    probabilities (log loss and AUC where it is binary), regression metrics otherwise."""
    width = int(np.prod(outputs.shape[1:])) if outputs.ndim > 1 else 1
    if labels.dtype.kind not in "biu":
        return REGRESSION_METRICS
    probabilities = bool(outputs.size) and outputs.min() >= 0 and outputs.max() <= 1
    if width == 1 and not probabilities:
        return REGRESSION_METRICS
    binary = set(np.unique(labels).tolist()) <= {0, 1} and width <= 2
    return BINARY_METRICS if binary else CLASSIFICATION_METRICS


def _signature_outputs(client: TFServingClient, name: str, version: int,
                       signature_name: str | None) -> list[str]:
    metadata = client.call("GET", f"/v1/models/{name}/versions/{version}/metadata")
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    return list(signatures[signature_name or "serving_default"]["outputs"])


def _pick_versions(model: dict[str, Any], versions: Sequence[int] | None,
                   version_labels: Sequence[str] | None) -> tuple[list[int], dict[int, list[str]]]:
    labels: dict[str, int] = dict(model.get("labels") or {})
    tags: dict[int, list[str]] = {}
    for label, version in sorted(labels.items()):
        tags.setdefault(int(version), []).append(label)
    if versions is not None and version_labels is not None:
        raise ValueError("Give versions or version_labels, not both")
    if version_labels is not None:
        missing = [label for label in version_labels if label not in labels]
        if missing:
            raise ValueError(f"Model {model['name']} has no label {', '.join(missing)} (its "
                             f"labels: {', '.join(sorted(labels)) or 'none'})")
        chosen = [int(labels[label]) for label in version_labels]
    elif versions is not None:
        chosen = [int(v) for v in versions]
    else:
        available = sorted(int(v["version"]) for v in model.get("versions", [])
                           if v.get("state") == "AVAILABLE")
        chosen = available
    chosen = list(dict.fromkeys(chosen))
    if not chosen:
        raise ValueError(f"Model {model['name']} has no AVAILABLE version to evaluate")
    return chosen, tags


def evaluate(name: str, data: Any, labels: Any, *, versions: Sequence[int] | None = None,
             version_labels: Sequence[str] | None = None,
             metrics: Sequence[str | Metric] | None = None, output: str | None = None,
             signature_name: str | None = None, method: str = "predict",
             batch_size: int | None = None, top: int = 10, progress: bool = True,
             client: TFServingClient | None = None) -> Evaluation:
    """Compare versions of model ``name`` on labelled ``data``.

    ``data``: what :func:`~.bulk.bulk_predict` takes (a path the server reads, or an array,
    dict of arrays or DataFrame). ``labels``: the true values (an array aligned with the
    rows), or the name of a column of ``data`` holding them (it is not sent to the model; for
    a path, the job carries it through as a key column). ``versions`` or ``version_labels``
    (e.g. ``["stable", "canary"]``) pick the versions; default: every AVAILABLE version.
    ``metrics``: names (``mse``, ``mae``, ``accuracy``, ``log_loss``, ``auc``) or callables
    ``(labels, predictions) -> float``; default: chosen from the labels and outputs. ``output``:
    the signature output compared (default: its only one). Raises ValueError for a bad
    choice, TFServingError/JobFailed as the jobs do."""
    from .serving import connect

    client = client or connect()
    chosen, tags = _pick_versions(client.model(name), versions, version_labels)
    label_column = labels if isinstance(labels, str) else None
    if label_column is not None and not isinstance(data, (str, os.PathLike, list, tuple)):
        if label_column not in data:
            raise ValueError(f"The data has no column {label_column!r}")
        truth: np.ndarray | None = np.asarray(data[label_column])
        data = ({k: v for k, v in data.items() if k != label_column}
                if isinstance(data, Mapping) else data.drop(columns=[label_column]))
        label_column = None
    else:
        truth = None if label_column is not None else np.asarray(labels)
    if not isinstance(data, (str, os.PathLike, list, tuple)):
        data = upload(client, data)  # once, for every version's job
    outputs_of = _signature_outputs(client, name, chosen[0], signature_name)
    if method == "classify":
        outputs_of = ["scores"]
    elif method == "regress":
        outputs_of = ["value"]
    compared = output or (outputs_of[0] if len(outputs_of) == 1 else None)
    if compared is None or compared not in outputs_of:
        raise ValueError(f"Say which output to compare: output= one of {', '.join(outputs_of)}")
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"
    jobs = {v: bulk_predict(name, data, os.path.join(DEFAULT_OUTPUT_DIR,
                                                     f"evaluate-{name}-{stamp}", f"v{v}"),
                            version=v, signature_name=signature_name, method=method,
                            batch_size=batch_size, wait=False, client=client)
            for v in chosen}
    results: dict[int, np.ndarray] = {}
    for v, job in jobs.items():
        arrays = job.wait(progress=progress).result(as_frame=False)
        results[v] = arrays[compared]
        if truth is None:
            if label_column not in arrays:
                raise ValueError(f"The data has no column {label_column!r}")
            truth = np.asarray(arrays[label_column])
    assert truth is not None
    if len(truth) != len(results[chosen[0]]):
        raise ValueError(f"{len(truth)} labels for {len(results[chosen[0]])} rows")
    chosen_metrics = list(metrics) if metrics else list(default_metrics(truth,
                                                                       results[chosen[0]]))
    try:
        comparison = compare({f"v{v}": results[v] for v in chosen}, truth, chosen_metrics,
                             top)
    except ServingError as exc:
        raise ValueError(exc.message) from None
    evaluation = Evaluation(name, chosen, compared, comparison, tags, jobs, results, truth)
    with _last_lock:
        _last[name] = evaluation
    return evaluation
