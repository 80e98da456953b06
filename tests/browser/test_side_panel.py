"""The JupyterLab side panel (``labextension/``) in a real browser: JupyterLab started by the
test with the extension, a model with two versions published by the test through the
management API, Debian's chromium driven by Playwright.

One test walks the panel the way a person would (issue 12, section 3):

1. the command palette's "Open TF Serving panel" opens it; it lists the model, both versions
   (AVAILABLE) and the ``stable`` label;
2. while the test sends REST predictions on a thread, the stable version's request count in the
   panel rises, poll after poll;
3. Canary (at a weight typed into the panel), Promote, Rollback and Unload, clicked in the
   panel and confirmed in JupyterLab's dialog, each change the server's state as
   ``GET P/api/models/{m}`` reports it, and the panel says so;
4. an action the server refuses (unloading the version ``stable`` names) shows the server's
   own message inline (``.jp-TFServing-result[data-kind=error]``), and changes nothing;
5. the light and the dark theme render the panel readably; screenshots of both go to
   ``tests/browser/screenshots/side-panel{,-dark}.png``, or with ``JTFS_UPDATE_DOCS=1`` to
   ``docs/`` (the README shows those);
6. bulk jobs started through ``POST P/api/jobs`` on data sets in the server's root_dir show in
   the panel's "Bulk jobs" section (issue 13): one that completes (100%, every row and shard),
   one that fails (its error, naming the file and rows), and a slow one whose progress rises
   with its rows/s and ETA shown; Cancel (confirmed in the dialog) cancels the slow one, keeping
   its complete shards, Resume runs it again, and Remove takes the completed one off the
   server's list;
7. throughout, no uncaught exception in the page and no console error, except the browser's
   own "Failed to load resource" line for the one refused request the test provokes.

A second test shows the traffic tools of issue 14 on a model whose candidate differs from the
stable version by exactly 1 (y = 0.5 x + 2 and y = 0.5 x + 3, exported with TensorFlow):

8. request logging (rate 1.0) and a shadow of the candidate (fraction 1.0) started through
   ``POST P/api/models/{m}:logging`` and ``:shadow``, REST predictions on a thread: the panel
   shows the logging status and the recent requests (time, version, method, inputs and
   outputs), the shadow report (pairs rising, agreement 0%, the output's differences of 1, both
   latencies, the worst pairs with their requests) and each version's latency of the last
   minute; a screenshot goes to ``side-panel-shadow.png`` (``docs/`` with
   ``JTFS_UPDATE_DOCS=1``);
9. "End shadow" and "Off", clicked in the panel (the first confirmed in the dialog), end the
   shadow and logging as the server reports them; "Log" at a typed rate, confirmed, turns logging
   on again; no console error.

The panel is the one built in the tree (``jupyter_tfserving/labextension``, which
``jlpm build:prod`` in ``labextension/`` updates), ahead of the copy an install put under
``sys.prefix``. Skipped, saying why, where chromium, Playwright or JupyterLab is not installed
(``.ci/run`` installs them). On failure a screenshot goes to ``tests/browser/screenshots/``
(git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import requests

from ..jupyter_process import REPO, JupyterServer, child_env
from . import CHROMIUM, REQUIRES_BROWSER

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
# Where the screenshots go: the README's copies in docs/ when JTFS_UPDATE_DOCS=1, else the
# git-ignored screenshots folder (a test run leaves the tree clean).
DOCS = REPO / "docs" if os.environ.get("JTFS_UPDATE_DOCS") == "1" else SCREENSHOTS
# TF Serving's own test model (y = 0.5 x + 2, x: float [-1, 1]) in two versions, beside the
# project; without ../shared the test exports the same model with TensorFlow instead.
TESTDATA = (REPO.parent / "shared" / "testdata" / "tfserving"
            / "saved_model_half_plus_two_2_versions")
MODEL = "half_plus_two"
# The prebuilt extension as the tree holds it (the package's build hook and `jlpm build:prod`).
BUILT = REPO / "jupyter_tfserving" / "labextension"
TIMEOUT_MS = 60_000
# What the panel may take to see a job the test started: its jobs poll while none runs.
JOBS_POLL_MS = 15_000
# Tall enough for the screenshots to hold the jobs and the whole model.
VIEWPORT = {"width": 1280, "height": 960}
# Rows of the slow job's data: at one row per call it runs for minutes, until cancelled.
SLOW_ROWS = 2_000_000
# Tall enough for the shadow report, the logging status and the recent requests.
TRAFFIC_VIEWPORT = {"width": 1280, "height": 1600}

pytestmark = REQUIRES_BROWSER

# ------------------------------------------------------------------------------------------
# The server side: JupyterLab, the model, the traffic
# ------------------------------------------------------------------------------------------


def version_sources(tmp_path: Path) -> list[Path]:
    """Two SavedModel version directories of half_plus_two: TF Serving's test model (versions
    123 and 124) where ../shared has it, else two exported here with TensorFlow."""
    if (TESTDATA / "00000123" / "saved_model.pb").is_file():
        return [TESTDATA / "00000123", TESTDATA / "00000124"]
    from jupyter_tfserving.demo import export_half_plus_two

    base = tmp_path / "exported"
    return [Path(export_half_plus_two(str(base), v)) for v in (1, 2)]


def export_candidate_pair(base: Path) -> list[Path]:
    """Two versions with the same signature whose outputs differ by exactly 1: y = 0.5 x + 2
    (demo's half_plus_two) and y = 0.5 x + 3, exported with TensorFlow."""
    import tensorflow as tf

    from jupyter_tfserving.demo import export_half_plus_two, save_version

    class HalfPlusThree(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": 0.5 * x + 3.0}

    return [Path(export_half_plus_two(str(base / "two"), 1)),
            Path(save_version(HalfPlusThree(), str(base / "three"), 1))]


def quiet_lab_settings(config_dir: Path) -> None:
    """User settings that keep JupyterLab's "news" toast (which asks whether to fetch the
    Jupyter news, over the bottom right corner, where the panel is) from appearing."""
    settings = config_dir / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def use_built_extension(tmp_path: Path, env: dict[str, str]) -> None:
    """Serve the panel from the tree's build: JupyterLab takes the first ``jupyter_tfserving``
    on its labextensions path, and ``JUPYTER_PATH``'s entries come first (before the
    environment's ``share/jupyter``, which a virtual environment prefers to the user's)."""
    if (BUILT / "package.json").is_file():
        path = tmp_path / "jupyter-path"
        (path / "labextensions").mkdir(parents=True)
        (path / "labextensions" / "jupyter_tfserving").symlink_to(BUILT, target_is_directory=True)
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(path), env.get("JUPYTER_PATH")]))


