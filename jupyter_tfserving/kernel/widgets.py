"""``dashboard()``: a live ipywidgets panel of the served models (DESIGN §6).

Per model: a header with the traffic split, a table of its versions (state, labels, in-flight
handles, requests, errors, p50/p99 latency since load and over the last minute, the warmup that
ran before the version was AVAILABLE, traffic share) with the model's last evaluation in this
kernel beside it (``evaluate``), its bulk jobs with their progress, one PNG of the versions'
latency histograms overlaid (matplotlib ``Figure`` + Agg, never pyplot: a notebook's inline
backend must not pick the figures up), the traffic tools (DESIGN §10: the request-logging status
with the newest logged requests, and the shadow report with a PNG of its latency and
difference quantiles), and controls: a version, a canary weight, and the buttons Promote /
Canary / Rollback / Unload.

Where the data comes from: ``GET P/api/models`` (or ``P/api/models/NAME``) for versions,
labels, refcounts and traffic, ``GET P/api/stats`` for requests, errors, latency, warmup, and
each model's logging status and shadow report, ``GET P/api/models/NAME/requests?n=5`` for the
newest logged requests (only while the model's logging is on, and only when its count of
logged requests moved since the last refresh), and ``GET P/api/jobs`` for the bulk jobs, over
REST like every kernel-side call (DESIGN §1).

Threads: :meth:`Dashboard.refresh` runs on the background thread :meth:`Dashboard.start`
starts (one per dashboard, a daemon, stopped by :meth:`Dashboard.stop`, :meth:`Dashboard.close`
or interpreter exit, and paused while a front end that counts views shows it nowhere, e.g. after
its cell was re-run), and on the kernel's thread after a button click or when called directly.
Refreshes serialise on one lock. Widgets are built once and updated in place: the table and the
image are the same objects for the dashboard's life, a panel is added or removed only when the
set of models changes, and the histogram is re-rendered only when its counts (or labels) change.
"""

from __future__ import annotations

import atexit
import html
import io
import itertools
import json
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np

from ..core.status import ServingError
from ..core.validation import check_model_name
from .client import ServerUnavailable, TFServingClient, TFServingError
from .evaluation import last_evaluation
from .serving import ServedModel, find_version
from .shadow import ShadowReport

# matplotlib's tab10: one fixed colour per version number, the same in every dashboard
PALETTE: tuple[str, ...] = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                            "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_STATE_COLOURS = {"AVAILABLE": "#2ca02c", "LOADING": "#ff7f0e", "START": "#ff7f0e",
                  "UNLOADING": "#7f7f7f", "END": "#7f7f7f"}
_DEFAULT_CANARY_WEIGHT = 0.1
# How many of a model's newest logged requests its panel lists, and how much of each tensor.
RECENT_REQUESTS_SHOWN = 5
_PREVIEW_CHARS = 60
_QUANTILES = ("p50", "p90", "p99")
_serial = itertools.count(1)
_live: weakref.WeakSet[Dashboard] = weakref.WeakSet()


def version_colour(version: int) -> str:
    """The colour of ``version`` in tables and histograms (v1 is the palette's first)."""
    return PALETTE[(version - 1) % len(PALETTE)]


def _ms(micros: float | None) -> str:
    return "–" if micros is None else f"{micros / 1000.0:.3g}"


def _share(share: float | None) -> str:
    return "–" if share is None else f"{share:.0%}"


def _duration(seconds: float) -> str:
    return f"{seconds * 1000.0:.3g} ms" if seconds < 1.0 else f"{seconds:.3g} s"


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = n / 1000.0
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000.0
    return f"{value:.1f} GB"


def warmup_text(warmup: Mapping[str, Any] | None) -> str:
    """A version's warmup (``"warmup"`` of its stats entry) for the table: how many requests
    ran and how long they took, or "–" when none ran (no warmup file, or warmup off)."""
    if not warmup:
        return "–"
    return f"{int(warmup['requests'])} in {_duration(float(warmup['seconds']))}"


