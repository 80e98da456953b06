"""The Beam engine for bulk jobs (``jupyter_tfserving.jobs.beam``, the ``beam`` extra): on
DirectRunner, the same job writes the same files as the server's JobRunner (npz and Parquet in,
several shards and files, Parquet and npz out, the signature chosen); an output directory is
interchangeable between the engines (Beam resumes the server's, skipping its shards); versions
resolve from disk as the server routes them (policy, labels, unloaded and pinned versions,
``stable``); a missing model or signature fails before anything runs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

beam = pytest.importorskip(
    "apache_beam", reason="the beam extra is not installed (pip install jupyter_tfserving[beam])")

from jupyter_tfserving.batching import BatchingParameters  # noqa: E402
from jupyter_tfserving.core.state import ServableState  # noqa: E402
from jupyter_tfserving.core.status import Code, ServingError  # noqa: E402
from jupyter_tfserving.jobs import beam as beam_jobs  # noqa: E402
from jupyter_tfserving.jobs.beam import (  # noqa: E402
    RepositoryModelHandler,
    build_job_pipeline,
    resolve_version,
    run_job_on_beam,
)
from jupyter_tfserving.jobs.runner import JobRunner, JobSpec, JobState  # noqa: E402
from jupyter_tfserving.service import ModelService, ServiceOptions  # noqa: E402

WAIT = 60.0


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root with ``m/1``: a SavedModel with two signatures over the same inputs (a
    float [-1, 2], b int32 [-1], s string [-1]): ``serving_default`` (total = sum(a) + b,
    upper = upper(s)) and ``scaled`` (scaled = 10 a, length = len(s) + b); and ``parse``,
    whose one input takes serialized tf.Examples (y = 3 x). Row by row arithmetic only, so
    results do not depend on how rows are batched."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("repository")
    spec = [tf.TensorSpec([None, 2], tf.float32, name="a"),
            tf.TensorSpec([None], tf.int32, name="b"),
            tf.TensorSpec([None], tf.string, name="s")]

    class Two(tf.Module):
        @tf.function(input_signature=spec)
        def serve(self, a: tf.Tensor, b: tf.Tensor, s: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"total": tf.reduce_sum(a, axis=1) + tf.cast(b, tf.float32),
                    "upper": tf.strings.upper(s)}

        @tf.function(input_signature=spec)
        def scaled(self, a: tf.Tensor, b: tf.Tensor, s: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"scaled": a * 10.0, "length": tf.strings.length(s) + b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def parse(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([2], tf.float32)})
            return {"y": x["x"] * 3.0}

    module = Two()
    tf.saved_model.save(module, str(root / "m" / "1"), signatures={
        "serving_default": module.serve, "scaled": module.scaled, "parse": module.parse})
    return root


@pytest.fixture(scope="module")
def service(repository: Path) -> Iterator[ModelService]:
    service = ModelService(ServiceOptions(
        model_root=str(repository), file_system_poll_wait_seconds=0,
        batching=BatchingParameters(max_batch_size=64)))
    service.start()
    service.manager.wait_for("m", 1, [ServableState.AVAILABLE], WAIT)
    yield service
    service.stop()


def _data(directory: Path) -> None:
    """The same 50 rows as two npz files (30 + 20 rows), two Parquet files (row groups of
    7) and two TFRecord files of tf.Example (x: a's values, id); ``id`` and ``name`` are keys,
    ``extra`` (2-D) is neither key nor input."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    rng = np.random.default_rng(3)
    a = rng.normal(size=(50, 2))  # float64: cast to the signature's float32
    b = rng.integers(0, 100, 50)  # int64: cast to int32
    s = np.array([f"row {i}".encode() * (1 + i % 3) for i in range(50)])
    ids = np.arange(1000, 1050)
    for name, rows in (("first", slice(0, 30)), ("second", slice(30, 50))):
        (directory / "npz").mkdir(parents=True, exist_ok=True)
        np.savez(directory / "npz" / f"{name}.npz", a=a[rows], b=b[rows], s=s[rows],
                 id=ids[rows], extra=a[rows] * 2)
        (directory / "parquet").mkdir(exist_ok=True)
        table = pa.table({
            "id": pa.array(ids[rows]),
            "a": pa.FixedSizeListArray.from_arrays(pa.array(a[rows].reshape(-1)), 2),
            "b": pa.array(b[rows]),
            "s": pa.array([v.decode() for v in s[rows]]),
            "name": pa.array([f"n{i}" for i in ids[rows]]),
        })
        pq.write_table(table, directory / "parquet" / f"{name}.parquet", row_group_size=7)
        (directory / "tfrecord").mkdir(exist_ok=True)
        with tf.io.TFRecordWriter(str(directory / "tfrecord" / f"{name}.tfrecord")) as writer:
            for x, i in zip(a[rows], ids[rows], strict=True):
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=x)),
                    "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
                })).SerializeToString())


def _server_job(service: ModelService, spec: JobSpec, roots: list[str]) -> None:
    job = JobRunner(service.dataplane, service.manager, roots).start("job", spec)
    assert job.wait(WAIT) and job.state is JobState.COMPLETED, job.error


