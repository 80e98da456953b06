"""``P/api/jobs`` and ``P/api/datasets`` on a real server with TensorFlow models: a job's
results equal the model's own; cancel keeps complete shards and resume finishes the same
output; uploaded data sets are checked (no pickle) and usable; bad requests are TF Serving's
error bodies with the right status, and change nothing."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest


@pytest.fixture
def tfserving_config() -> dict:
    return {"enable_batching": True}


async def _wait_job(rest, job_id: str, states=("completed", "failed", "cancelled"),
                    timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, job, _ = await rest.call(f"/api/jobs/{job_id}")
        assert code == 200, job
        if job["state"] in states:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']}")


def _multi_data(root: Path, rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    data = {"a": rng.random((rows, 2)).astype(np.float32),
            "b": rng.integers(-5, 5, rows).astype(np.int32),
            "s": np.array([f"r{i}".encode() for i in range(rows)], dtype=object),
            "id": np.arange(rows) * 10}
    (root / "data").mkdir(exist_ok=True)
    np.savez(root / "data" / "multi.npz", **{k: (v.astype("S") if v.dtype == object else v)
                                             for k, v in data.items()})
    return data


def _read_parquet(directory: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    for part in sorted(directory.glob("part-*.parquet")):
        for name, values in pq.read_table(part).to_pydict().items():
            out.setdefault(name, []).extend(values)
    return out


async def test_a_job_writes_the_model_outputs_with_the_keys(rest, publish, jp_root_dir):
    publish("multi", 1)
    await rest.wait_for("multi", 1)
    data = _multi_data(jp_root_dir, 1000)
    code, job, _ = await rest.call("/api/jobs", {
        "model": "multi", "inputs": "data/multi.npz", "output": "out", "batch_size": 64,
        "rows_per_shard": 300})
    assert code == 201, job
    assert job["version"] == 1 and job["shards_total"] == 4 and job["rows_total"] == 1000
    done = await _wait_job(rest, job["id"])
    assert done["state"] == "completed", done
    assert done["rows_done"] == 1000 and done["error"] is None
    out = _read_parquet(jp_root_dir / "out")
    assert out["id"] == data["id"].tolist()
    np.testing.assert_allclose(out["total"], data["a"].sum(1) + data["b"], rtol=1e-6)
    np.testing.assert_allclose(np.array(out["doubled"]), 2 * data["a"], rtol=1e-6)
    assert out["upper"] == [s.upper() for s in data["s"]]
    code, listing, _ = await rest.call("/api/jobs")
    assert code == 200 and [j["id"] for j in listing["jobs"]] == [job["id"]]


async def test_cancel_keeps_complete_shards_and_resume_finishes_the_same_output(
        rest, publish, jp_root_dir):
    publish("half_plus_two", 1)
    await rest.wait_for("half_plus_two", 1)
    (jp_root_dir / "data").mkdir()
    x = np.arange(40_000, dtype=np.float32).reshape(-1, 1)
    np.save(jp_root_dir / "data" / "x.npy", x)
    code, job, _ = await rest.call("/api/jobs", {
        "id": "slow", "model": "half_plus_two", "inputs": ["data/x.npy"], "output": "halves",
        "batch_size": 1, "rows_per_shard": 2000})
    assert code == 201, job
    while (await rest.call("/api/jobs/slow"))[1]["shards_done"] < 1:
        await asyncio.sleep(0.05)
    code, cancelled, _ = await rest.call("/api/jobs/slow", method="DELETE")
    assert code == 200, cancelled
    stopped = await _wait_job(rest, "slow")
    assert stopped["state"] == "cancelled"
    assert 1 <= stopped["shards_done"] < stopped["shards_total"] == 20
    kept = sorted(p.name for p in (jp_root_dir / "halves").glob("part-*"))
    assert len(kept) == stopped["shards_done"]  # no partial shard left behind
    code, resumed, _ = await rest.call("/api/jobs/slow:resume", method="POST", body="")
    assert code == 200 and resumed["state"] == "running", resumed
    # faster now: the same output at a larger batch would be another spec; the same spec it is
    done = await _wait_job(rest, "slow", timeout=300)
    assert done["state"] == "completed" and done["rows_done"] == 40_000
    out = _read_parquet(jp_root_dir / "halves")
    np.testing.assert_allclose(np.array(out["y"]).reshape(-1), x.reshape(-1) * 0.5 + 2)
    # DELETE on an ended job forgets it; its results stay
    code, _, _ = await rest.call("/api/jobs/slow", method="DELETE")
    assert code == 200
    assert (await rest.call("/api/jobs/slow"))[0] == 404
    assert len(list((jp_root_dir / "halves").glob("part-*.parquet"))) == 20


async def test_an_uploaded_data_set_feeds_a_job(rest, publish, jp_root_dir):
    publish("half_plus_two", 1)
    await rest.wait_for("half_plus_two", 1)
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([[1.0], [2.0], [3.0]], dtype=np.float32), key=np.arange(3))
    code, stored, _ = await rest.call("/api/datasets?format=npz", buffer.getvalue(),
                                      headers={"Content-Type": "application/octet-stream"})
    assert code == 201, stored
    assert stored["rows"] == 3 and sorted(stored["columns"]) == ["key", "x"]
    code, job, _ = await rest.call("/api/jobs", {"model": "half_plus_two",
                                                 "inputs": stored["path"], "output": "up",
                                                 "output_format": "npz"})
    assert code == 201, job
    assert (await _wait_job(rest, job["id"]))["state"] == "completed"
    with np.load(jp_root_dir / "up" / "part-00000.npz") as result:
        np.testing.assert_allclose(result["y"], [[2.5], [3.0], [3.5]])
        assert result["key"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("body, fmt", [
    (b"not a data set", "npz"),
    (b"PAR1 nope", "parquet"),
    (b"x", "csv"),
])
async def test_an_upload_that_is_not_a_data_set_is_refused(rest, body, fmt, model_root):
    code, data, _ = await rest.call(f"/api/datasets?format={fmt}", body)
    assert code == 400, data
    assert set(data) == {"error"}
    datasets = model_root / ".datasets"
    assert not datasets.exists() or list(datasets.iterdir()) == []


async def test_a_pickled_upload_is_refused_unread(rest, model_root):
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([{"a": 1}], dtype=object))  # an object array: pickled
    code, data, _ = await rest.call("/api/datasets?format=npz", buffer.getvalue())
    assert code == 400 and "pickle" in data["error"].lower(), data


@pytest.mark.parametrize("body, status, words", [
    ({"inputs": "x.npy", "output": "o"}, 400, "'model' is required"),
    ({"model": "half_plus_two", "output": "o"}, 400, "'inputs'"),
    ({"model": "half_plus_two", "inputs": "x.npy", "output": "o", "colour": 1}, 400,
     "Unknown member"),
    ({"model": "half_plus_two", "inputs": "x.npy", "output": "o", "batch_size": 0}, 400,
     "batch_size"),
    ({"model": "half_plus_two", "inputs": "x.npy", "output": "o", "output_format": "xls"},
     400, "Unknown output format"),
    ({"model": "half_plus_two", "inputs": "x.npy", "output": "o", "version": 1,
      "label": "stable"}, 400, "not both"),
    ({"model": "half_plus_two", "inputs": "/etc/passwd", "output": "o"}, 403, "outside"),
    ({"model": "half_plus_two", "inputs": "x.npy", "output": "/tmp/elsewhere"}, 403,
     "outside"),
    ({"model": "half_plus_two", "inputs": "../x.npy", "output": "o"}, 403, "outside"),
    # outside the roots, whether anything matches is not told
    ({"model": "half_plus_two", "inputs": "/etc/no-such-*", "output": "o"}, 403, "outside"),
    ({"model": "half_plus_two", "inputs": "/no/such/dir", "output": "o"}, 403, "outside"),
    ({"model": "half_plus_two", "inputs": "missing/*.npy", "output": "o"}, 404, "No data file"),
    ({"model": "nope", "inputs": "x.npy", "output": "o"}, 404, "nope"),
    ({"model": "half_plus_two", "inputs": "x.npy", "output": "o", "signature_name": "zz"},
     400, "zz"),
    ({"model": "half_plus_two", "inputs": "x.npy", "output": "o", "id": "../x"}, 400,
     "Invalid job id"),
])
async def test_bad_job_requests_are_clear_errors(rest, publish, jp_root_dir, body, status,
                                                 words):
    publish("half_plus_two", 1)
    await rest.wait_for("half_plus_two", 1)
    np.save(jp_root_dir / "x.npy", np.ones((3, 1), np.float32))
    code, data, _ = await rest.call("/api/jobs", body)
    assert code == status, data
    assert set(data) == {"error"} and words in data["error"], data
    assert (await rest.call("/api/jobs"))[1] == {"jobs": []}
    assert not (jp_root_dir / "o").exists()


async def test_unknown_jobs_are_404(rest):
    for method, path in [("GET", "/api/jobs/nope"), ("DELETE", "/api/jobs/nope"),
                         ("POST", "/api/jobs/nope:resume")]:
        code, data, _ = await rest.call(path, method=method, body="" if method == "POST" else None)
        assert code == 404 and data == {"error": "No job nope"}, (method, data)