def _ok_html(text: str) -> str:
    return f'<span style="color:#2ca02c">{html.escape(text)}</span>'


def _error_html(text: str) -> str:
    return f'<span style="color:#d62728">{html.escape(text)}</span>'


def _note_html(text: str) -> str:
    return f'<span style="color:#7f7f7f">{html.escape(text)}</span>'


def bucket_counts(latency: dict[str, Any]) -> tuple[list[float], list[int]]:
    """(finite upper bounds in microseconds, per-bucket counts with the overflow bucket last)
    from the cumulative ``latency_us.buckets`` of ``GET P/api/stats``."""
    bounds: list[float] = []
    counts: list[int] = []
    previous = 0
    for le, cumulative in latency.get("buckets", []):
        if le != "+Inf":
            bounds.append(float(le))
        counts.append(int(cumulative) - previous)
        previous = int(cumulative)
    return bounds, counts


def render_latency_png(series: Sequence[tuple[int, str, Sequence[int]]],
                       bounds_us: Sequence[float]) -> bytes:
    """A PNG of latency histograms overlaid as steps, one per ``(version, legend, counts)``,
    each normalised to its own requests so a 25% canary compares with its stable. ``counts``
    has one entry per bound plus the overflow bucket. Pure: callable from any thread."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.4), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    nonzero = [i for _, _, counts in series for i, n in enumerate(counts) if n]
    if not nonzero or len(bounds_us) < 2:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no requests yet", ha="center", va="center", color="#7f7f7f",
                transform=ax.transAxes)
    else:
        ratio = bounds_us[1] / bounds_us[0]
        edges = np.array([bounds_us[0] / ratio, *bounds_us, bounds_us[-1] * ratio]) / 1000.0
        lo = max(min(nonzero) - 1, 0)
        hi = min(max(nonzero) + 2, len(edges) - 1)
        for version, legend, counts in series:
            total = sum(counts)
            if not total:
                continue
            values = np.asarray(counts[lo:hi], dtype=float) / total
            colour = version_colour(version)
            ax.stairs(values, edges[lo:hi + 1], fill=True, alpha=0.15, color=colour)
            ax.stairs(values, edges[lo:hi + 1], color=colour, linewidth=1.6, label=legend)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("share of requests")
        ax.legend(loc="upper right", fontsize="small", frameon=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def render_shadow_png(report: Mapping[str, Any], serving_colour: str = "#7f7f7f",
                      shadow_colour: str | None = None) -> bytes:
    """A PNG of a shadow report (the ShadowReport JSON): left, the serving version's and the
    candidate's latency quantiles (p50/p90/p99, ms) side by side; right, per output the
    quantiles of the absolute difference between their answers. Pure: callable from any
    thread."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.4), dpi=80)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    x = np.arange(len(_QUANTILES))
    latency = report.get("latency_us") or {}
    candidate = report.get("candidate_version")
    sides = (("serving", "serving", serving_colour),
             ("shadow", f"shadow v{candidate}",
              shadow_colour or version_colour(int(candidate or 1))))
    drawn = False
    for offset, (side, legend, colour) in zip((-0.2, 0.2), sides, strict=True):
        figures = latency.get(side) or {}
        values = [figures.get(q) for q in _QUANTILES]
        if all(v is None for v in values):
            continue
        drawn = True
        left.bar(x + offset, [np.nan if v is None else v / 1000.0 for v in values], width=0.4,
                 color=colour, label=f"{legend} · {figures.get('count', 0)}")
    if drawn:
        left.set_xticks(x, _QUANTILES)
        left.set_ylabel("latency (ms)")
        left.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, fontsize="small",
                   frameon=False)
        left.grid(axis="y", alpha=0.3)
    else:
        _empty_axes(left, "no pairs yet")
    outputs = [(name, [(f.get("abs_diff_quantiles") or {}).get(q) for q in _QUANTILES])
               for name, f in sorted((report.get("outputs") or {}).items())]
    outputs = [(name, values) for name, values in outputs
               if any(v is not None for v in values)]
    if outputs:
        width = 0.8 / len(outputs)
        colours = colormaps["Dark2"]
        for i, (name, values) in enumerate(outputs):
            right.bar(x - 0.4 + width * (i + 0.5),
                      [np.nan if v is None else v for v in values], width=width,
                      color=colours(i % colours.N), label=name)
        right.set_xticks(x, _QUANTILES)
        right.set_ylabel("|serving − shadow|")
        right.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2,
                   fontsize="small", frameon=False)
        right.grid(axis="y", alpha=0.3)
    else:
        _empty_axes(right, "no differences yet")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _empty_axes(ax: Any, message: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", color="#7f7f7f",
            transform=ax.transAxes)