def _assert_same_outputs(server: Path, beam_dir: Path) -> None:
    """Same files, the same manifest, and per shard the same columns (names, order, types)
    and values, or the same PredictionLogs."""
    import pyarrow.parquet as pq
    import tensorflow as tf
    from tensorflow_serving.apis.prediction_log_pb2 import PredictionLog

    names = sorted(os.listdir(server))
    assert names == sorted(os.listdir(beam_dir))
    assert json.loads((server / "manifest.json").read_text()) == \
        json.loads((beam_dir / "manifest.json").read_text())
    for name in names:
        if name.endswith(".parquet"):
            ours, theirs = pq.read_table(server / name), pq.read_table(beam_dir / name)
            assert ours.schema == theirs.schema, name
            assert ours.equals(theirs), name
        elif name.endswith(".npz"):
            # String columns are object arrays, which npz holds pickled: these files are ours.
            with np.load(server / name, allow_pickle=False) as ours, \
                    np.load(beam_dir / name, allow_pickle=False) as theirs:
                assert ours.files == theirs.files, name
                for column in ours.files:
                    assert ours[column].dtype == theirs[column].dtype, (name, column)
                    assert np.array_equal(ours[column], theirs[column]), (name, column)
        elif name.endswith(".tfrecord"):
            logs = [[PredictionLog.FromString(r.numpy())
                     for r in tf.data.TFRecordDataset(str(d / name))] for d in (server, beam_dir)]
            assert len(logs[0]) > 0 and logs[0] == logs[1], name


@pytest.mark.parametrize(("data", "output_format", "signature", "keys"), [
    ("npz", "parquet", None, ()),
    ("parquet", "npz", "scaled", ()),
    ("tfrecord", "parquet", "parse", ("id",)),
    ("tfrecord", "prediction_log", "parse", ()),
])
def test_beam_writes_what_the_server_job_writes(service: ModelService, repository: Path,
                                                tmp_path: Path, data: str, output_format: str,
                                                signature: str | None, keys: tuple[str, ...],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Shards cross the shuffle in packs of 5 rows, so each comes back in pieces to reorder.
    monkeypatch.setattr(beam_jobs._PackByShard, "PACK_ROWS", 5)
    _data(tmp_path)
    spec = JobSpec("m", (str(tmp_path / data),), str(tmp_path / "server"),
                   signature=signature, output_format=output_format, batch_size=8,
                   rows_per_shard=12, keys=keys)
    _server_job(service, spec, [str(tmp_path)])
    summary = run_job_on_beam(dataclasses.replace(spec, output=str(tmp_path / "beam")),
                              str(repository), ["--runner=DirectRunner"])
    assert (summary["rows_this_run"], summary["shards_done"], summary["version"]) == (50, 5, 1)
    _assert_same_outputs(tmp_path / "server", tmp_path / "beam")
    part = tmp_path / "beam" / f"part-00000.{output_format}"
    if data == "tfrecord":
        return
    if output_format == "parquet":  # the default signature's outputs beside the npz keys
        import pyarrow.parquet as pq

        columns = pq.read_table(part).column_names
        assert columns[0] == "id" and sorted(columns[1:]) == ["total", "upper"]
    else:  # the chosen signature's outputs beside the Parquet keys
        with np.load(part, allow_pickle=False) as arrays:
            assert arrays.files[:2] == ["id", "name"]
            assert sorted(arrays.files[2:]) == ["length", "scaled"]


def test_beam_resumes_a_server_jobs_directory_and_refuses_another_spec(
        service: ModelService, repository: Path, tmp_path: Path) -> None:
    _data(tmp_path)
    out = tmp_path / "out"
    spec = JobSpec("m", (str(tmp_path / "npz"),), str(out), batch_size=8, rows_per_shard=12)
    _server_job(service, spec, [str(tmp_path)])
    shutil.copytree(out, tmp_path / "expected")
    os.remove(out / "part-00003.parquet")  # rows 0-12 of second.npz
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    time.sleep(0.01)
    summary = run_job_on_beam(spec, str(repository), roots=[str(tmp_path)])
    assert (summary["shards_skipped"], summary["rows_this_run"]) == (4, 12)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")
            if p.name in before} == before  # the complete shards were not written again
    _assert_same_outputs(tmp_path / "expected", out)
    # Nothing left to do: the directory stays as it is.
    again = run_job_on_beam(spec, str(repository), roots=[str(tmp_path)])
    assert (again["shards_skipped"], again["rows_this_run"]) == (5, 0)
    _assert_same_outputs(tmp_path / "expected", out)
    with pytest.raises(ServingError) as refused:
        run_job_on_beam(dataclasses.replace(spec, rows_per_shard=20), str(repository))
    assert refused.value.code == Code.FAILED_PRECONDITION
    assert "holds another job's results" in refused.value.message


