"""Bulk jobs and evaluation from the notebook side, against a real embedded server: results
equal the model's own for in-memory data and files; a job outlives the process that started it;
a failing job raises with the server's words; ``evaluate`` gives the metrics a direct
computation gives, its figure and table, and the dashboard shows it with the jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from jupyter_tfserving.kernel import bulk_predict, dashboard, evaluate, jobs, serve
from jupyter_tfserving.kernel.bulk import JobFailed
from jupyter_tfserving.kernel.evaluation import last_evaluation


def double(x):
    return np.asarray(x) * 2.0


def shifted(x):
    return np.asarray(x) * 2.0 + 0.5


@pytest.fixture
def here(isolated: Path, monkeypatch, request) -> Path:
    """The notebook's directory, then the embedded server, which lets jobs use the kernel's
    working directory when it starts."""
    monkeypatch.chdir(isolated)
    request.getfixturevalue("server")
    return isolated


def test_predict_dataset_on_an_array_returns_the_models_outputs(here, capsys):
    m = serve(double, name="dbl", example=np.ones((1, 3)), quiet=True)
    x = np.random.default_rng(0).random((500, 3))
    job = m.predict_dataset(x, batch_size=64)
    assert job.state == "completed" and job.info["rows_done"] == 500
    frame = job.result()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["output_0"]
    np.testing.assert_allclose(np.stack(frame["output_0"]), x * 2)
    arrays = job.result(as_frame=False)
    np.testing.assert_allclose(arrays["output_0"], x * 2)
    assert "rows" in capsys.readouterr().err  # the tqdm bar


def test_bulk_predict_on_a_parquet_file_keeps_the_key_columns(here):
    serve(double, name="dbl", example=np.ones((1, 2)), quiet=True)
    x = np.random.default_rng(1).random((300, 2))
    frame = pd.DataFrame({"x": list(x), "id": np.arange(300) + 7})
    (here / "input").mkdir()
    frame.to_parquet(here / "input" / "in.parquet")
    job = bulk_predict("dbl", "input/in.parquet", "out", rows_per_shard=100, progress=False)
    assert job.info["shards_total"] == 3 and job.output == str(here / "out")
    result = job.result()
    assert result["id"].tolist() == list(range(7, 307))
    np.testing.assert_allclose(np.stack(result["output_0"]), x * 2)
    assert sorted(p.name for p in (here / "out").iterdir())[-1] == "part-00002.parquet"


def test_a_dataframe_and_a_dict_are_sent_along(here):
    serve(double, name="dbl", example=np.ones((1, 1)), quiet=True)
    frame = pd.DataFrame({"x": [[1.0], [2.0]], "name": ["a", "b"]})
    result = bulk_predict("dbl", frame, progress=False).result()
    assert result["name"].tolist() == [b"a", b"b"]
    np.testing.assert_allclose(np.stack(result["output_0"]), [[2.0], [4.0]])
    result = bulk_predict("dbl", {"x": np.array([[3.0]]), "tag": np.array(["z"])},
                          progress=False).result(as_frame=False)
    assert result["tag"].tolist() == [b"z"]
    np.testing.assert_allclose(result["output_0"], [[6.0]])
    with pytest.raises(TypeError, match="neither strings nor bytes"):
        bulk_predict("dbl", {"x": np.array([{"a": 1}], dtype=object)}, progress=False)


def test_a_failing_job_raises_with_the_file_and_rows(here):
    serve(double, name="dbl", example=np.ones((1, 1)), quiet=True)
    np.savez(here / "bad.npz", y=np.ones((4, 1)))
    with pytest.raises(JobFailed, match=r"bad\.npz rows 0-4.*no column x"):
        bulk_predict("dbl", "bad.npz", progress=False)


def test_a_job_outlives_the_process_that_started_it(here, server):
    serve(double, name="dbl", example=np.ones((1, 1)), quiet=True)
    np.save(here / "x.npy", np.arange(20_000, dtype=np.float64).reshape(-1, 1))
    script = textwrap.dedent("""
        from jupyter_tfserving.kernel import bulk_predict
        job = bulk_predict("dbl", "x.npy", "outlived", batch_size=8, rows_per_shard=2000,
                           wait=False, job_id="outlived")
        print(job.state)
    """)
    env = {**os.environ, "JUPYTER_TFSERVING_URL": server.url,
           "JUPYTER_TFSERVING_TOKEN": server.token}
    out = subprocess.run([sys.executable, "-c", script], cwd=here, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("running", "completed")
    # the "kernel" is gone; the job is the server's
    (job,) = [j for j in jobs() if j.id == "outlived"]
    job.wait(timeout=120, progress=False)
    np.testing.assert_allclose(job.result(as_frame=False)["output_0"].reshape(-1),
                               np.arange(20_000) * 2)


def test_evaluate_gives_the_metrics_a_direct_computation_gives(here, boards):
    serve(double, name="cmp", example=np.ones((1, 1)), quiet=True)
    serve(shifted, name="cmp", canary=0.2, example=np.ones((1, 1)), quiet=True)
    rng = np.random.default_rng(2)
    x = rng.random((400, 1))
    y = x * 2 + rng.normal(0, 0.1, (400, 1))
    result = evaluate("cmp", x, y, version_labels=["stable", "canary"], progress=False)
    assert result.versions == [1, 2]
    for version, fn in ((1, double), (2, shifted)):
        predictions = fn(x)
        assert result.metrics[f"v{version}"]["mse"] == pytest.approx(
            np.mean((predictions - y) ** 2))
        assert result.metrics[f"v{version}"]["mae"] == pytest.approx(
            np.mean(np.abs(predictions - y)))
    assert result.best("mse") == 1
    assert all(d == pytest.approx(0.5) for _, d in result.comparison.disagreements)
    table = result.table()
    assert list(table.index) == ["v1 (stable)", "v2 (canary)"]
    assert list(table.columns) == ["mse", "mae"]
    assert isinstance(result.figure(), Figure)
    assert "<table>" in result._repr_html_()
    assert last_evaluation("cmp") is result
    board = dashboard("cmp", start=False)
    boards.append(board)
    panel = board.panels["cmp"]
    assert "Last evaluation" in panel.evaluation.value and "v2 (canary)" in \
        panel.evaluation.value
    assert panel.jobs.value.count("data-job=") == 2 and "completed" in panel.jobs.value


def test_evaluate_takes_the_labels_from_a_column_and_custom_metrics(here):
    serve(double, name="cls", example=np.ones((1, 1)), quiet=True)
    serve(shifted, name="cls", example=np.ones((1, 1)), quiet=True)
    x = np.linspace(0, 0.5, 50).reshape(-1, 1)
    frame = pd.DataFrame({"x": list(x), "truth": (x[:, 0] > 0.25).astype(np.int64)})

    def within_one(labels, predictions):
        return float(np.mean(np.abs(predictions.reshape(-1) - labels) < 1))

    result = evaluate("cls", frame, "truth", metrics=["accuracy", within_one],
                      progress=False)
    truth = frame["truth"].to_numpy()
    for version, fn in ((1, double), (2, shifted)):
        predictions = fn(x).reshape(-1)
        assert result.metrics[f"v{version}"]["accuracy"] == pytest.approx(
            np.mean((predictions >= 0.5) == truth))
        assert result.metrics[f"v{version}"]["within_one"] == pytest.approx(
            np.mean(np.abs(predictions - truth) < 1))
    with pytest.raises(ValueError, match="Unknown metric"):
        evaluate("cls", frame, "truth", metrics=["nope"], progress=False)
    with pytest.raises(ValueError, match="no label"):
        evaluate("cls", frame, "truth", version_labels=["canary"], progress=False)


def test_one_argument_moves_a_job_to_beam(here, exported_models):
    pytest.importorskip("apache_beam", reason="the beam extra is not installed "
                        "(pip install jupyter_tfserving[beam])")
    serve(str(exported_models / "half_plus_two" / "1"), name="hp", quiet=True)
    x = np.linspace(-1, 1, 300, dtype=np.float32).reshape(-1, 1)
    np.savez(here / "x.npz", x=x, id=np.arange(300))
    on_server = bulk_predict("hp", "x.npz", "server-out", rows_per_shard=128, progress=False)
    on_beam = bulk_predict("hp", "x.npz", "beam-out", rows_per_shard=128, engine="beam")
    assert on_beam.state == "completed" and on_beam.info["rows_done"] == 300
    assert sorted(p.name for p in (here / "beam-out").iterdir()) == \
        sorted(p.name for p in (here / "server-out").iterdir())
    pd.testing.assert_frame_equal(on_beam.result(), on_server.result())
    np.testing.assert_allclose(np.stack(on_beam.result()["y"]), x * 0.5 + 2)
