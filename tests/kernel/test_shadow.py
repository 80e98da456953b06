"""m2.shadow() and m2.shadow_report() against the embedded server: a candidate that answers
0.5 more than the serving version, reported exactly, as a dict, a DataFrame and HTML."""

from __future__ import annotations

import time

import numpy as np
import pytest

from jupyter_tfserving.kernel.client import TFServingError
from jupyter_tfserving.kernel.serving import serve
from jupyter_tfserving.kernel.shadow import OUTPUT_COLUMNS, ShadowReport

# One column: an output of more columns would count as class scores, agreeing by argmax.
EXAMPLE = np.ones((1, 1), np.float32)


def double(x):
    return np.asarray(x) * np.float32(2)


def double_plus_half(x):
    return np.asarray(x) * np.float32(2) + np.float32(0.5)


def test_shadow_a_candidate_from_the_notebook(server):
    m1 = serve(double, name="sh", example=EXAMPLE, quiet=True)
    m2 = serve(double_plus_half, name="sh", canary=0.0, example=EXAMPLE, quiet=True)
    with pytest.raises(TFServingError, match="serves the unversioned requests"):
        m1.shadow()
    started = m2.shadow()
    assert started["active"] and started["candidate_version"] == m2.version
    assert started["fraction"] == 1.0

    for rows in ([[1.0]], [[0.25], [-3.0], [8.0]]):
        predictions, _ = m1.client.predict("sh", rows)  # what production clients call
        np.testing.assert_array_equal(predictions, np.float32(rows) * 2)
    deadline = time.monotonic() + 30
    while (report := m2.shadow_report()).pairs < 2:
        assert time.monotonic() < deadline, report.to_dict()
        time.sleep(0.05)

    assert isinstance(report, ShadowReport)
    assert (report.model, report.candidate_version, report.active) == ("sh", 2, True)
    assert report.agreement == 0.0 and report.end_reason is None
    data = report.to_dict()
    (output,) = data["outputs"]
    assert data["outputs"][output]["max_abs_diff"] == 0.5
    assert data["outputs"][output]["mean_abs_diff"] == 0.5
    table = report.table()
    assert list(table.index) == [output] and list(table.columns) == list(OUTPUT_COLUMNS)
    assert table.loc[output, "max_abs_diff"] == 0.5 and table.loc[output, "pairs"] == 2
    assert list(report.latency_table()["count"]) == [2, 2]
    page = report._repr_html_()
    assert "<table>" in page and "2 pairs, agreement 0.0%" in page and output in page

    ended = m2.shadow(0)
    assert not ended["active"] and ended["end_reason"] == "stopped"
    assert not m2.shadow_report().active