def test_bad_jobs_fail_before_anything_runs(repository: Path, tmp_path: Path) -> None:
    _data(tmp_path)
    inputs = (str(tmp_path / "npz"),)

    def refused(spec: JobSpec, **kwargs: object) -> ServingError:
        with pytest.raises(ServingError) as error:
            build_job_pipeline(beam.Pipeline(), spec, str(repository), **kwargs)
        return error.value

    missing = refused(JobSpec("nope", inputs, str(tmp_path / "o1")))
    assert missing.code == Code.NOT_FOUND and "Could not find model nope" in missing.message
    bad = refused(JobSpec("m", inputs, str(tmp_path / "o2"), signature="nope"))
    assert bad.code == Code.INVALID_ARGUMENT
    assert "Model m version 1 has no signature nope" in bad.message
    assert "scaled, serving_default" in bad.message
    assert not (tmp_path / "o2").exists()
    outside = refused(JobSpec("m", inputs, str(tmp_path.parent / "elsewhere")),
                      roots=[str(tmp_path)])
    assert outside.code == Code.PERMISSION_DENIED
    version = refused(JobSpec("m", inputs, str(tmp_path / "o3"), version=7))
    assert version.code == Code.NOT_FOUND and "Specific(m, 7)" in version.message
    # Bad data fails on the workers, as the runner reports it, naming the file and rows.
    np.savez(tmp_path / "wrong.npz", a=np.zeros((5, 2)), s=np.array([b"x"] * 5))
    with pytest.raises(Exception, match=r"wrong.npz rows 0-5: no column b"):
        run_job_on_beam(JobSpec("m", (str(tmp_path / "wrong.npz"),), str(tmp_path / "o4")),
                        str(repository))
    assert os.listdir(tmp_path / "o4") == []


def test_the_handler_runs_the_chosen_signature_on_rows(repository: Path) -> None:
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.testing.util import assert_that, equal_to

    rows = [{"a": np.array([i, 0.5]), "b": np.array(i), "s": np.array(b"x" * i, dtype=object)}
            for i in range(1, 6)]
    handler = RepositoryModelHandler(str(repository), "m", signature="scaled", batch_size=2)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 2}
    with beam.Pipeline("DirectRunner") as pipeline:
        results = (pipeline | beam.Create(rows) | RunInference(handler)
                   | beam.Map(lambda r: (r.model_id, r.inference["scaled"].tolist(),
                                         int(r.inference["length"]))))
        assert_that(results, equal_to([("m/1", [10.0 * i, 5.0], 2 * i) for i in range(1, 6)]))


def test_versions_resolve_as_the_server_routes_them(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for v in (1, 2, 3, 4):
        (root / "m" / str(v)).mkdir(parents=True)
    (root / "m" / "3" / "servable.json").write_text('{"platform": "python"}')

    def config(labels: dict[str, int]) -> None:
        entries = "".join(f' version_labels {{ key: "{k}" value: {v} }}'
                          for k, v in labels.items())
        (root / "models.config").write_text(
            'model_config_list { config { name: "m" base_path: "m" model_platform: '
            f'"tensorflow" model_version_policy {{ latest {{ num_versions: 1 }} }}{entries} }} }}')

    def state(unloaded: list[int], previous_stable: int | None = None) -> None:
        (root / "jupyter_tfserving.json").write_text(json.dumps({"format": 1, "models": {"m": {
            "unloaded": unloaded, "previous_stable": previous_stable}}}))

    def resolved(version: int | None = None, label: str | None = None,
                 repository: Path = root) -> int:
        return resolve_version(str(repository), "m", version, label).version

    def error(version: int | None = None, label: str | None = None) -> ServingError:
        with pytest.raises(ServingError) as raised:
            resolve_version(str(root), "m", version, label)
        return raised.value

    # No models.config: the model is discovered, latest(1).
    assert resolved() == 4 and error(2).code == Code.NOT_FOUND
    # latest(1) picks 4; the labels add 1 and 2; ``stable`` takes unversioned requests.
    config({"stable": 2, "old": 1, "ahead": 9})
    assert (resolved(), resolved(4), resolved(label="old")) == (2, 4, 1)
    assert resolved(repository=root / "models.config") == 2
    assert resolve_version(str(root), "m").path == str(root / "m" / "2")
    assert error(3).code == Code.NOT_FOUND  # on disk, but the server does not serve it
    assert "Specific(m, 3)" in error(3).message
    pending = error(label="ahead")  # names a version not on disk: the server holds it pending
    assert pending.code == Code.INVALID_ARGUMENT and "names version 9" in pending.message
    assert error(label="nope").code == Code.INVALID_ARGUMENT
    assert error(1, "old").code == Code.INVALID_ARGUMENT
    # The state file: an unloaded version is not served; the previous stable one is.
    state(unloaded=[1], previous_stable=3)
    assert error(label="old").code == Code.INVALID_ARGUMENT
    assert resolved(3) == 3 and resolve_version(str(root), "m", 3).platform == "python"
    # Without ``stable``: the latest served version; unloading it falls back to the next.
    config({})
    assert resolved() == 4
    state(unloaded=[4])
    assert resolved() == 3
    with pytest.raises(ServingError) as unknown:
        resolve_version(str(root), "other")
    assert unknown.value.code == Code.NOT_FOUND and "its models: m" in unknown.value.message
