"""A bulk job on a real service (manager, scheduler's bulk lane, data plane) with a servable
written here: its outputs equal the model's own, shard by shard with the input's keys; a
resumed job redoes only the shards the manifest does not list; bad specs and bad data fail
clearly, naming the file and rows; the version stays pinned while the job runs; named keys;
ended jobs forgotten. (TFRecord input, classify and regress: test_tfrecord.py.)"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from jupyter_tfserving.batching import BatchingParameters
from jupyter_tfserving.core.servable import SignatureInfo, TensorInfo
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.jobs.runner import JobRunner, JobSpec, JobState
from tests.fakes import FakeServable, fake_service

WAIT = 30.0


class Affine(FakeServable):
    """y = 2x + 1 over [-1, 3] float32 rows; counts the rows it ran."""

    rows = 0
    lock = threading.Lock()

    def signatures(self):
        return {"serving_default": SignatureInfo({"x": TensorInfo("DT_FLOAT", (-1, 3))},
                                                 {"y": TensorInfo("DT_FLOAT", (-1, 3))})}

    def run(self, signature_name, inputs):
        with Affine.lock:
            Affine.rows += len(inputs["x"])
        assert inputs["x"].dtype == np.float32
        return {"y": inputs["x"] * 2 + 1}


@pytest.fixture
def runner(tmp_path: Path):
    service = fake_service(tmp_path / "models", Affine,
                           batching=BatchingParameters(max_batch_size=64))
    yield service, JobRunner(service.dataplane, service.manager, [str(tmp_path / "data")])
    service.stop()


def _data(tmp_path: Path, rows: int = 100) -> np.ndarray:
    (tmp_path / "data").mkdir(exist_ok=True)
    x = np.random.default_rng(1).random((rows, 3))  # float64: the job casts to the signature's
    np.savez(tmp_path / "data" / "in.npz", x=x, id=np.arange(rows))
    return x


def _outputs(directory: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    tables = [pq.read_table(p).to_pydict() for p in sorted(directory.glob("part-*.parquet"))]
    return {k: np.array([v for t in tables for v in t[k]]) for k in tables[0]}


def test_a_job_writes_the_models_outputs_with_the_keys(runner, tmp_path: Path) -> None:
    service, jobs = runner
    x = _data(tmp_path)
    spec = JobSpec("m", (str(tmp_path / "data" / "in.npz"),), str(tmp_path / "data" / "out"),
                   batch_size=16, rows_per_shard=30)
    job = jobs.start("j1", spec)
    assert job.wait(WAIT) and job.state is JobState.COMPLETED, job.error
    out = _outputs(tmp_path / "data" / "out")
    assert out["id"].tolist() == list(range(100))
    assert np.allclose(out["y"], x.astype(np.float32) * 2 + 1)
    report = job.to_json()
    assert (report["rows_done"], report["rows_total"], report["shards_done"]) == (100, 100, 4)
    assert report["version"] == 1 and report["rows_per_second"] > 0
    assert service.in_flight().get(("m", 1), 0) == 0  # the pinned handle is released
    assert {s.key[-1] for s in service.scheduler.queue_stats()} == {"bulk"}


def test_resume_redoes_only_missing_shards(runner, tmp_path: Path) -> None:
    service, jobs = runner
    _data(tmp_path)
    out_dir = tmp_path / "data" / "out"
    spec = JobSpec("m", (str(tmp_path / "data" / "in.npz"),), str(out_dir), batch_size=16,
                   rows_per_shard=30)
    first = jobs.start("j", spec)
    assert first.wait(WAIT) and first.state is JobState.COMPLETED
    before = _outputs(out_dir)
    os.remove(out_dir / "part-00002.parquet")
    Affine.rows = 0
    again = jobs.start("j", spec)
    assert again.wait(WAIT) and again.state is JobState.COMPLETED, again.error
    assert Affine.rows == 30  # shard 2 only
    after = _outputs(out_dir)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # Another job's spec on that output directory is refused.
    other = JobSpec("m", spec.inputs, str(out_dir), rows_per_shard=50)
    with pytest.raises(ServingError) as refused:
        jobs.start("k", other)
    assert refused.value.code == Code.FAILED_PRECONDITION


def test_bad_specs_and_bad_data(runner, tmp_path: Path) -> None:
    service, jobs = runner
    _data(tmp_path)
    data = tmp_path / "data"
    with pytest.raises(ServingError) as outside:
        jobs.start("a", JobSpec("m", (str(data / "in.npz"),), str(tmp_path / "elsewhere")))
    assert outside.value.code == Code.PERMISSION_DENIED
    assert not (tmp_path / "elsewhere").exists()
    with pytest.raises(ServingError) as unknown:
        jobs.start("b", JobSpec("nope", (str(data / "in.npz"),), str(data / "o")))
    assert unknown.value.code == Code.NOT_FOUND
    np.savez(data / "wrong.npz", z=np.zeros((5, 3)))
    job = jobs.start("c", JobSpec("m", (str(data / "wrong.npz"),), str(data / "o2")))
    assert job.wait(WAIT) and job.state is JobState.FAILED
    assert "wrong.npz rows 0-5: no column x" in job.error
    assert service.in_flight().get(("m", 1), 0) == 0


def test_a_stopped_server_leaves_jobs_interrupted_and_resumable(runner, tmp_path: Path) -> None:
    """``stop()`` (the server stopping) ends a running job as ``interrupted``; a runner made
    on the same state file (the server started again) lists it so, and ``resume`` finishes it,
    redoing no complete shard, with the same outputs as an uninterrupted job."""
    service, _ = runner
    x = _data(tmp_path, rows=200)
    state = str(tmp_path / "jobs.json")
    gate = threading.Event()
    original = Affine.run

    def slow(self, signature_name, inputs):
        gate.wait(WAIT)
        return original(self, signature_name, inputs)

    roots = [str(tmp_path / "data")]
    jobs = JobRunner(service.dataplane, service.manager, roots, state_file=state)
    spec = JobSpec("m", (str(tmp_path / "data" / "in.npz"),), str(tmp_path / "data" / "out"),
                   batch_size=10, rows_per_shard=20)
    Affine.run = slow  # type: ignore[method-assign]
    try:
        job = jobs.start("j", spec)
        gate.set()  # let shards through, then stop the runner midway
        while job.progress.shards_done < 2:
            assert job._thread is not None and job._thread.is_alive(), job.error
            time.sleep(0.001)
        gate.clear()
        stopper = threading.Thread(target=jobs.stop, args=(WAIT,))
        stopper.start()
        gate.set()
        stopper.join(WAIT)
    finally:
        Affine.run = original  # type: ignore[method-assign]
    assert job.state is JobState.INTERRUPTED, job.error
    done_before = job.progress.shards_done
    assert 2 <= done_before < 10
    again = JobRunner(service.dataplane, service.manager, roots, state_file=state)
    (listed,) = again.jobs()
    assert listed.state is JobState.INTERRUPTED and listed.progress.shards_done == done_before
    Affine.rows = 0
    resumed = again.resume("j")
    assert resumed.wait(WAIT) and resumed.state is JobState.COMPLETED, resumed.error
    assert Affine.rows == 200 - 20 * done_before  # complete shards are not done again
    out = _outputs(tmp_path / "data" / "out")
    assert out["id"].tolist() == list(range(200))
    assert np.allclose(out["y"], x.astype(np.float32) * 2 + 1)
    assert JobRunner(service.dataplane, service.manager, roots,
                     state_file=state).get("j").state is JobState.COMPLETED


def test_keys_named_are_the_only_ones_carried(runner, tmp_path: Path) -> None:
    """With ``keys``, only those columns go with the outputs (a missing one fails naming the
    file and rows); without, every 1-D column that is not an input does."""
    service, jobs = runner
    data = tmp_path / "data"
    data.mkdir()
    x = np.random.default_rng(2).random((40, 3))
    np.savez(data / "in.npz", x=x, id=np.arange(40), other=np.arange(40) * 2)
    spec = JobSpec("m", (str(data / "in.npz"),), str(data / "all"), rows_per_shard=25)
    job = jobs.start("all", spec)
    assert job.wait(WAIT) and job.state is JobState.COMPLETED, job.error
    assert set(_outputs(data / "all")) == {"id", "other", "y"}
    job = jobs.start("one", JobSpec("m", spec.inputs, str(data / "one"), rows_per_shard=25,
                                    keys=("id",)))
    assert job.wait(WAIT) and job.state is JobState.COMPLETED, job.error
    out = _outputs(data / "one")
    assert set(out) == {"id", "y"} and out["id"].tolist() == list(range(40))
    assert job.to_json()["keys"] == ["id"] and job.to_json()["method"] == "predict"
    job = jobs.start("gone", JobSpec("m", spec.inputs, str(data / "gone"), rows_per_shard=25,
                                     keys=("id", "nope")))
    assert job.wait(WAIT) and job.state is JobState.FAILED
    assert "in.npz rows 0-25: no key column nope (the data's: x, id, other)" in job.error
    # Other keys on the same output directory are another job's results.
    with pytest.raises(ServingError) as refused:
        jobs.start("other", JobSpec("m", spec.inputs, str(data / "one"), rows_per_shard=25))
    assert refused.value.code == Code.FAILED_PRECONDITION


def test_forget_takes_ended_jobs_off_the_list(runner, tmp_path: Path) -> None:
    """An ended job is forgotten (the state file too; its results stay); a running one is
    FAILED_PRECONDITION; ``created_at`` is recorded, and a resumed job keeps it."""
    service, _ = runner
    _data(tmp_path)
    state = tmp_path / "jobs.json"
    jobs = JobRunner(service.dataplane, service.manager, [str(tmp_path / "data")],
                     state_file=str(state))
    gate = threading.Event()
    original = Affine.run

    def held(self, signature_name, inputs):
        gate.wait(WAIT)
        return original(self, signature_name, inputs)

    before = time.time()
    spec = JobSpec("m", (str(tmp_path / "data" / "in.npz"),), str(tmp_path / "data" / "out"),
                   batch_size=50)
    Affine.run = held  # type: ignore[method-assign]
    try:
        running = jobs.start("a", spec)
        with pytest.raises(ServingError) as busy:
            jobs.forget("a")
        assert busy.value.code == Code.FAILED_PRECONDITION
        gate.set()
        assert running.wait(WAIT) and running.state is JobState.COMPLETED, running.error
    finally:
        Affine.run = original  # type: ignore[method-assign]
    created = running.created_at
    assert before <= created <= time.time() and running.to_json()["created_at"] == created
    assert JobRunner(service.dataplane, service.manager, [str(tmp_path / "data")],
                     state_file=str(state)).get("a").created_at == created
    resumed = jobs.resume("a")
    assert resumed.wait(WAIT) and resumed.created_at == created
    second = jobs.start("b", JobSpec("m", spec.inputs, str(tmp_path / "data" / "b")))
    assert second.wait(WAIT) and second.created_at >= created
    assert jobs.forget("a") is resumed
    assert [j.id for j in jobs.jobs()] == ["b"]
    assert [r["id"] for r in json.loads(state.read_text())] == ["b"]
    assert (tmp_path / "data" / "out" / "part-00000.parquet").exists()  # results stay
    with pytest.raises(ServingError) as gone:
        jobs.forget("a")
    assert gone.value.code == Code.NOT_FOUND


def test_a_shard_of_more_calls_than_the_queue_holds_waits_for_room(runner,
                                                                   tmp_path: Path) -> None:
    """A shard of 20 calls, each a batch of its own, in a bulk queue of 10 batches: the job
    waits for room instead of failing UNAVAILABLE."""
    service, jobs = runner
    x = _data(tmp_path, rows=1000)
    spec = JobSpec("m", (str(tmp_path / "data" / "in.npz"),), str(tmp_path / "data" / "out"),
                   batch_size=50, rows_per_shard=1000)
    job = jobs.start("j", spec)
    assert job.wait(WAIT) and job.state is JobState.COMPLETED, job.error
    assert np.allclose(_outputs(tmp_path / "data" / "out")["y"], x.astype(np.float32) * 2 + 1)
