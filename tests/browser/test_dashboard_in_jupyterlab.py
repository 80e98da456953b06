"""The dashboard in a real browser: JupyterLab started by the test, Debian's chromium driven by
Playwright, the dashboard notebook run top to bottom, the widget rendered with its latency
histogram, **Promote** clicked and the ``stable`` label seen moving to the canary version.

Screenshots go to ``tests/browser/screenshots/`` (git-ignored). Skipped, saying why, where
chromium or Playwright is not installed (``.ci/run`` installs both).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from ..jupyter_process import REPO, JupyterServer, child_env

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
TIMEOUT_MS = 240_000

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"no {CHROMIUM} (apt-get install -y chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright is not installed (pip install playwright)"),
    pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None,
                       reason="jupyterlab is not installed"),
]


def test_dashboard_renders_and_promote_moves_the_label(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "notebooks" / "dashboard.ipynb", work / "dashboard.ipynb")
    server = JupyterServer(tmp_path / "models", child_env(tmp_path), tmp_path / "lab.log",
                           app="jupyterlab", root_dir=work)
    server.start()
    SCREENSHOTS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{server.url}/lab/tree/dashboard.ipynb?token={server.token}")
            page.locator(".jp-Notebook").first.wait_for()
            # the kernel is up when the toolbar's status says so
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

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

            page.locator("button", has_text="Promote").first.click()
            row_v2 = page.locator(".jupyter-widgets table tr", has_text="v2").first
            expect(row_v2).to_contain_text("stable", timeout=TIMEOUT_MS)
            expect(page.locator(".jupyter-widgets", has_text="Promoted").first).to_be_visible()
            panel.screenshot(path=str(SCREENSHOTS / "dashboard-promoted.png"))
            browser.close()
        # the server agrees with what the page showed
        model = server.get("/tfserving/api/models/dashdemo").json()
        assert model["labels"]["stable"] == 2
    finally:
        server.stop()