def logging_on(status: Mapping[str, Any] | None) -> bool:
    """Whether a model's logging status (``"logging"`` of its stats entry) samples requests."""
    return status is not None and float(status["sampling_rate"]) > 0


def _preview(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS - 1] + "…"


def logging_html(status: Mapping[str, Any] | None, requests: Sequence[Mapping[str, Any]] = (),
                 error: str | None = None) -> str:
    """A model's request logging as HTML: its status (rate, prefix, logged, dropped, files and
    size, the error that stopped it) and, while it is on, ``requests`` (``GET
    P/api/models/NAME/requests`` records, newest first) as a table, one ``<tr
    data-request="i">`` each with its inputs and outputs cut to a preview; ``error``: why the
    requests could not be read."""
    if status is None:
        return _note_html("Request logging: off")
    counts = (f"{int(status['logged']):,} logged · {int(status['dropped']):,} dropped · "
              f"{int(status['files'])} file{'' if status['files'] == 1 else 's'}, "
              f"{_size(int(status['bytes']))}")
    if logging_on(status):
        line = (f"Request logging: {float(status['sampling_rate']):.0%} of requests → "
                f"<code>{html.escape(str(status['filename_prefix']))}</code> · {counts}")
    else:
        line = "Request logging: off" + (f" · {counts}" if status["logged"] else "")
        line = f'<span style="color:#7f7f7f">{line}</span>'
    parts = [line]
    for problem in (status.get("error"), error):
        if problem:
            parts.append(_error_html(problem))
    if logging_on(status) and requests:
        cell = 'style="padding:2px 8px;text-align:left"'
        rows = ["<tr>" + "".join(f"<th {cell}>{h}</th>" for h in (
            "time", "version", "method", "signature", "inputs", "outputs")) + "</tr>"]
        for i, record in enumerate(requests):
            version = int(record["version"])
            values = (
                time.strftime("%H:%M:%S", time.localtime(float(record["time"]))),
                f'<span style="color:{version_colour(version)}">v{version}</span>',
                html.escape(str(record["method"])),
                html.escape(str(record["signature_name"])),
                *(f"<code>{html.escape(_preview(record[side]))}</code>"
                  for side in ("inputs", "outputs")),
            )
            rows.append(f'<tr data-request="{i}">'
                        + "".join(f"<td {cell}>{v}</td>" for v in values) + "</tr>")
        parts.append("<small>Newest logged requests</small>"
                     '<table style="border-collapse:collapse">' + "".join(rows) + "</table>")
    return "<br>".join(parts)