def start_lab(tmp_path: Path) -> JupyterServer:
    """JupyterLab with the extension, started on an empty model repository."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "models").mkdir()
    env = child_env(tmp_path)
    quiet_lab_settings(Path(env["JUPYTER_CONFIG_DIR"]))
    use_built_extension(tmp_path, env)
    server = JupyterServer(tmp_path / "models", env, tmp_path / "lab.log",
                           app="jupyterlab", root_dir=work)
    server.start()
    return server


def api(server: JupyterServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A call to the management API, ``P/api/...``, with the server's token."""
    headers = {"Authorization": f"token {server.token}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{server.url}/tfserving/api/{path}", headers=headers,
                            timeout=60, **kwargs)


def describe(server: JupyterServer) -> dict[str, Any]:
    """``GET P/api/models/{MODEL}``: the server's view of the model."""
    response = api(server, "GET", f"models/{MODEL}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_model(server: JupyterServer, what: str,
                   condition: Callable[[dict[str, Any]], bool],
                   timeout: float = 60) -> dict[str, Any]:
    """Poll ``GET P/api/models/{MODEL}`` until ``condition`` holds; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        model = describe(server)
        if condition(model):
            return model
        if time.monotonic() > deadline:
            raise AssertionError(f"the server never reported {what}: {model}")
        time.sleep(0.2)


def available(model: dict[str, Any]) -> set[int]:
    return {v["version"] for v in model["versions"] if v["state"] == "AVAILABLE"}


def publish_two_versions(server: JupyterServer, sources: list[Path]) -> None:
    """Version 1 published (a packed directory, ``POST P/api/models/m/versions``) and labelled
    ``stable``, then version 2 published beside it: both AVAILABLE (the label keeps v1 loaded
    under the default ``latest(1)`` policy), all unversioned traffic on v1."""
    from jupyter_tfserving.core.archive import pack_directory

    for version, src in enumerate(sources, start=1):
        response = api(server, "POST", f"models/{MODEL}/versions?version={version}",
                       data=pack_directory(str(src)),
                       headers={"Content-Type": "application/gzip"})
        assert response.status_code == 201, response.text
        wait_for_model(server, f"v{version} AVAILABLE", lambda m, v=version: v in available(m))
        if version == 1:
            response = api(server, "PUT", f"models/{MODEL}/labels/stable", json={"version": 1})
            assert response.status_code == 200, response.text
    model = wait_for_model(server, "v1 and v2 AVAILABLE", lambda m: available(m) == {1, 2})
    assert model["labels"] == {"stable": 1} and model["canary"] is None, model


class Traffic:
    """REST predictions on the model's unversioned route, on a thread, about 30 a second,
    until :meth:`stop`. Failures are ignored: the test looks at the panel's counts."""

    def __init__(self, server: JupyterServer) -> None:
        self.url = f"{server.url}/tfserving/v1/models/{MODEL}:predict"
        self.headers = {"Authorization": f"token {server.token}"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="side-panel-traffic",
                                        daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                with suppress(requests.RequestException):
                    session.post(self.url, json={"instances": [[1.0], [3.0]]},
                                 headers=self.headers, timeout=30)
                self._stop.wait(0.03)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def write_datasets(root: Path) -> None:
    """The jobs' data sets under the server's root_dir (``data/``): 20,000 rows of x for a job
    that completes, as many for a slow one, and a CSV whose row 500 is not a number."""
    import numpy as np

    data = root / "data"
    data.mkdir()
    np.save(data / "rows.npy", np.arange(20_000, dtype=np.float32).reshape(-1, 1))
    np.save(data / "slow.npy", np.zeros((SLOW_ROWS, 1), dtype=np.float32))
    (data / "bad.csv").write_text("x\n" + "".join(f"{i}\n" for i in range(500)) + "abc\n")


def start_job(server: JupyterServer, job_id: str, inputs: str, **options: Any) -> dict[str, Any]:
    """``POST P/api/jobs``: a job on the model's unversioned route (its stable version), its
    results under ``out/{job_id}``."""
    response = api(server, "POST", "jobs", json={
        "id": job_id, "model": MODEL, "inputs": inputs, "output": f"out/{job_id}", **options})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_job(server: JupyterServer, job_id: str, states: tuple[str, ...],
                 timeout: float = 60) -> dict[str, Any]:
    """Poll ``GET P/api/jobs/{job_id}`` until its state is one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        response = api(server, "GET", f"jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if job["state"] in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} never reached {states}: {job}")
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------
# The browser side
# ------------------------------------------------------------------------------------------


class PageProblems:
    """Uncaught exceptions (``pageerror``) and console errors of a page.

    One kind of console error is expected and allowed, narrowly: chromium itself logs
    "Failed to load resource: the server responded with a status of 400 (Bad Request)" for any
    fetch answered with an error status, and the test provokes exactly one such answer on
    purpose (the refused unload, whose URL it names in ``allow_failed``). That line is the
    browser's, not the extension's; it is allowed only for that URL. Anything else, network
    lines for other URLs included, fails the test."""

    def __init__(self, page: Any) -> None:
        self.exceptions: list[str] = []
        self.console: list[str] = []
        self.allow_failed: set[str] = set()
        page.on("pageerror", lambda error: self.exceptions.append(str(error)))
        page.on("console", self._on_console)

    def _on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        if (message.text.startswith("Failed to load resource:")
                and url.split("?")[0] in self.allow_failed):
            return
        self.console.append(f"{message.text} ({url})")

    def check(self) -> None:
        assert not self.exceptions, f"uncaught exceptions in the page: {self.exceptions}"
        assert not self.console, f"console errors: {self.console}"


@contextmanager
def lab_page(server: JupyterServer,
             viewport: dict[str, int] = VIEWPORT) -> Iterator[tuple[Any, PageProblems]]:
    """A headless chromium page on the server's JupyterLab, loaded (status bar shown), with
    its problems recorded; on failure a screenshot goes to
    ``screenshots/failure-side-panel.png``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport=viewport)
        page.set_default_timeout(TIMEOUT_MS)
        problems = PageProblems(page)
        try:
            page.goto(f"{server.url}/lab?token={server.token}")
            page.locator("button.jp-TFServing-status").wait_for()
            yield page, problems
        except BaseException:
            SCREENSHOTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "failure-side-panel.png"))
            raise
        finally:
            browser.close()


