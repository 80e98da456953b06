"""The jobs of a ModelService across a server restart: stopping the service interrupts the
running job (recorded, complete shards kept); a new service on the same repository lists it as
``interrupted`` and resumes it to the same output; relative paths are the base directory's; an
uploaded data set is kept only when it reads as one."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jupyter_tfserving.batching import BatchingParameters
from jupyter_tfserving.core.servable import SignatureInfo, TensorInfo
from jupyter_tfserving.core.state import ServableState
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.service import JOBS_FILE_NAME, ModelService
from tests.fakes import FakeServable, fake_service


class SlowDouble(FakeServable):
    """y = 2x over [-1, 1] float32 rows, taking ``delay`` seconds per call."""

    delay = 0.0

    def signatures(self):
        return {"serving_default": SignatureInfo({"x": TensorInfo("DT_FLOAT", (-1, 1))},
                                                 {"y": TensorInfo("DT_FLOAT", (-1, 1))})}

    def run(self, signature_name, inputs):
        time.sleep(SlowDouble.delay)
        return {"y": inputs["x"] * 2}


def make_service(tmp_path: Path) -> ModelService:
    return fake_service(tmp_path / "models", SlowDouble,
                        batching=BatchingParameters(max_batch_size=8),
                        job_roots=(str(tmp_path / "work"),))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    np.save(tmp_path / "work" / "x.npy", np.arange(4000, dtype=np.float32).reshape(-1, 1))
    SlowDouble.delay = 0.0
    return tmp_path / "work"


def _wait(service: ModelService, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = service.jobs.get(job_id)
        if job["state"] not in ("pending", "running"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not end")


def test_a_server_restart_leaves_the_job_interrupted_and_resumable(tmp_path, work):
    SlowDouble.delay = 0.002
    service = make_service(tmp_path)
    job = service.jobs.start({"id": "j", "model": "m", "inputs": "x.npy", "output": "out",
                              "batch_size": 8, "rows_per_shard": 400})
    assert job["output"] == str(work / "out")  # relative to the first job root
    while (running := service.jobs.get("j"))["shards_done"] < 2:
        assert running["state"] == "running", running
        time.sleep(0.01)
    service.stop()
    stopped = service.jobs.get("j")
    assert stopped["state"] == "interrupted"
    assert 2 <= stopped["shards_done"] < 10
    assert (tmp_path / "models" / JOBS_FILE_NAME).is_file()

    SlowDouble.delay = 0.0
    again = make_service(tmp_path)
    try:
        (listed,) = again.jobs.list()["jobs"]
        assert listed["id"] == "j" and listed["state"] == "interrupted"
        assert listed["shards_done"] == stopped["shards_done"]
        kept = {p.name: p.stat().st_mtime_ns for p in (work / "out").glob("part-*")}
        assert len(kept) == stopped["shards_done"]
        again.jobs.resume("j")
        done = _wait(again, "j")
        assert done["state"] == "completed" and done["rows_done"] == 4000
        # the shards written before the restart were skipped, not rewritten
        assert all((work / "out" / name).stat().st_mtime_ns == mtime
                   for name, mtime in kept.items())
        y = np.concatenate([pq.read_table(p).column("y").to_numpy(zero_copy_only=False)
                            for p in sorted((work / "out").glob("part-*.parquet"))])
        np.testing.assert_allclose(np.stack(y).reshape(-1), np.arange(4000) * 2)
    finally:
        again.stop()


def test_an_unloaded_version_waits_for_its_job(tmp_path, work):
    SlowDouble.delay = 0.002
    service = make_service(tmp_path)
    try:
        service.jobs.start({"id": "j", "model": "m", "version": 1, "inputs": "x.npy",
                            "output": "out", "batch_size": 8, "rows_per_shard": 1000})
        unloading = threading.Thread(target=service.control.unload_version, args=("m", 1))
        unloading.start()
        time.sleep(0.2)
        # the job holds its handle: the version is still there while it runs
        assert service.manager.refcounts("m").get(1, 0) >= 1
        assert _wait(service, "j")["state"] == "completed"
        unloading.join(30)
        service.manager.wait_for("m", 1, [ServableState.END], 10)
    finally:
        service.stop()


def test_stored_data_sets_are_checked_and_kept_for_jobs(tmp_path, work):
    service = make_service(tmp_path)
    try:
        buffer = io.BytesIO()
        np.savez(buffer, x=np.ones((5, 1), np.float32))
        stored = service.jobs.store_dataset(io.BytesIO(buffer.getvalue()), "npz")
        assert stored["rows"] == 5 and stored["columns"] == ["x"]
        assert Path(stored["path"]).parent == tmp_path / "models" / ".datasets"
        job = service.jobs.start({"model": "m", "inputs": stored["path"], "output": "o"})
        assert _wait(service, job["id"])["state"] == "completed"
        with pytest.raises(ServingError) as bad:
            service.jobs.store_dataset(io.BytesIO(b"PK\x03\x04 nope"), "npz")
        assert bad.value.code is Code.INVALID_ARGUMENT
        assert sorted(p.name for p in (tmp_path / "models" / ".datasets").iterdir()) == [
            Path(stored["path"]).name]
    finally:
        service.stop()