class ModelPanel(widgets.VBox):
    """One model's part of a :class:`Dashboard`: ``header``, ``table`` (HTML, one
    ``<tr data-version="N">`` per version), ``image`` (the histogram PNG), ``versions``
    (Dropdown), ``weight`` (FloatSlider), ``buttons`` (by description), ``status`` (the
    last action's answer or error), ``request_log`` (HTML: :func:`logging_html`), ``shadow``
    (HTML: the shadow report's own, empty when the model never had a shadow) and
    ``shadow_image`` (:func:`render_shadow_png`, hidden without a shadow). Created and updated
    by its dashboard under its lock; the buttons' handlers run on the kernel's thread."""

    def __init__(self, client: TFServingClient, name: str,
                 after_action: Callable[[], None]) -> None:
        self.client = client
        self.name = name
        self._after_action = after_action
        self._image_key: Any = None
        self._shadow_key: Any = None
        self._seen_canary: Any = None
        self.header = widgets.HTML()
        self.table = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.versions = widgets.Dropdown(description="Version", options=[],
                                         layout=widgets.Layout(width="180px"))
        self.weight = widgets.FloatSlider(value=_DEFAULT_CANARY_WEIGHT, min=0.0, max=1.0,
                                          step=0.05, description="Canary weight",
                                          readout_format=".2f")
        self.buttons: dict[str, widgets.Button] = {}
        for label, style, tip, action in (
                ("Promote", "success", "Make the chosen version stable", self.promote),
                ("Canary", "info", "Send the weight of traffic to the chosen version",
                 self.canary),
                ("Rollback", "warning", "End the canary, or put the previous stable back",
                 self.rollback),
                ("Unload", "danger", "Stop serving the chosen version", self.unload)):
            button = widgets.Button(description=label, button_style=style, tooltip=tip,
                                    layout=widgets.Layout(width="90px"))
            button.on_click(lambda _b, act=action: self._run(act))
            self.buttons[label] = button
        self.status = widgets.HTML()
        self.evaluation = widgets.HTML(layout=widgets.Layout(margin="0 0 0 24px"))
        self.jobs = widgets.HTML()
        self.request_log = widgets.HTML()
        self.shadow = widgets.HTML()
        # at its own size (a column would stretch it), hidden until the model has a shadow
        self.shadow_image = widgets.Image(
            format="png", layout=widgets.Layout(display="none", align_self="flex-start"))
        controls = widgets.HBox([self.versions, self.weight, *self.buttons.values()])
        super().__init__([self.header, widgets.HBox([self.table, self.evaluation]), controls,
                          self.status, self.jobs, self.image, self.request_log, self.shadow,
                          self.shadow_image],
                         layout=widgets.Layout(margin="0 0 12px 0"))

    # ------------------------------------------------------------------ actions

    def _selected(self) -> int:
        if self.versions.value is None:
            raise ValueError("Choose a version first")
        return int(self.versions.value)

    def promote(self) -> str:
        """As ``ServedModel.promote``: canary the chosen version at weight 0 unless it is the
        canary already, then promote it."""
        version = self._selected()
        result = ServedModel(self.client, self.name, version).promote()
        return f"Promoted: stable is v{result['labels'].get('stable', version)}"

    def canary(self) -> str:
        version = self._selected()
        weight = round(float(self.weight.value), 4)
        result = self.client.canary(self.name, weight, version)
        stable = result["labels"].get("stable")
        return f"Canary: v{version} takes {weight:.0%} of traffic (stable is v{stable})"

    def rollback(self) -> str:
        result = self.client.rollback(self.name)
        return f"Rolled back: stable is v{result['labels'].get('stable')}"

    def unload(self) -> str:
        version = self._selected()
        result = self.client.unload(self.name, version)
        entry = find_version(result, version)
        return f"Unloaded v{version} (now {entry['state'] if entry else 'END'})"

    def _run(self, action: Callable[[], str]) -> None:
        """A click: show the server's answer or error, then refresh; never raises."""
        try:
            self.status.value = _ok_html(action())
        except TFServingError as exc:
            self.status.value = _error_html(exc.message)
        except Exception as exc:  # a click must not put a traceback in the log
            self.status.value = _error_html(str(exc) or type(exc).__name__)
        self._after_action()

    # ------------------------------------------------------------------ updates

    def update(self, model: dict[str, Any], stats: dict[int, dict[str, Any]],
               jobs: Sequence[dict[str, Any]] = (), *,
               logging: Mapping[str, Any] | None = None,
               shadow: Mapping[str, Any] | None = None,
               requests: Sequence[Mapping[str, Any]] = (),
               requests_error: str | None = None) -> None:
        """Show ``model`` (its ``GET P/api/models/NAME`` JSON), ``stats`` (version -> its
        ``GET P/api/stats`` entry), the model's bulk ``jobs`` (``GET P/api/jobs`` entries), its
        ``logging`` status and ``shadow`` report (its ``GET P/api/stats`` entry's), its newest
        logged ``requests`` (or ``requests_error``: why they could not be read) and its last
        evaluation in this kernel. Only what changed is sent to the front end."""
        traffic = {int(v): share for v, share in (model.get("traffic") or {}).items()}
        split = " · ".join(
            f'<span style="color:{version_colour(v)}">v{v}</span> {_share(s)}'
            for v, s in sorted(traffic.items())) or "none"
        _set(self.header, f'<b style="font-size:1.1em">{html.escape(self.name)}</b>'
                          f'&nbsp;&nbsp;traffic: {split}')
        _set(self.table, self._table_html(model, stats, traffic))
        evaluation = last_evaluation(self.name)
        _set(self.evaluation, "" if evaluation is None else
             "<small>Last evaluation</small>" + evaluation.to_html())
        _set(self.jobs, jobs_html(jobs))
        _set(self.request_log, logging_html(logging, requests, requests_error))
        _set(self.shadow, "" if shadow is None else
             "<small>Shadow traffic</small>" + ShadowReport(shadow).to_html())
        self._update_controls(model)
        self._update_image(model, stats)
        self._update_shadow_image(traffic, shadow)

    @staticmethod
    def _table_html(model: dict[str, Any], stats: dict[int, dict[str, Any]],
                    traffic: dict[int, float]) -> str:
        head = ("version", "state", "labels", "in flight", "requests", "errors", "p50 ms",
                "p99 ms", "1 min p50", "1 min p99", "warmup", "traffic")
        cell = 'style="padding:2px 10px;text-align:{}"'
        rows = ["<tr>" + "".join(f'<th {cell.format("left" if i < 3 else "right")}>{h}</th>'
                                 for i, h in enumerate(head)) + "</tr>"]
        for entry in model.get("versions", []):
            version = int(entry["version"])
            st = stats.get(version, {})
            latency = st.get("latency_us") or {}
            recent = st.get("recent_latency_us") or {}
            state = entry["state"] + (" (unloaded)" if entry.get("unloaded") else "")
            error = entry.get("error_message") or ""
            values = (
                f'<span style="color:{version_colour(version)}">■</span> v{version}',
                f'<span style="color:{_STATE_COLOURS.get(entry["state"], "inherit")}" '
                f'title="{html.escape(error)}">{html.escape(state)}</span>',
                html.escape(", ".join(entry.get("labels", []))),
                str(entry.get("in_flight", 0)),
                str(st.get("request_count", 0)),
                str(st.get("error_count", 0)),
                _ms(latency.get("p50")),
                _ms(latency.get("p99")),
                _ms(recent.get("p50")),
                _ms(recent.get("p99")),
                warmup_text(st.get("warmup", entry.get("warmup"))),
                _share(traffic.get(version, 0.0)),
            )
            rows.append(f'<tr data-version="{version}">' + "".join(
                f'<td {cell.format("left" if i < 3 else "right")}>{v}</td>'
                for i, v in enumerate(values)) + "</tr>")
        return '<table style="border-collapse:collapse">' + "".join(rows) + "</table>"

    def _update_controls(self, model: dict[str, Any]) -> None:
        versions = [int(v["version"]) for v in model.get("versions", [])]
        options = [(f"v{v}", v) for v in versions]
        if list(self.versions.options) != options:
            chosen = self.versions.value
            canary = (model.get("canary") or {}).get("version")
            self.versions.options = options
            if chosen in versions:
                self.versions.value = chosen
            elif versions:
                self.versions.value = canary if canary in versions else versions[0]
        # follow the server's canary weight when it changes there, not the user's dragging
        canary_state = model.get("canary")
        if canary_state != self._seen_canary:
            self._seen_canary = canary_state
            if canary_state:
                self.weight.value = float(canary_state["weight"])

    def _update_image(self, model: dict[str, Any], stats: dict[int, dict[str, Any]]) -> None:
        bounds: list[float] = []
        series = []
        for entry in sorted(model.get("versions", []), key=lambda e: e["version"]):
            version = int(entry["version"])
            latency = stats.get(version, {}).get("latency_us")
            if not latency:
                continue
            version_bounds, counts = bucket_counts(latency)
            bounds = bounds or version_bounds
            labels = " ".join(entry.get("labels", []))
            legend = f"v{version} {labels} · {sum(counts)} req".replace("  ", " ")
            series.append((version, legend, tuple(counts)))
        key = (tuple(series), tuple(bounds))
        if key != self._image_key:
            self.image.value = render_latency_png(series, bounds)
            self._image_key = key

    def _update_shadow_image(self, traffic: dict[int, float],
                             shadow: Mapping[str, Any] | None) -> None:
        """Re-render the shadow figure when its figures change; hide it without a shadow."""
        if shadow is None:
            self.shadow_image.layout.display = "none"
            self._shadow_key = None
            return
        candidate = int(shadow["candidate_version"])
        # the serving version: the one with the largest share of the unversioned requests
        serving = max(traffic, key=traffic.__getitem__) if traffic else None
        serving_colour = (version_colour(serving) if serving is not None and serving != candidate
                          else "#7f7f7f")
        figures = {"latency_us": shadow.get("latency_us"), "candidate_version": candidate,
                   "outputs": {name: {"abs_diff_quantiles": f.get("abs_diff_quantiles")}
                               for name, f in (shadow.get("outputs") or {}).items()}}
        key = (json.dumps(figures, sort_keys=True), serving_colour)
        if key != self._shadow_key:
            self.shadow_image.value = render_shadow_png(figures, serving_colour)
            self._shadow_key = key
        self.shadow_image.layout.display = None

    def close(self) -> None:
        for child in (self.header, self.table, self.image, self.versions, self.weight,
                      *self.buttons.values(), self.status, self.evaluation, self.jobs,
                      self.request_log, self.shadow, self.shadow_image, *self.children):
            child.close()
        super().close()