def run_from_palette(page: Any, label: str) -> None:
    """Run the command labelled ``label`` from JupyterLab's command palette (Ctrl+Shift+C):
    the shortcut pressed again if a busy page missed it, the command run with Enter once the
    palette's active item is it (the palette re-renders its items while it filters)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    palette = page.locator("#modal-command-palette")
    for attempt in range(3):
        page.locator("#jp-main-dock-panel").click(position={"x": 5, "y": 5})
        page.keyboard.press("Control+Shift+C")
        try:
            palette.locator("input").wait_for(state="visible", timeout=10_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    palette.locator("input").fill(label)
    expect(palette.locator(".lm-CommandPalette-item.lm-mod-active")).to_contain_text(label)
    palette.locator("input").press("Enter")
    palette.wait_for(state="hidden")


def open_from_palette(page: Any, panel: Any) -> None:
    """The palette command opens the panel. Run again if the panel is not shown: on a busy
    page JupyterLab's layout restorer can finish after the command and bring back the file
    browser (seen once in CI)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        run_from_palette(page, "Open TF Serving panel")
        try:
            panel.wait_for(state="visible", timeout=10_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def confirm(page: Any, title: str) -> None:
    """Accept JupyterLab's confirmation dialog, after checking it asks about ``title``."""
    from playwright.sync_api import expect

    dialog = page.locator(".jp-Dialog")
    expect(dialog.locator(".jp-Dialog-header")).to_contain_text(title)
    dialog.locator("button.jp-mod-warn").click()
    expect(dialog).to_have_count(0)


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(c) for c in re.findall(r"\d+", css)[:3])


