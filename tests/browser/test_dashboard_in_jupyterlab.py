"""The dashboard in a real browser: JupyterLab started by the test, Debian's chromium driven by
Playwright, the dashboard notebook run top to bottom, the widget rendered with its latency
histogram, **Promote** clicked and the ``stable`` label seen moving to the canary version.

Screenshots go to ``tests/browser/screenshots/`` (git-ignored). Skipped, saying why, where
chromium or Playwright is not installed (``.ci/run`` installs both).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..jupyter_process import REPO, JupyterServer, child_env
from . import CHROMIUM, REQUIRES_BROWSER

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
TIMEOUT_MS = 240_000

pytestmark = REQUIRES_BROWSER


def lab_server(tmp_path: Path, notebook: str) -> JupyterServer:
    """JupyterLab with the extension, started, its notebook directory holding a copy of
    ``notebooks/<notebook>``."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "notebooks" / notebook, work / notebook)
    server = JupyterServer(tmp_path / "models", child_env(tmp_path), tmp_path / "lab.log",
                           app="jupyterlab", root_dir=work)
    server.start()
    SCREENSHOTS.mkdir(exist_ok=True)
    return server


@contextmanager
def lab_page(server: JupyterServer, notebook: str) -> Iterator[Any]:
    """A headless chromium page on ``notebook`` in the server's JupyterLab; on failure a
    screenshot goes to ``screenshots/failure-<notebook>.png``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(f"{server.url}/lab/tree/{notebook}?token={server.token}")
            page.locator(".jp-Notebook").first.wait_for()
            yield page
        except BaseException:
            page.screenshot(path=str(SCREENSHOTS / f"failure-{notebook}.png"))
            raise
        finally:
            browser.close()


def run_all_cells(page, until: int) -> None:
    """Run the open notebook top to bottom, until its code cell number ``until`` (0-based;
    -1: the last) has run. JupyterLab may start the session's kernel twice as the page opens
    and drop the cells queued on the first one, and Run All Cells does nothing while it is
    disabled; so the notebook is run again, on a restarted kernel, until that cell has run."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    ran = ("(until) => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
           ".map(e => e.textContent.trim()); const i = until < 0 ? p.length + until : until;"
           " return p.length > i && /^\\[\\d+\\]:$/.test(p[i]); }")
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first
    for attempt in range(4):
        idle.wait_for()
        page.wait_for_timeout(2000)  # let a second kernel start, if one is coming
        idle.wait_for()
        if attempt == 0:
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        else:
            page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
            page.locator(".lm-Menu-itemLabel",
                         has_text="Restart Kernel and Run All Cells").first.click()
            page.locator(".jp-Dialog-button.jp-mod-accept").first.click()
        try:
            page.wait_for_function(ran, arg=until, timeout=150_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"code cell {until} of the notebook never ran")


def test_dashboard_renders_and_promote_moves_the_label(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = lab_server(tmp_path, "dashboard.ipynb")
    try:
        with lab_page(server, "dashboard.ipynb") as page:
            run_all_cells(page, until=-1)

            panel = page.locator(".jp-OutputArea-output",
                                 has=page.locator("button", has_text="Promote")).first
            panel.wait_for()
            no_news = page.locator(".jp-toast-button", has_text="No")
            if no_news.count():
                no_news.first.click()
            image = page.locator("img.widget-image").first
            expect(image).to_be_visible()
            page.wait_for_function(
                "() => [...document.querySelectorAll('img.widget-image')]"
                ".some(i => i.naturalWidth > 100)", timeout=TIMEOUT_MS)
            # traffic shows up: both versions have served requests, v2 carries 'canary'
            table = page.locator(".jupyter-widgets table").first
            expect(table).to_contain_text("canary", timeout=TIMEOUT_MS)
            page.wait_for_timeout(3000)  # a few live refreshes with traffic
            panel.scroll_into_view_if_needed()
            panel.screenshot(path=str(SCREENSHOTS / "dashboard.png"))

            # the canary (v2, or a later one if the notebook had to run again)
            canary = int(page.locator(".jupyter-widgets table tr", has_text="canary").first
                         .get_attribute("data-version"))
            page.locator("button", has_text="Promote").first.click()
            row = page.locator(f'.jupyter-widgets table tr[data-version="{canary}"]').first
            expect(row).to_contain_text("stable", timeout=TIMEOUT_MS)
            expect(page.locator(".jupyter-widgets", has_text="Promoted").first).to_be_visible()
            panel.screenshot(path=str(SCREENSHOTS / "dashboard-promoted.png"))
        # the server agrees with what the page showed
        model = server.get("/tfserving/api/models/dashdemo").json()
        assert model["labels"]["stable"] == canary
    finally:
        server.stop()


def test_quickstart_shows_the_dashboard_updating_while_a_cell_sends_traffic(
        tmp_path: Path) -> None:
    server = lab_server(tmp_path, "quickstart.ipynb")
    requests_cell = ("() => { const td = document.querySelector("
                     "'.jupyter-widgets tr[data-version] td:nth-child(5)');"
                     " return td ? parseInt(td.textContent) : -1; }")
    try:
        with lab_page(server, "quickstart.ipynb") as page:
            run_all_cells(page, until=-2)  # the dashboard; the last cell sends the traffic
            page.wait_for_function(f"({requests_cell})() >= 0", timeout=TIMEOUT_MS)
            # the last cell sends 200 predictions; the panel shows them arrive, live
            seen: list[int] = []
            for _ in range(1000):  # 200 s at most
                count = page.evaluate(requests_cell)
                if not seen or count != seen[-1]:
                    seen.append(count)
                if count >= 200 and len(seen) >= 2:
                    break
                page.wait_for_timeout(200)
            assert len(set(seen)) >= 2 and max(seen) >= 200, seen
            panel = page.locator(".jp-OutputArea-output",
                                 has=page.locator("button", has_text="Promote")).first
            panel.scroll_into_view_if_needed()
            panel.screenshot(path=str(SCREENSHOTS / "quickstart-dashboard.png"))
    finally:
        server.stop()
