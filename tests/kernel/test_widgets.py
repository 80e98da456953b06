"""dashboard(): the ipywidgets panel, checked through its widgets' state (no browser) against
the embedded server (a real ModelService + the extension's handlers on a thread of this
process), with a python-callable model served as v1 and a 25% canary v2."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from html import unescape

import numpy as np
import pytest

from jupyter_tfserving.kernel.client import TFServingClient, TFServingError
from jupyter_tfserving.kernel.serving import serve
from jupyter_tfserving.kernel.widgets import (
    RECENT_REQUESTS_SHOWN,
    Dashboard,
    ModelPanel,
    dashboard,
    logging_html,
    render_shadow_png,
    warmup_text,
)

PNG = b"\x89PNG"


def double(x):
    return np.asarray(x) * 2.0


def triple(x):
    return np.asarray(x) * 3.0


def double_plus_half(x):
    return np.asarray(x) * 2.0 + 0.5


@pytest.fixture
def demo(server) -> TFServingClient:
    """``demo``: v1 stable, v2 a 25% canary, both having answered some requests."""
    serve(double, name="demo", example=np.ones((1, 1)), quiet=True)
    m2 = serve(triple, name="demo", canary=0.25, example=np.ones((1, 1)), quiet=True)
    client = m2.client
    for _ in range(12):
        client.predict("demo", [[1.0]])
    for version in (1, 2):
        for _ in range(3):
            client.predict("demo", [[1.0]], version=version)
    return client


def make(boards: list[Dashboard], *args, **kwargs) -> Dashboard:
    board = dashboard(*args, **kwargs)
    boards.append(board)
    return board


def row(panel: ModelPanel, version: int) -> dict[str, str]:
    """The table row of ``version``, as text by column."""
    match = re.search(rf'<tr data-version="{version}">(.*?)</tr>', panel.table.value)
    assert match, f"no row for v{version} in {panel.table.value}"
    cells = [re.sub(r"<[^>]+>", "", c).replace("■", "").strip()
             for c in re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))]
    keys = ("version", "state", "labels", "in_flight", "requests", "errors", "p50", "p99",
            "recent_p50", "recent_p99", "warmup", "traffic")
    return dict(zip(keys, cells, strict=False))


def text(widget) -> str:
    return re.sub(r"<[^>]+>", "", widget.value)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_the_table_shows_versions_labels_traffic_and_histograms(demo, boards):
    board = make(boards, "demo", start=False)
    assert isinstance(board, Dashboard) and list(board.panels) == ["demo"]
    panel = board.panels["demo"]
    assert panel in board.children
    v1, v2 = row(panel, 1), row(panel, 2)
    assert (v1["state"], v1["labels"], v1["traffic"]) == ("AVAILABLE", "stable", "75%")
    assert (v2["state"], v2["labels"], v2["traffic"]) == ("AVAILABLE", "canary", "25%")
    assert int(v1["requests"]) > 0 and int(v2["requests"]) > 0
    assert v1["errors"] == "0" and v1["in_flight"] == "0"
    assert float(v1["p50"]) > 0 and float(v1["p99"]) >= float(v1["p50"])
    # the last minute's latency beside the one since load; no warmup file for a callable
    assert float(v1["recent_p50"]) > 0 and float(v1["recent_p99"]) >= float(v1["recent_p50"])
    assert v1["warmup"] == "–"
    assert "v1</span> 75%" in panel.header.value and "v2</span> 25%" in panel.header.value
    assert bytes(panel.image.value).startswith(PNG)
    assert [v for _, v in panel.versions.options] == [2, 1] and panel.versions.value == 2
    assert panel.weight.value == 0.25  # follows the server's canary weight
    assert [b.description for b in panel.buttons.values()] == [
        "Promote", "Canary", "Rollback", "Unload"]
    assert board.status.value == ""

    # nothing changed: the same widgets, the same bytes
    table, image, png, html = panel.table, panel.image, bytes(panel.image.value), panel.table.value
    assert board.refresh()
    assert board.panels["demo"] is panel and panel.table is table and panel.image is image
    assert bytes(panel.image.value) == png and panel.table.value == html

    # more traffic: updated in place, the histogram re-rendered
    demo.predict("demo", [[1.0]], version=2)
    board.refresh()
    assert panel.table is table and panel.image is image
    assert bytes(panel.image.value) != png and bytes(panel.image.value).startswith(PNG)
    assert int(row(panel, 2)["requests"]) == int(v2["requests"]) + 1


def test_the_buttons_act_on_the_server_and_show_its_answer(demo, boards):
    board = make(boards, "demo", start=False)
    panel = board.panels["demo"]

    panel.versions.value = 2
    panel.weight.value = 0.5
    panel.buttons["Canary"].click()
    model = demo.model("demo")
    assert model["canary"] == {"version": 2, "weight": 0.5}
    assert model["traffic"] == {"1": 0.5, "2": 0.5}
    assert text(panel.status) == "Canary: v2 takes 50% of traffic (stable is v1)"
    assert row(panel, 2)["traffic"] == "50%" and row(panel, 1)["traffic"] == "50%"

    panel.buttons["Promote"].click()
    model = demo.model("demo")
    assert model["labels"] == {"stable": 2} and model["canary"] is None
    assert text(panel.status) == "Promoted: stable is v2"
    assert row(panel, 2)["labels"] == "stable" and row(panel, 2)["traffic"] == "100%"
    assert row(panel, 1)["labels"] == "" and row(panel, 1)["traffic"] == "0%"

    panel.buttons["Rollback"].click()
    assert demo.model("demo")["labels"] == {"stable": 1}
    assert text(panel.status) == "Rolled back: stable is v1"
    assert (row(panel, 1)["labels"], row(panel, 1)["traffic"]) == ("stable", "100%"), \
        (panel.table.value, text(board.status), demo.model("demo"))

    panel.versions.value = 1
    panel.buttons["Unload"].click()  # the stable version: refused with the server's reason
    assert "carries the label(s) stable" in text(panel.status)
    assert demo.model("demo")["unloaded"] == [] and row(panel, 1)["state"] == "AVAILABLE"

    panel.versions.value = 2
    panel.buttons["Unload"].click()
    model = demo.model("demo")
    assert model["unloaded"] == [2]
    assert text(panel.status).startswith("Unloaded v2")
    assert "(unloaded)" in row(panel, 2)["state"]
    wait_for(lambda: board.refresh() and row(panel, 2)["state"] == "END (unloaded)")

    # Promote on a version that is not AVAILABLE: the server's refusal, shown
    panel.buttons["Promote"].click()
    assert demo.model("demo")["labels"] == {"stable": 1}
    assert "AVAILABLE" in text(panel.status) and not text(panel.status).startswith("Promoted")


def test_an_error_click_shows_the_servers_message(server, boards):
    m = serve(double, name="solo", example=np.ones((1, 1)), quiet=True)
    with pytest.raises(TFServingError) as expected:
        m.client.canary("solo", 0.1, 1)  # what the button will send: nothing to canary against
    board = make(boards, "solo", start=False)
    panel = board.panels["solo"]
    assert panel.versions.value == 1
    panel.buttons["Canary"].click()  # never raises
    assert text(panel.status) == expected.value.message
    assert m.client.model("solo")["canary"] is None
    assert row(panel, 1)["state"] == "AVAILABLE" and row(panel, 1)["labels"] == ""


def test_models_come_and_a_named_model_may_not_exist_yet(server, boards):
    board = make(boards, start=False)
    assert board.panels == {} and "No models" in text(board.status)
    later = make(boards, "later", start=False)
    assert later.panels == {} and "later is not served" in text(later.status)

    serve(double, name="a", example=np.ones((1, 1)), quiet=True)
    board.refresh()
    later.refresh()
    first = board.panels["a"]
    assert text(board.status) == "" and later.panels == {}
    serve(double, name="later", example=np.ones((1, 1)), quiet=True)
    board.refresh()
    later.refresh()
    assert list(board.panels) == ["a", "later"] and board.panels["a"] is first
    assert list(later.panels) == ["later"] and text(later.status) == ""
    assert row(board.panels["later"], 1)["traffic"] == "100%"
    assert bytes(board.panels["a"].image.value).startswith(PNG)  # "no requests yet" is a PNG too


def test_a_server_that_goes_away_is_a_message_and_the_thread_goes_on(demo, server, boards):
    # a stopped embedded server leaves its keep-alive connections open and silent: only
    # timeouts end the calls that land on them
    client = TFServingClient(server.url, server.token, timeout=2)
    board = make(boards, "demo", client=client, interval=0.05)
    board.request_timeout = 0.5
    panel = board.panels["demo"]
    html = panel.table.value
    url = board.client.url
    board.client.url = "http://127.0.0.1:9/tfserving"
    wait_for(lambda: "not reachable" in text(board.status))
    assert board.running and panel.table.value == html  # the last state stays
    board.client.url = url  # back: the message goes
    wait_for(lambda: text(board.status) == "")

    server.stop()
    wait_for(lambda: "not reachable" in text(board.status))
    assert board.refresh() is False  # and no exception
    panel.buttons["Rollback"].click()
    assert "not reachable" in text(panel.status)
    time.sleep(0.2)
    assert board.running and len(threads_named(board.thread_name)) == 1


def test_start_and_close_run_exactly_one_thread(demo, boards):
    board = make(boards, "demo", interval=0.05, start=False)
    assert threads_named(board.thread_name) == []
    board.start()
    board.start()
    assert len(threads_named(board.thread_name)) == 1
    assert threads_named(board.thread_name)[0].daemon
    before = int(row(board.panels["demo"], 1)["requests"])
    demo.predict("demo", [[1.0]], version=1)
    wait_for(lambda: int(row(board.panels["demo"], 1)["requests"]) == before + 1)
    board.stop()
    assert threads_named(board.thread_name) == [] and not board.running
    board._view_count = 1  # a view appearing does not restart a stopped dashboard
    assert not board.running
    board._view_count = 0
    board.start()
    assert len(threads_named(board.thread_name)) == 1
    # the front end reports the views: none left (the cell was re-run) pauses, one resumes
    board._view_count = 1
    assert len(threads_named(board.thread_name)) == 1
    board._view_count = 0
    wait_for(lambda: threads_named(board.thread_name) == [])
    assert not board.running
    board._view_count = 1
    assert board.running and len(threads_named(board.thread_name)) == 1
    board.close()
    assert threads_named(board.thread_name) == []
    board._view_count = 2  # closed: nothing restarts
    assert threads_named(board.thread_name) == [] and not board.running
    assert board.refresh() is False
    with pytest.raises(RuntimeError, match="closed"):
        board.start()


def test_the_magic_and_the_namespace(demo, boards, monkeypatch):
    import IPython.display

    from jupyter_tfserving.kernel.magics import USAGE, register, tfserving_magic

    shown: list[object] = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    tfserving_magic("dashboard demo")
    assert len(shown) == 1 and isinstance(shown[0], Dashboard)
    boards.append(shown[0])
    assert list(shown[0].panels) == ["demo"] and shown[0].running
    assert "%tfserving dashboard [NAME]" in USAGE

    class Shell:
        pushed: dict = {}

        def register_magic_function(self, *args, **kwargs) -> None:
            pass

        def push(self, names: dict) -> None:
            self.pushed.update(names)

    shell = Shell()
    register(shell)
    assert shell.pushed["dashboard"] is dashboard

    import jupyter_tfserving

    assert jupyter_tfserving.dashboard is dashboard


def test_the_module_never_imports_pyplot():
    code = (
        "import sys\n"
        "import importlib\n"
        "d = importlib.import_module('jupyter_tfserving.kernel.widgets')\n"
        "bounds = [10 * 1.8 ** i for i in range(33)]\n"
        "png = d.render_latency_png([(1, 'v1', [0, 3, 5] + [0] * 31),"
        " (2, 'v2', [0, 0, 1, 2] + [0] * 30)], bounds)\n"
        "assert png.startswith(b'\\x89PNG'), png[:8]\n"
        "shadow = d.render_shadow_png({'candidate_version': 2, 'latency_us': {'serving':"
        " {'count': 1, 'p50': 5.0}}, 'outputs': {'y': {'abs_diff_quantiles': {'p50': 0.1}}}})\n"
        "assert shadow.startswith(b'\\x89PNG'), shadow[:8]\n"
        "assert 'matplotlib.figure' in sys.modules\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


class CountingClient(TFServingClient):
    """The real client, counting the paths it calls (the dashboard's REST traffic)."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token)
        self.paths: list[str] = []

    def call(self, method: str, path: str, **kwargs):
        self.paths.append(path)
        return super().call(method, path, **kwargs)


def test_the_warmup_a_version_ran_is_in_its_row(server, boards):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    serve(model, name="warm", example=np.random.rand(5, 4), quiet=True)
    board = make(boards, "warm", start=False)
    warmup = row(board.panels["warm"], 1)["warmup"]
    assert re.fullmatch(r"1 in [0-9.e+-]+ m?s", warmup), warmup


def test_request_logging_and_the_newest_logged_requests(server, boards):
    m = serve(double, name="logged", example=np.ones((1, 2)), quiet=True)
    client = CountingClient(server.url, server.token)
    board = make(boards, "logged", client=client, start=False)
    panel = board.panels["logged"]
    assert text(panel.request_log) == "Request logging: off"
    assert "data-request" not in panel.request_log.value

    m.logging(1.0)
    for i in range(RECENT_REQUESTS_SHOWN + 2):
        m.predict([[float(i), 1.0]])
    board.refresh()
    shown = text(panel.request_log)
    assert shown.startswith("Request logging: 100% of requests → .logs/logged/requests · "
                            f"{RECENT_REQUESTS_SHOWN + 2} logged · 0 dropped · 1 file, "), shown
    rows = re.findall(r'<tr data-request="(\d+)">(.*?)</tr>', panel.request_log.value)
    assert [int(i) for i, _ in rows] == list(range(RECENT_REQUESTS_SHOWN))
    newest = re.sub(r"<[^>]+>", "|", rows[0][1])
    assert "v1" in newest and "predict" in newest and "serving_default" in newest
    assert f"[[{RECENT_REQUESTS_SHOWN + 1}.0,1.0]]" in newest  # the newest first
    assert f"[[{2.0 * (RECENT_REQUESTS_SHOWN + 1)},2.0]]" in newest  # with its answer

    # read again only when more were logged
    reads = client.paths.count("/api/models/logged/requests")
    assert reads == 1
    board.refresh()
    assert client.paths.count("/api/models/logged/requests") == reads
    m.predict([[100.0, 1.0]])
    board.refresh()
    assert client.paths.count("/api/models/logged/requests") == reads + 1
    assert "[[100.0,1.0]]" in re.findall(r'<tr data-request="0">(.*?)</tr>',
                                         panel.request_log.value)[0]

    m.logging(0)
    board.refresh()
    assert text(panel.request_log).startswith("Request logging: off · 8 logged")
    assert "data-request" not in panel.request_log.value
    board.refresh()
    assert client.paths.count("/api/models/logged/requests") == reads + 1  # off: not read


def test_the_shadow_report_with_its_figure(server, boards):
    m1 = serve(double, name="shadowed", example=np.ones((1, 1)), quiet=True)
    m2 = serve(double_plus_half, name="shadowed", canary=0.0, example=np.ones((1, 1)),
               quiet=True)
    board = make(boards, "shadowed", start=False)
    panel = board.panels["shadowed"]
    assert panel.shadow.value == "" and panel.shadow_image.layout.display == "none"

    m2.shadow(1.0)
    for value in (1.0, 2.0, 3.0):
        m1.client.predict("shadowed", [[value]])
    wait_for(lambda: board.refresh() and "3 pairs" in text(panel.shadow))
    shown = text(panel.shadow)
    assert "Shadow traffic" in shown and "version 2 shadowing 100.0%" in shown
    assert "agreement 0.0%" in shown and "running" in shown
    assert "0.5" in shown  # the known difference, in the report's own table
    assert panel.shadow_image.layout.display is None
    png = bytes(panel.shadow_image.value)
    assert png.startswith(PNG)
    board.refresh()
    assert bytes(panel.shadow_image.value) == png  # the same figures: not re-rendered

    m2.shadow(0)
    board.refresh()
    assert "ended (stopped)" in text(panel.shadow)
    m2.promote()
    board.refresh()
    assert "ended (stopped)" in text(panel.shadow) and row(panel, 2)["labels"] == "stable"


def test_the_traffic_views_render_what_the_contract_allows():
    assert warmup_text(None) == "–"
    assert warmup_text({"requests": 3, "seconds": 0.0123}) == "3 in 12.3 ms"
    assert warmup_text({"requests": 1, "seconds": 2.5}) == "1 in 2.5 s"

    status = {"sampling_rate": 0.25, "filename_prefix": "<logs>/x", "logged": 1234,
              "dropped": 2, "bytes": 2_500_000, "files": 2, "error": "disk <full>"}
    record = {"time": 0.0, "version": 3, "method": "predict", "signature_name": "<sig>",
              "inputs": {"x": [list(range(100))]}, "outputs": {"y": [[{"b64": "AA=="}]]}}
    page = logging_html(status, [record], "could not read")
    assert "25% of requests" in page and "&lt;logs&gt;/x" in page and "<logs>" not in page
    assert "1,234 logged · 2 dropped · 2 files, 2.5 MB" in page
    assert "disk &lt;full&gt;" in page and "could not read" in page and "&lt;sig&gt;" in page
    inputs = unescape(re.findall(r"<code>(.*?)</code>", page)[1])
    assert len(inputs) == 60 and inputs.endswith("…")  # a preview, not the tensor
    assert '{"y":[[{"b64":"AA=="}]]}' in page.replace("&quot;", '"')
    assert logging_html({**status, "sampling_rate": 0.0, "logged": 0, "error": None}).endswith(
        "Request logging: off</span>")

    empty = {"model": "m", "candidate_version": 2, "latency_us": {
        "serving": {"count": 0, "p50": None, "p90": None, "p99": None},
        "shadow": {"count": 0, "p50": None, "p90": None, "p99": None}},
        "outputs": {"y": {"abs_diff_quantiles": {"p50": None, "p90": None, "p99": None}}}}
    assert render_shadow_png(empty).startswith(PNG)
    full = {**empty, "latency_us": {
        "serving": {"count": 5, "p50": 100.0, "p90": 150.0, "p99": 300.0},
        "shadow": {"count": 5, "p50": 180.0, "p90": None, "p99": 400.0}},
        "outputs": {"y": {"abs_diff_quantiles": {"p50": 0.5, "p90": 0.5, "p99": 0.5}},
                    "labels": {"abs_diff_quantiles": None}}}
    png = render_shadow_png(full, "#1f77b4")
    assert png.startswith(PNG) and png != render_shadow_png(empty)