# How many ended jobs a model's panel lists (the running ones are always listed).
ENDED_JOBS_SHOWN = 3


def jobs_html(jobs: Sequence[dict[str, Any]]) -> str:
    """A model's bulk jobs as HTML: every running one with a progress bar, rows per second and
    ETA, then the last few that ended (with the error of a failed one). Empty without jobs."""
    running = [j for j in jobs if j["state"] in ("pending", "running")]
    ended = [j for j in jobs if j["state"] not in ("pending", "running")][-ENDED_JOBS_SHOWN:]
    rows = []
    for job in [*running, *reversed(ended)]:
        total, done = int(job.get("rows_total") or 0), int(job.get("rows_done") or 0)
        share = done / total if total else (1.0 if job["state"] == "completed" else 0.0)
        rate, eta = job.get("rows_per_second"), job.get("eta_seconds")
        detail = f"{done:,}/{total:,} rows"
        if job["state"] == "running" and rate:
            detail += f" · {rate:,.0f} rows/s" + (f" · ETA {eta:,.0f} s" if eta else "")
        if job.get("error"):
            detail += f' · <span style="color:#d62728">{html.escape(job["error"])}</span>'
        rows.append(
            f'<tr data-job="{html.escape(job["id"])}"><td style="padding:2px 8px">'
            f'job {html.escape(job["id"])} v{job["version"]}</td>'
            f'<td style="padding:2px 8px">{html.escape(job["state"])}</td>'
            f'<td style="padding:2px 8px"><progress max="1" value="{share:.4f}"></progress>'
            f'</td><td style="padding:2px 8px">{detail}</td></tr>')
    if not rows:
        return ""
    return '<table style="border-collapse:collapse">' + "".join(rows) + "</table>"


