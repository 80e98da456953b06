"""Browser tests: a real JupyterLab started by the test, Debian's chromium driven by Playwright.
They are skipped, saying why, where chromium or Playwright is not installed (``.ci/run``
installs both)."""

from __future__ import annotations

import importlib.util
import os

import pytest

CHROMIUM = "/usr/bin/chromium"

# The marks every browser test module carries (its ``pytestmark``).
REQUIRES_BROWSER = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"no {CHROMIUM} (apt-get install -y chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright is not installed (pip install playwright)"),
    pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None,
                       reason="jupyterlab is not installed"),
]