def luminance(css: str) -> float:
    """The relative luminance (0 black, 1 white) of a CSS ``rgb(...)`` colour."""
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb(css))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(panel: Any) -> tuple[float, float]:
    """The luminance of the panel's background and of the model name's text."""
    colours = panel.evaluate(
        "(p) => [getComputedStyle(p).backgroundColor,"
        " getComputedStyle(p.querySelector('.jp-TFServing-modelName')).color]")
    return luminance(colours[0]), luminance(colours[1])


def screenshot_panel(page: Any, panel: Any, path: Path) -> None:
    """The panel's content, with the right sidebar's tab bar and a margin of the page around
    it (not the empty rest of the sidebar below the model)."""
    box = panel.bounding_box()
    content = panel.locator(".jp-TFServing-view").bounding_box()
    assert box is not None and content is not None and box["width"] >= 200, (box, content)
    x = max(0, box["x"] - 24)
    y = max(0, box["y"] - 8)
    bottom = min(box["y"] + box["height"], content["y"] + content["height"]) + 16
    viewport = page.viewport_size
    page.screenshot(path=str(path), clip={
        "x": x, "y": y, "width": viewport["width"] - x,
        "height": min(viewport["height"], bottom) - y})


def widen_sidebar(page: Any, panel: Any, width: int) -> None:
    """Drag the handle between the main area and the right sidebar so the panel is about
    ``width`` pixels wide (its metrics on fewer lines in the screenshots)."""
    box = panel.bounding_box()
    handle = page.evaluate(
        "(x) => { const hs = [...document.querySelectorAll("
        "'#jp-main-split-panel > .lm-SplitPanel-handle')]"
        ".map(h => h.getBoundingClientRect()).filter(r => r.width > 0 && r.height > 0)"
        ".sort((a, b) => Math.abs(a.right - x) - Math.abs(b.right - x));"
        " return hs.length ? {x: hs[0].x + hs[0].width / 2, y: hs[0].y + hs[0].height / 2}"
        " : null; }", box["x"])
    assert handle is not None, "no split handle beside the right sidebar"
    page.mouse.move(handle["x"], handle["y"])
    page.mouse.down()
    page.mouse.move(handle["x"] - (width - box["width"]), handle["y"], steps=5)
    page.mouse.up()
    page.wait_for_function("([p, w]) => p.getBoundingClientRect().width >= w",
                           arg=[panel.element_handle(), width - 20])


def sparkline_points(row: Any) -> int:
    """How many points the version's p50 sparkline draws (all its polylines together)."""
    return row.evaluate(
        "(r) => [...r.querySelectorAll('svg.jp-TFServing-sparkline polyline')]"
        ".map(l => new Set(l.getAttribute('points').trim().split(/\\s+/)).size)"
        ".reduce((a, b) => a + b, 0)")


