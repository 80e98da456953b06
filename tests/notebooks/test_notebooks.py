"""The example notebooks run top to bottom (nbclient) in a kernel whose environment points at a
real Jupyter server with the extension, as a kernel started by that server would."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ..jupyter_process import REPO, JupyterServer, child_env

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# the model each notebook serves
SERVES = {"quickstart": "quickstart", "versions_and_canary": "canary_demo",
          "dashboard": "dashdemo", "bulk_and_evaluate": "churn", "shadow_and_logs": "scorer"}
# what a notebook's outputs show besides (text, HTML, widget views), where it matters
SHOWS = {"shadow_and_logs": ("pairs, agreement", "ended (promoted)", "inputs.features",
                             "application/vnd.jupyter.widget-view+json")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("notebooks")
    (tmp / "work").mkdir()
    srv = JupyterServer(tmp / "models", child_env(tmp), tmp / "server.log",
                        root_dir=tmp / "work")
    srv.start()
    yield srv
    srv.stop()


def test_there_are_example_notebooks():
    assert {p.stem for p in NOTEBOOKS} == set(SERVES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_against_the_server(path: Path, server: JupyterServer, monkeypatch):
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    # what the extension sets in the server's environment for the kernels it starts
    monkeypatch.setenv("JUPYTER_TFSERVING_URL", f"{server.url}/tfserving")
    monkeypatch.setenv("JUPYTER_TFSERVING_TOKEN", server.token)
    nb = nbformat.read(path, as_version=4)
    # the notebook's directory is under the server's root_dir, as in JupyterLab (bulk jobs
    # read and write there)
    assert server.root_dir is not None
    directory = server.root_dir / path.stem
    directory.mkdir()
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(directory)}}).execute()
    outputs = "".join(
        out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert "Error" not in outputs and "Traceback" not in outputs, outputs
    # the models were served by the server, not by an embedded fallback in the kernel
    assert "serving from this process" not in outputs
    shown = outputs + "".join(
        str(out.get("data", {}).get("text/html", "")) + " ".join(out.get("data", {}))
        for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))
    for expected in SHOWS.get(path.stem, ()):
        assert expected in shown, (expected, shown)
    models = server.get("/tfserving/api/models").json()["models"]
    assert SERVES[path.stem] in {m["name"] for m in models}