def _set(widget: widgets.HTML, value: str) -> None:
    if widget.value != value:
        widget.value = value


class Dashboard(widgets.VBox):
    """The live panel :func:`dashboard` returns: ``status`` (top-level messages: a server that
    went away, a model not served yet), then one :class:`ModelPanel` per model in ``panels``.

    :meth:`refresh` fetches and shows the server's state (any thread; never raises for a
    server error; each REST call gives up after ``request_timeout`` seconds). :meth:`start` /
    :meth:`stop` run / end the one background thread (``thread_name``) that refreshes every
    ``interval`` seconds; :meth:`close` stops it too."""

    def __init__(self, client: TFServingClient, name: str | None = None, *,
                 interval: float = 1.0, request_timeout: float = 10.0) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if name is not None:
            try:
                check_model_name(name)
            except ServingError as exc:
                raise ValueError(exc.message) from None
        self.client = client
        self.name = name
        self.interval = float(interval)
        # a refresh gives up sooner than the client's own (upload-sized) timeout: a server
        # that hangs must not freeze the panel, or a click waiting for the refresh lock
        self.request_timeout = float(request_timeout)
        self.thread_name = f"tfserving-dashboard-{next(_serial)}"
        self.panels: dict[str, ModelPanel] = {}
        self.status = widgets.HTML()
        self._title = widgets.HTML(
            f"<b>jupyter_tfserving</b> <small>{html.escape(client.url)}</small>")
        self._lock = threading.RLock()  # one refresh at a time
        # model -> (its logging status when its requests were read, those requests)
        self._requests: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self._thread_lock = threading.Lock()  # start/stop of the live thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wanted = False
        self._closed = False
        # _view_count=0 asks the front end to report how many views show the dashboard
        super().__init__([self._title, self.status], _view_count=0)
        self.observe(self._on_view_count, names="_view_count")
        _live.add(self)

    # ------------------------------------------------------------------ data

    def refresh(self) -> bool:
        """Fetch the models and stats and update the widgets in place. True when the server
        answered; on a server error (ServerUnavailable included) the message goes to
        ``status`` and the last state stays shown. Blocks for the REST calls."""
        with self._lock:
            if self._closed:
                return False
            timeout = min(self.client.timeout, self.request_timeout)
            try:
                if self.name is None:
                    models = self.client.call("GET", "/api/models", timeout=timeout)["models"]
                else:
                    try:
                        models = [self.client.call("GET", f"/api/models/{self.name}",
                                                   timeout=timeout)]
                    except TFServingError as exc:
                        if exc.status != 404:
                            raise
                        models = []
                stats = self.client.call("GET", "/api/stats", timeout=timeout)
                jobs = self.client.call("GET", "/api/jobs", timeout=timeout)["jobs"]
                shown = {model["name"] for model in models}
                for gone in set(self._requests) - shown:
                    del self._requests[gone]
                logged = {m["name"]: self._logged_requests(m["name"], m.get("logging"), timeout)
                          for m in stats.get("models", []) if m["name"] in shown}
            except TFServingError as exc:
                _set(self.status, _error_html(
                    f"{exc.message} (showing the last state; retrying)"))
                return False
            self._show(models, stats, jobs, logged)
            return True

    def _logged_requests(self, name: str, logging: Mapping[str, Any] | None,
                         timeout: float) -> tuple[list[dict[str, Any]], str | None]:
        """Model ``name``'s newest logged requests and the error that kept them from being
        read: none while its logging is off; read again only when its logging status (its
        count of logged requests) changed since they were read. ServerUnavailable goes up."""
        if not logging_on(logging):
            self._requests.pop(name, None)
            return [], None
        key = json.dumps(logging, sort_keys=True)
        seen = self._requests.get(name)
        if seen is not None and seen[0] == key:
            return seen[1], None
        try:
            records = self.client.call("GET", f"/api/models/{name}/requests",
                                       params={"n": RECENT_REQUESTS_SHOWN},
                                       timeout=timeout)["requests"]
        except ServerUnavailable:
            raise
        except TFServingError as exc:  # e.g. the model went away meanwhile: try next time
            self._requests.pop(name, None)
            return [], exc.message
        self._requests[name] = (key, records)
        return records, None

    def _show(self, models: list[dict[str, Any]], stats: dict[str, Any],
              jobs: Sequence[dict[str, Any]] = (),
              logged: Mapping[str, tuple[list[dict[str, Any]], str | None]] | None = None
              ) -> None:
        by_version = {m["name"]: {int(v["version"]): v for v in m.get("versions", [])}
                      for m in stats.get("models", [])}
        traffic = {m["name"]: m for m in stats.get("models", [])}
        names = [m["name"] for m in models]
        if set(names) != set(self.panels):
            for gone in set(self.panels) - set(names):
                self.panels.pop(gone).close()
            for new in names:
                if new not in self.panels:
                    self.panels[new] = ModelPanel(self.client, new, self._refresh_quietly)
            self.children = [self._title, self.status, *(self.panels[n] for n in names)]
        for model in models:
            name = model["name"]
            requests, requests_error = (logged or {}).get(name, ([], None))
            self.panels[name].update(
                model, by_version.get(name, {}), [j for j in jobs if j["model"] == name],
                logging=traffic.get(name, {}).get("logging"),
                shadow=traffic.get(name, {}).get("shadow"),
                requests=requests, requests_error=requests_error)
        if not models:
            waiting = f"Model {self.name} is not served (yet)." if self.name else \
                "No models are served yet: serve() one."
            _set(self.status, _note_html(waiting))
        else:
            _set(self.status, "")

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # a bug here must not kill a click handler or the thread
            _set(self.status, _error_html(f"Dashboard error: {type(exc).__name__}: {exc}"))

    # ------------------------------------------------------------------ the live thread

    @property
    def running(self) -> bool:
        """True while the live thread refreshes (started, not stopped or paused)."""
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        """Refresh every ``interval`` seconds on a daemon thread until :meth:`stop` or
        :meth:`close` (a no-op while it runs; RuntimeError once closed). Any thread."""
        if self._closed:
            raise RuntimeError("This dashboard is closed")
        self._wanted = True
        self._run_thread()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the live thread; waits up to ``timeout`` s for a refresh in progress."""
        self._wanted = False
        self._halt(timeout)

    def _run_thread(self) -> None:
        with self._thread_lock:
            thread = self._thread
            if thread is not None and thread.is_alive():
                if not self._stop.is_set():
                    return
                thread.join(self.request_timeout + 1)  # one thread at a time, always
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._loop, args=(self._stop,),
                                            name=self.thread_name, daemon=True)
            self._thread.start()

    def _halt(self, timeout: float) -> None:
        with self._thread_lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and timeout > 0 and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self._refresh_quietly()

    def _on_view_count(self, change: dict[str, Any]) -> None:
        """The front end counts this widget's views (comm messages, the kernel's thread):
        refresh only while one shows, so a re-run cell leaves no thread behind."""
        if self._closed:
            return
        if change["new"]:
            if self._wanted:
                self._run_thread()
        else:
            self._halt(0)

    def close(self) -> None:
        """Stop refreshing and close every widget of the dashboard."""
        self.stop()
        with self._lock:
            self._closed = True
            for panel in self.panels.values():
                panel.close()
            self.panels.clear()
            self._title.close()
            self.status.close()
        _live.discard(self)
        super().close()


def dashboard(name: str | None = None, *, client: TFServingClient | None = None,
              interval: float = 1.0, start: bool = True) -> Dashboard:
    """A live :class:`Dashboard` of every model (or only ``name``) of ``client``'s server
    (default: ``connect()``, as ``serve()`` finds it). It shows the state at once, then, with
    ``start``, refreshes itself every ``interval`` seconds until closed. Display it (it is
    the last expression of a cell, or ``IPython.display.display``)."""
    if client is None:
        from .serving import connect

        client = connect()
    board = Dashboard(client, name, interval=interval)
    board.refresh()
    if start:
        board.start()
    return board


@atexit.register
def _stop_all() -> None:
    for board in list(_live):
        board._halt(0)