def progress_shown(row: Any) -> int:
    """The rows done a job row shows (``[data-metric=rows][data-value]``)."""
    return int(row.locator("[data-metric=rows]").get_attribute("data-value") or 0)


def requests_shown(row: Any) -> int:
    """The request count a version row shows (``dd[data-metric=requests][data-value]``)."""
    value = row.locator("dd[data-metric=requests]").get_attribute("data-value")
    return int(float(value)) if value else 0


# ------------------------------------------------------------------------------------------
# The test
# ------------------------------------------------------------------------------------------


def test_side_panel_shows_traffic_and_drives_a_rollout(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = start_lab(tmp_path)
    traffic: Traffic | None = None
    try:
        publish_two_versions(server, version_sources(tmp_path))
        with lab_page(server) as (page, problems):
            # 1. the palette command opens the panel: the model, both versions, the label
            panel = page.locator("#jupyter-tfserving-panel.jp-TFServing")
            open_from_palette(page, panel)
            section = panel.locator(f'section.jp-TFServing-model[data-model="{MODEL}"]')
            v1 = section.locator('li.jp-TFServing-version[data-version="1"]')
            v2 = section.locator('li.jp-TFServing-version[data-version="2"]')
            expect(v1).to_have_attribute("data-state", "AVAILABLE")
            expect(v2).to_have_attribute("data-state", "AVAILABLE")
            expect(v1.locator('[data-label="stable"]')).to_be_visible()
            expect(page.locator("button.jp-TFServing-status")).to_contain_text("1 model")
            widen_sidebar(page, panel, 400)
            result = section.locator(".jp-TFServing-result")

            # 6a. two jobs through the REST API: one completes, one fails (checked below, in
            # the panel, once the traffic of steps 2-5 has stopped)
            write_datasets(tmp_path / "work")
            start_job(server, "scores", "data/rows.npy", batch_size=64, rows_per_shard=2000)
            start_job(server, "csv-import", "data/bad.csv", batch_size=50, rows_per_shard=100)
            jobs = panel.locator("section.jp-TFServing-jobs")
            scores = jobs.locator('li.jp-TFServing-job[data-job="scores"]')
            failed = jobs.locator('li.jp-TFServing-job[data-job="csv-import"]')
            slow = jobs.locator('li.jp-TFServing-job[data-job="slow"]')
            jobs_result = jobs.locator(".jp-TFServing-result")
            assert wait_for_job(server, "scores", ("completed",))["rows_done"] == 20_000
            assert wait_for_job(server, "csv-import", ("failed",))["error"]

            # 2. traffic: v1's request count rises in the panel, poll after poll
            before = requests_shown(v1)
            traffic = Traffic(server).start()
            seen = [before]
            deadline = time.monotonic() + 60
            while len(seen) < 3 and time.monotonic() < deadline:
                page.wait_for_timeout(250)
                count = requests_shown(v1)
                if count > seen[-1]:
                    seen.append(count)
            assert len(seen) >= 3 and seen == sorted(seen), (
                f"v1's request count in the panel did not rise twice: {seen}")

            # 3a. Canary at 30%, typed into the weight field: v2 takes 30% of the traffic
            section.locator("input.jp-TFServing-weight").fill("30%")
            section.locator(".jp-TFServing-modelActions [data-action=canary]").click()
            confirm(page, f"Canary on {MODEL}?")
            expect(result).to_have_attribute("data-kind", "ok")
            expect(result).to_contain_text("Canary at 30%: done")
            model = describe(server)
            assert model["canary"] == {"version": 2, "weight": 0.3}, model
            assert model["labels"] == {"canary": 2, "stable": 1}, model
            expect(v2.locator('[data-label="canary"]')).to_be_visible()
            # the canary serves: its count rises too, and both sparklines have points
            page.wait_for_function(
                "(row) => Number(row.querySelector('dd[data-metric=requests]')"
                ".dataset.value || 0) > 0", arg=v2.element_handle())
            # the p50 charts: a line over several polls for each version (2 s a poll)
            deadline = time.monotonic() + 90
            while sparkline_points(v1) < 12 or sparkline_points(v2) < 6:
                assert time.monotonic() < deadline, (
                    f"the sparklines stayed short: v1 {sparkline_points(v1)} points, "
                    f"v2 {sparkline_points(v2)}")
                page.wait_for_timeout(500)

            # 6b. a slow job (one row a call): the panel shows it running, its rows rising,
            # with its rate and ETA (and so do the screenshots)
            start_job(server, "slow", "data/slow.npy", batch_size=1, rows_per_shard=1000)
            expect(slow).to_have_attribute("data-state", "running", timeout=JOBS_POLL_MS)
            page.wait_for_function(
                "(row) => Number(row.querySelector('[data-metric=rows]').dataset.value) > 0",
                arg=slow.element_handle())
            expect(slow.locator("[data-metric=rate]")).to_have_text(
                re.compile(r"^[\d.]+k? rows/s$"))
            expect(slow.locator("[data-metric=eta]")).to_have_text(re.compile(r"^ETA \d"))

            # 5. light and dark: the panel renders readably in both; the screenshots
            assert page.locator("body").get_attribute("data-jp-theme-light") == "true"
            background, text = contrast(panel)
            assert background > 0.7 and text < 0.2, (background, text)
            DOCS.mkdir(exist_ok=True)
            screenshot_panel(page, panel, DOCS / "side-panel.png")
            run_from_palette(page, "Use Theme: JupyterLab Dark")
            expect(page.locator("body")).to_have_attribute("data-jp-theme-name",
                                                           "JupyterLab Dark")
            expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
            page.wait_for_function(
                "(p) => { const c = getComputedStyle(p).backgroundColor.match(/\\d+/g);"
                " return c && Number(c[0]) + Number(c[1]) + Number(c[2]) < 200; }",
                arg=panel.element_handle())
            background, text = contrast(panel)
            assert background < 0.1 and text > 0.5, (background, text)
            screenshot_panel(page, panel, DOCS / "side-panel-dark.png")
            traffic.stop()

            # 6c. the completed job: 100%, every row and shard; the failed one: its error
            expect(scores).to_have_attribute("data-state", "completed")
            expect(scores.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")
            expect(scores.locator("[data-metric=rows]")).to_have_text("20,000 / 20,000 rows")
            expect(scores.locator("[data-metric=shards]")).to_have_text("10 / 10 shards")
            expect(failed).to_have_attribute("data-state", "failed")
            expect(failed.locator(".jp-TFServing-jobError")).to_contain_text(
                "bad.csv rows 500-501")
            # the slow one's progress rises, poll after poll
            before = progress_shown(slow)
            page.wait_for_function(
                "([row, n]) => Number(row.querySelector('[data-metric=rows]').dataset.value) > n",
                arg=[slow.element_handle(), before])
            # 6d. Cancel, confirmed: the server cancels it, keeping its complete shards
            slow.locator("[data-action=cancel]").click()
            confirm(page, "Cancel job slow?")
            expect(jobs_result).to_have_attribute("data-kind", "ok")
            expect(jobs_result).to_contain_text("Cancel job slow")
            job = wait_for_job(server, "slow", ("cancelled",))
            assert 0 < job["shards_done"] < job["shards_total"], job
            expect(slow).to_have_attribute("data-state", "cancelled")
            # 6e. Resume runs it again (cancelled through the API right after: it is slow)
            slow.locator("[data-action=resume]").click()
            expect(jobs_result).to_contain_text("Resume job slow: done")
            expect(slow).to_have_attribute("data-state", "running")
            assert api(server, "DELETE", "jobs/slow").status_code == 200
            wait_for_job(server, "slow", ("cancelled",))
            expect(slow).to_have_attribute("data-state", "cancelled")
            # 6f. Remove, on the completed job (nothing to lose: no question): the server
            # forgets it, its results stay
            scores.locator("[data-action=remove]").click()
            expect(jobs_result).to_contain_text("Remove job scores: done")
            expect(scores).to_have_count(0)
            assert api(server, "GET", "jobs/scores").status_code == 404
            assert list((tmp_path / "work" / "out" / "scores").glob("part-*.parquet"))

            # 3b. Promote the canary: v2 is stable, v1 the previous stable
            section.locator(".jp-TFServing-modelActions [data-action=promote]").click()
            confirm(page, f"Promote on {MODEL}?")
            expect(result).to_contain_text("Promote the canary: done")
            expect(result).to_have_attribute("data-kind", "ok")
            model = describe(server)
            assert model["labels"] == {"stable": 2} and model["canary"] is None, model
            assert model["previous_stable"] == 1, model
            expect(v2.locator('[data-label="stable"]')).to_be_visible()

            # 3c. Rollback: v1 is stable again
            section.locator(".jp-TFServing-modelActions [data-action=rollback]").click()
            confirm(page, f"Roll back {MODEL}?")
            expect(result).to_contain_text("Rollback: done")
            expect(result).to_have_attribute("data-kind", "ok")
            model = describe(server)
            assert model["labels"] == {"stable": 1} and model["canary"] is None, model
            assert model["previous_stable"] is None, model
            expect(v1.locator('[data-label="stable"]')).to_be_visible()

            # 3d. Unload v2 (no label names it now): the server stops serving it
            v2.locator("[data-action=unload]").click()
            confirm(page, f"Unload v2 of {MODEL}?")
            expect(result).to_contain_text("Unload v2: done")
            expect(result).to_have_attribute("data-kind", "ok")
            model = wait_for_model(server, "v2 unloaded",
                                   lambda m: m["unloaded"] == [2] and 2 not in available(m))
            expect(v2.locator("[data-action=load]")).to_be_visible()

            # 4. refused: unloading v1, which 'stable' names; the server's message, inline
            refused = f"{server.url}/tfserving/api/models/{MODEL}/versions/1:unload"
            problems.allow_failed.add(refused)
            v1.locator("[data-action=unload]").click()
            confirm(page, f"Unload v1 of {MODEL}?")
            expect(result).to_have_attribute("data-kind", "error")
            expect(result).to_contain_text("Unload v1 refused")
            answer = api(server, "POST", f"models/{MODEL}/versions/1:unload")
            assert answer.status_code == 400, answer.text
            expect(result).to_contain_text(answer.json()["error"])
            model = describe(server)
            assert model["unloaded"] == [2] and 1 in available(model), model
            assert model["labels"] == {"stable": 1}, model
            expect(v1.locator("[data-action=unload]")).to_be_enabled()

            # 7. nothing went wrong in the page along the way
            problems.check()
    finally:
        if traffic is not None:
            traffic.stop()
        server.stop()


def test_side_panel_shows_request_logs_and_a_shadow(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = start_lab(tmp_path)
    traffic: Traffic | None = None
    try:
        # 8. v1 (y = 0.5 x + 2) stable, v2 (y = 0.5 x + 3) its candidate; logging and the
        # shadow through the REST API, then traffic on the unversioned route (v1)
        publish_two_versions(server, export_candidate_pair(tmp_path / "exported"))
        response = api(server, "POST", f"models/{MODEL}:logging", json={"sampling_rate": 1.0})
        assert response.status_code == 200, response.text
        response = api(server, "POST", f"models/{MODEL}:shadow",
                       json={"version": 2, "fraction": 1.0})
        assert response.status_code == 200, response.text
        assert response.json()["active"] is True, response.json()
        traffic = Traffic(server).start()
        with lab_page(server, TRAFFIC_VIEWPORT) as (page, problems):
            # the status-bar item ("1 model · R req/s") opens the panel
            page.locator("button.jp-TFServing-status").click()
            panel = page.locator("#jupyter-tfserving-panel.jp-TFServing")
            expect(panel).to_be_visible()
            widen_sidebar(page, panel, 420)
            section = panel.locator(f'section.jp-TFServing-model[data-model="{MODEL}"]')
            v1 = section.locator('li.jp-TFServing-version[data-version="1"]')
            result = section.locator(".jp-TFServing-result")

            # request logging: its status, and the recent requests with their answers
            logging = section.locator(".jp-TFServing-logging")
            expect(logging).to_have_attribute("data-state", "on")
            expect(logging.locator("[data-metric=logging-summary]")).to_have_text(
                "100% of requests")
            page.wait_for_function(
                "(t) => Number(t.querySelector('dd[data-metric=logged]').dataset.value) > 0",
                arg=logging.element_handle())
            rows = logging.locator(".jp-TFServing-requestList > li")
            expect(rows).to_have_count(10)
            first = rows.first
            expect(first).to_have_attribute("data-version", "1")
            expect(first.locator(".jp-TFServing-requestMethod")).to_have_text("predict")
            expect(first.locator("[data-tensors=inputs]")).to_have_text("→ x=[[1], [3]]")
            expect(first.locator("[data-tensors=outputs]")).to_have_text("← y=[[2.5], [3.5]]")
            expect(first.locator(".jp-TFServing-requestTime")).to_have_text(
                re.compile(r"\d:\d\d:\d\d"))

            # the shadow: pairs rising, no agreement, a difference of exactly 1, both latencies
            shadow = section.locator(".jp-TFServing-shadow")
            expect(shadow).to_have_attribute("data-state", "active")
            expect(shadow.locator("[data-metric=shadow-summary]")).to_contain_text(
                "v2 · 100% of the unversioned requests")
            pairs = shadow.locator("dd[data-metric=pairs]")
            page.wait_for_function("(d) => Number(d.dataset.value) >= 5",
                                   arg=pairs.element_handle())
            before = int(pairs.get_attribute("data-value") or 0)
            page.wait_for_function("([d, n]) => Number(d.dataset.value) > n",
                                   arg=[pairs.element_handle(), before])
            expect(shadow.locator("dd[data-metric=agreement]")).to_have_text("0%")
            y = shadow.locator('.jp-TFServing-shadowOutputs tr[data-output="y"]')
            expect(y.locator("[data-metric=max-diff]")).to_have_text("1")
            expect(y.locator("[data-metric=mean-diff]")).to_have_text("1")
            expect(y.locator("[data-metric=diff-p50]")).to_have_text(re.compile(r"^(1|0\.99\d*|1\.0\d*)$"))
            for side in ("serving", "shadow"):
                expect(shadow.locator(
                    f'.jp-TFServing-shadowLatency tr[data-side="{side}"] [data-metric=p50]'
                )).to_have_text(re.compile(r"^[\d.]+ (µs|ms)$"))
            worst = shadow.locator(".jp-TFServing-worstList > li").first
            expect(worst.locator("[data-metric=max-diff]")).to_have_text("max |Δ| 1")
            expect(worst.locator("[data-tensors=request]")).to_have_text("→ x=[[1], [3]]")
            # the report matches the server's
            report = api(server, "GET", f"models/{MODEL}/shadow").json()
            assert report["outputs"]["y"]["max_abs_diff"] == 1.0, report
            assert report["agreement"] == 0.0, report
            # each version's latency of the last minute, beside the since-load one
            expect(v1.locator("dd[data-metric=recent-p50]")).to_have_text(
                re.compile(r"^[\d.]+ (µs|ms)$"))
            expect(v1.locator("dd[data-metric=p50]")).to_have_text(re.compile(r"^[\d.]+ (µs|ms)$"))
            DOCS.mkdir(exist_ok=True)
            screenshot_panel(page, panel, DOCS / "side-panel-shadow.png")
            traffic.stop()

            # 9. End shadow, confirmed: the server ends it; its report stays
            shadow.locator("[data-action=end-shadow]").click()
            confirm(page, f"End the shadow of {MODEL}?")
            expect(result).to_have_attribute("data-kind", "ok")
            expect(result).to_contain_text("End the shadow: done. the shadow of v2 ended after")
            assert api(server, "GET", f"models/{MODEL}/shadow").json()["active"] is False
            expect(shadow).to_have_attribute("data-state", "ended")
            expect(shadow.locator("[data-action=end-shadow]")).to_have_count(0)
            # Off: no question; the server stops logging; the recent requests go
            logging.locator("[data-action=logging-off]").click()
            expect(result).to_contain_text("Logging off: done.")
            expect(logging).to_have_attribute("data-state", "off")
            expect(logging.locator(".jp-TFServing-requests")).to_have_count(0)
            stats = api(server, "GET", "stats").json()
            entry = next(m for m in stats["models"] if m["name"] == MODEL)
            assert entry["logging"] is None or entry["logging"]["sampling_rate"] == 0, entry
            # Log at a typed rate, confirmed: logging is on again
            logging.locator("input.jp-TFServing-loggingRate").fill("25%")
            logging.locator("[data-action=logging]").click()
            confirm(page, f"Log the requests of {MODEL}?")
            expect(result).to_contain_text("Log 25% of requests: done.")
            expect(logging).to_have_attribute("data-state", "on")
            stats = api(server, "GET", "stats").json()
            entry = next(m for m in stats["models"] if m["name"] == MODEL)
            assert entry["logging"]["sampling_rate"] == 0.25, entry
            problems.check()
    finally:
        if traffic is not None:
            traffic.stop()
        server.stop()
