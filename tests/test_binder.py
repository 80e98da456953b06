"""The binder configuration: an environment mybinder can build, a postBuild that installs the
package (which enables the extension) and a README badge that opens the quick start."""

from __future__ import annotations

import os
import re

import yaml

from .jupyter_process import REPO


def test_environment_and_post_build():
    env = yaml.safe_load((REPO / "binder" / "environment.yml").read_text())
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.startswith("python=3.") for d in deps) and "pip" in deps
    assert any(d.startswith("jupyterlab") for d in deps)
    post = REPO / "binder" / "postBuild"
    assert os.access(post, os.X_OK)
    text = post.read_text()
    assert "pip install" in text and "-e ." in text and "jupyter_tfserving" in text


def test_readme_badge_opens_the_quickstart_notebook():
    readme = (REPO / "README.md").read_text()
    badge = re.search(r"https://mybinder\.org/v2/gh/[^)\s]+", readme)
    assert badge, "no binder badge in the README"
    assert "urlpath=lab/tree/notebooks/quickstart.ipynb" in badge.group(0)
    assert (REPO / "notebooks" / "quickstart.ipynb").is_file()
