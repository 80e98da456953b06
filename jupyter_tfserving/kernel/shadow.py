"""A shadow report in the notebook: what ``ServedModel.shadow_report()`` returns.

The server compares a candidate version's answers with the serving version's on a fraction of
the model's live requests (``jupyter_tfserving.traffic.shadow``); ``GET P/api/models/{m}/shadow``
answers the report as JSON (the ShadowReport of ``openapi.json``). :class:`ShadowReport` wraps
that JSON as it was when read (call ``shadow_report()`` again for newer figures) and shows it:
a summary and the per-output table as HTML, :meth:`ShadowReport.table` as a DataFrame.
Pure data: no server calls here.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

# The per-output columns of :meth:`ShadowReport.table`, in order.
OUTPUT_COLUMNS = ("pairs", "mismatches", "agreement", "max_abs_diff", "mean_abs_diff",
                  "argmax_agreement", "abs_diff_p50", "abs_diff_p90", "abs_diff_p99")


class ShadowReport:
    """One model's shadow report (the server's JSON, read once); its main members as
    attributes, the rest through :meth:`to_dict`."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    @property
    def model(self) -> str:
        return str(self._data["model"])

    @property
    def candidate_version(self) -> int:
        return int(self._data["candidate_version"])

    @property
    def active(self) -> bool:
        return bool(self._data["active"])

    @property
    def fraction(self) -> float:
        return float(self._data["fraction"])

    @property
    def pairs(self) -> int:
        return int(self._data["pairs"])

    @property
    def agreement(self) -> float | None:
        """The share of pairs in which every output agreed (None before the first pair)."""
        return self._data["agreement"]

    @property
    def end_reason(self) -> str | None:
        return self._data["end_reason"]

    def __repr__(self) -> str:
        return (f"ShadowReport(model={self.model!r}, candidate_version={self.candidate_version}, "
                f"active={self.active}, pairs={self.pairs}, agreement={self.agreement})")

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON, as the server wrote it (a copy)."""
        import copy

        return copy.deepcopy(self._data)

    def table(self) -> Any:
        """A pandas DataFrame: one row per output (index ``output``), the columns of
        :data:`OUTPUT_COLUMNS` (None where a figure does not apply: string outputs have no
        differences, only class scores an argmax agreement)."""
        import pandas as pd

        rows = []
        for name, figures in self._data.get("outputs", {}).items():
            quantiles = figures.get("abs_diff_quantiles") or {}
            rows.append({"output": name,
                         **{k: figures.get(k) for k in OUTPUT_COLUMNS[:6]},
                         **{f"abs_diff_{q}": quantiles.get(q) for q in ("p50", "p90", "p99")}})
        frame = pd.DataFrame(rows, columns=["output", *OUTPUT_COLUMNS])
        return frame.set_index("output")

    def latency_table(self) -> Any:
        """A pandas DataFrame: the serving version's and the candidate's model run time for
        the compared requests (count, p50, p90, p99 in microseconds; the run of the batch that
        answered each, time queued left out), one row each."""
        import pandas as pd

        latency = self._data.get("latency_us", {})
        frame = pd.DataFrame.from_dict(
            {side: latency.get(side, {}) for side in ("serving", "shadow")}, orient="index",
            columns=["count", "p50", "p90", "p99"])
        frame.index.name = "latency_us"
        return frame

    def to_html(self) -> str:
        """The summary, the per-output table, the latencies and the worst pairs as HTML."""
        d = self._data
        state = "running" if d.get("active") else f"ended ({d.get('end_reason')})"
        agreement = _fmt_share(d.get("agreement"))
        head = (f"<b>{html.escape(str(d.get('model')))}</b>: version "
                f"{d.get('candidate_version')} shadowing {_fmt_share(d.get('fraction'))} of "
                f"the unversioned requests, {html.escape(state)}<br>"
                f"{d.get('pairs', 0)} pairs, agreement {agreement}; "
                f"{d.get('mismatches', 0)} with a mismatch, {d.get('dropped', 0)} dropped, "
                f"{d.get('errors', 0)} errors")
        outputs = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{f.get('pairs')}</td>"
            f"<td>{f.get('mismatches')}</td><td>{_fmt_share(f.get('agreement'))}</td>"
            f"<td>{_fmt(f.get('max_abs_diff'))}</td><td>{_fmt(f.get('mean_abs_diff'))}</td>"
            f"<td>{_fmt_share(f.get('argmax_agreement'))}</td>"
            f"<td>{_fmt((f.get('abs_diff_quantiles') or {}).get('p99'))}</td></tr>"
            for name, f in d.get("outputs", {}).items())
        latency = d.get("latency_us", {})
        latencies = "".join(
            f"<tr><td>{side}</td>" + "".join(
                f"<td>{_fmt(latency.get(side, {}).get(q))}</td>" for q in ("p50", "p90", "p99"))
            + "</tr>" for side in ("serving", "shadow"))
        worst = "".join(
            f"<li>{html.escape(w['output'])} (served by version {w['serving_version']}): "
            + (f"mismatch, {html.escape(w['mismatch'])}" if w.get("mismatch")
               else f"max abs diff {_fmt(w.get('max_abs_diff'))}")
            + ("" if w.get("request") is None else " <small>(request logged)</small>")
            + "</li>" for w in d.get("worst", [])[:5])
        return (f"<div>{head}"
                "<table><tr><th>output</th><th>pairs</th><th>mismatches</th>"
                "<th>agreement</th><th>max abs diff</th><th>mean abs diff</th>"
                f"<th>argmax agreement</th><th>p99 abs diff</th></tr>{outputs}</table>"
                "<table><tr><th>model run (µs)</th><th>p50</th><th>p90</th><th>p99</th></tr>"
                f"{latencies}</table>"
                + (f"<small>Worst pairs:</small><ol>{worst}</ol>" if worst else "")
                + "</div>")

    def _repr_html_(self) -> str:
        return self.to_html()


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.4g}"


def _fmt_share(value: Any) -> str:
    return "–" if value is None else f"{value:.1%}"
