"""DESIGN §7's import arrows: the core, the data plane, the control plane, the jobs and the
traffic tools know nothing of tornado, Jupyter's server or TensorFlow (a fresh interpreter
imports them and looks)."""

from __future__ import annotations

import json
import subprocess
import sys

TRANSPORT_FREE = [
    "jupyter_tfserving.core.admission",
    "jupyter_tfserving.core.manager",
    "jupyter_tfserving.core.routing",
    "jupyter_tfserving.core.source",
    "jupyter_tfserving.core.validation",
    "jupyter_tfserving.core.defaults",
    "jupyter_tfserving.core.archive",
    "jupyter_tfserving.dataplane",
    "jupyter_tfserving.control_plane",
    "jupyter_tfserving.service",
    "jupyter_tfserving.core.signature_inputs",
    "jupyter_tfserving.jobs.sources",
    "jupyter_tfserving.jobs.sinks",
    "jupyter_tfserving.jobs.runner",
    "jupyter_tfserving.jobs.evaluation",
    "jupyter_tfserving.traffic",
    "jupyter_tfserving.traffic.request_log",
]
FORBIDDEN = ("tornado", "jupyter_server", "tensorflow")


def test_core_and_both_planes_import_no_transport_and_no_tensorflow():
    code = (
        "import importlib, json, sys\n"
        f"for name in {TRANSPORT_FREE!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
