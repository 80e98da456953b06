"""Bulk jobs over TFRecord files of tf.Example, on a real service with real TensorFlow
SavedModels: a TF1-style export written here (a parsing predict signature, classify and
regress signatures) and TF Serving's own half_plus_two. A job's predict, classify and regress
results equal the model's own and the data plane's classify and regress, with key features
carried through; PredictionLog output reads back as TF Serving and TFX write it; TFRecord
sources shard by record ranges (GZIP too); bad records, missing features and methods that do
not fit the data or the signature fail clearly, naming the file and records, keeping the
complete shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jupyter_tfserving.batching import BatchingParameters
from jupyter_tfserving.core.servable import ExampleBatch
from jupyter_tfserving.core.state import ServableState
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.dataplane import ModelRef
from jupyter_tfserving.grpc import codec, protos
from jupyter_tfserving.jobs.runner import JobRunner, JobSpec, JobState
from jupyter_tfserving.jobs.sources import EXAMPLES_COLUMN, format_of, open_source
from jupyter_tfserving.service import ModelService, ServiceOptions

tf = pytest.importorskip("tensorflow")

WAIT = 60.0


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding ``ex/1``, a TF1-style SavedModel on tf.Examples with a float
    feature ``x`` (TF Serving's export style): ``serving_default`` (predict: ``examples`` ->
    ``y`` = 0.5x + 2 [-1, 1], ``scores`` = [x/4, 1 - x/4]), ``classify`` (classes neg/pos and
    those scores), ``regress`` (y), and ``dense`` (predict on a float ``x``, no examples)."""
    root = tmp_path_factory.mktemp("models")
    with tf.Graph().as_default():
        serialized = tf.compat.v1.placeholder(tf.string, [None], name="tf_example")
        x = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        y = 0.5 * x + 2.0
        # Exact in float32 whatever the batch (the job's batches are not the model's own).
        scores = tf.concat([0.25 * x, 1.0 - 0.25 * x], axis=1)
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(x)[0], 1])
        dense = tf.compat.v1.placeholder(tf.float32, [None, 1], name="x")
        sd = tf.compat.v1.saved_model
        signatures = {
            "serving_default": sd.predict_signature_def({"examples": serialized},
                                                        {"y": y, "scores": scores}),
            "classify": sd.classification_signature_def(serialized, classes, scores),
            "regress": sd.regression_signature_def(serialized, y),
            "dense": sd.predict_signature_def({"x": dense}, {"y": 0.5 * dense + 2.0}),
        }
        with tf.compat.v1.Session() as session:
            builder = sd.Builder(str(root / "ex" / "1"))
            builder.add_meta_graph_and_variables(session, ["serve"],
                                                 signature_def_map=signatures)
            builder.save()
    return root


def _service(options: ServiceOptions, model: str, version: int) -> ModelService:
    service = ModelService(options)
    service.start()
    service.manager.wait_for(model, version, [ServableState.AVAILABLE], 30)
    return service


@pytest.fixture
def served(models: Path, tmp_path: Path):
    service = _service(ServiceOptions(model_root=str(models), file_system_poll_wait_seconds=0,
                                      batching=BatchingParameters(max_batch_size=8)), "ex", 1)
    (tmp_path / "data").mkdir()
    yield service, JobRunner(service.dataplane, service.manager, [str(tmp_path / "data")])
    service.stop()


def _example(i: int, **extra: Any) -> Any:
    features = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[i * 0.25 - 3])),
                "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
                "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"r%d" % i]))}
    features.update(extra)
    return tf.train.Example(features=tf.train.Features(feature=features))


def _write(path: Path, records: list[bytes]) -> list[bytes]:
    gzip = path.name.endswith(".gz")
    with tf.io.TFRecordWriter(str(path), "GZIP" if gzip else None) as writer:
        for record in records:
            writer.write(record)
    return records


def _records(ids: range) -> list[bytes]:
    return [_example(i).SerializeToString() for i in ids]


def _batch(records: list[bytes]) -> ExampleBatch:
    """The records as a gRPC classify/regress request's examples, decoded by its codec."""
    request = protos.load().input_pb2.Input()
    for record in records:
        request.example_list.examples.add().ParseFromString(record)
    return codec.input_to_batch(request)


def _parquet(directory: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    tables = [pq.read_table(p).to_pydict() for p in sorted(directory.glob("part-*.parquet"))]
    return {k: np.array([v for t in tables for v in t[k]]) for k in tables[0]}


def _logs(directory: Path) -> list[Any]:
    from tensorflow_serving.apis import prediction_log_pb2

    files = sorted(str(p) for p in directory.glob("part-*.tfrecord"))
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(files)]


def _run(jobs: JobRunner, job_id: str, spec: JobSpec) -> Any:
    job = jobs.start(job_id, spec)
    assert job.wait(WAIT) and job.state is JobState.COMPLETED, job.error
    return job


def test_tfrecord_sources_shard_by_records(tmp_path: Path) -> None:
    records = _write(tmp_path / "a.tfrecord", _records(range(25)))
    records += _write(tmp_path / "b.tfrecords.gz", _records(range(25, 43)))
    assert format_of("x/B.TFRecord.GZ") == format_of("c.tfrecords") == "tfrecord"
    source = open_source(str(tmp_path), [str(tmp_path)], rows_per_shard=10,
                         keys=("id", "x", "name"))
    assert source.format == "tfrecord" and source.rows == 43
    assert [(Path(s.path).name, s.start, s.stop) for s in source.shards] == [
        ("a.tfrecord", 0, 10), ("a.tfrecord", 10, 20), ("a.tfrecord", 20, 25),
        ("b.tfrecords.gz", 0, 10), ("b.tfrecords.gz", 10, 18)]
    parts = [source.read(s) for s in source.shards]
    assert source.where(source.shards[3]).endswith("b.tfrecords.gz records 0-10")
    got = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    assert got[EXAMPLES_COLUMN].dtype == object and got[EXAMPLES_COLUMN].tolist() == records
    assert got["id"].dtype == np.int64 and got["id"].tolist() == list(range(43))
    assert got["x"].dtype == np.float32 and np.array_equal(got["x"],
                                                           np.arange(43) * 0.25 - 3)
    assert got["name"].tolist() == [b"r%d" % i for i in range(43)]
    with pytest.raises(ServingError, match="__tf_example__ is not a key"):
        open_source(str(tmp_path), [str(tmp_path)], keys=(EXAMPLES_COLUMN,))

    bad = tmp_path / "bad"
    bad.mkdir()
    two = _example(5, id=tf.train.Feature(int64_list=tf.train.Int64List(value=[5, 6])))
    _write(bad / "c.tfrecord", [*_records(range(4)), two.SerializeToString(), b"not a proto",
                                _example(6, id=tf.train.Feature()).SerializeToString()])
    source = open_source(str(bad), [str(tmp_path)], rows_per_shard=5, keys=("id",))
    with pytest.raises(ServingError, match=r"c.tfrecord records 0-5: feature id of record 4 "
                                           r"holds 2 values; a key is one value") as two_values:
        source.read(source.shards[0])
    assert two_values.value.code == Code.INVALID_ARGUMENT
    with pytest.raises(ServingError, match=r"c.tfrecord records 5-7: record 5 is not a "
                                           r"tf.Example"):
        source.read(source.shards[1])
    (bad / "c.tfrecord").write_bytes(b"")  # emptied after it was listed
    with pytest.raises(ServingError, match=r"c.tfrecord records 5-7: only 0 of these records") \
            as lost:
        source.read(source.shards[1])
    assert lost.value.code == Code.DATA_LOSS
    (bad / "c.tfrecord").write_bytes(b"\x01" * 40)
    with pytest.raises(ServingError, match="Cannot read .*c.tfrecord") as corrupt:
        open_source(str(bad), [str(tmp_path)])
    assert corrupt.value.code == Code.INVALID_ARGUMENT


def test_predict_classify_regress_equal_the_models_own(served, tmp_path: Path) -> None:
    service, jobs = served
    data = tmp_path / "data"
    records = _write(data / "a.tfrecord", _records(range(25)))
    records += _write(data / "b.tfrecord.gz", _records(range(25, 43)))
    serialized = np.array(records, dtype=object)
    inputs = (str(data / "*.tfrecord*"),)
    common: dict[str, Any] = {"batch_size": 4, "rows_per_shard": 10, "keys": ("id", "name")}

    job = _run(jobs, "p", JobSpec("ex", inputs, str(data / "p"), **common))
    assert job.to_json()["method"] == "predict" and job.progress.shards_done == 5
    with service.manager.acquire("ex", 1, None) as handle:
        own = handle.servable.run("serving_default", {"examples": serialized})
    out = _parquet(data / "p")
    assert out["id"].tolist() == list(range(43)) and out["name"][:2].tolist() == [b"r0", b"r1"]
    assert set(out) == {"id", "name", "y", "scores"}
    assert np.array_equal(np.stack(out["y"]), own["y"])
    assert np.array_equal(np.stack(out["scores"]), own["scores"])

    _run(jobs, "c", JobSpec("ex", inputs, str(data / "c"), signature="classify",
                            method="classify", **common))
    version, classified = service.dataplane.classify(ModelRef("ex"), "classify",
                                                     _batch(records))
    out = _parquet(data / "c")
    assert set(out) == {"id", "name", "classes", "scores"} and out["id"].tolist() == list(
        range(43))
    assert np.stack(out["classes"]).tolist() == classified.labels
    assert np.array_equal(np.stack(out["scores"]), classified.scores)

    _run(jobs, "r", JobSpec("ex", inputs, str(data / "r"), signature="regress",
                            method="regress", output_format="npz", **common))
    _, values = service.dataplane.regress(ModelRef("ex"), "regress", _batch(records))
    parts = [np.load(p, allow_pickle=False) for p in sorted((data / "r").glob("part-*.npz"))]
    assert set(parts[0].files) == {"id", "name", "value"}
    assert np.concatenate([p["id"] for p in parts]).tolist() == list(range(43))
    value = np.concatenate([p["value"] for p in parts])
    assert value.dtype == np.float32 and np.array_equal(value, values)
    assert json.loads((data / "r" / "manifest.json").read_text())["spec"]["method"] == "regress"
    assert {s.key[-1] for s in service.scheduler.queue_stats()} == {"bulk"}
    assert service.in_flight().get(("ex", 1), 0) == 0


def test_prediction_logs_read_back(served, tmp_path: Path) -> None:
    service, jobs = served
    data = tmp_path / "data"
    records = _write(data / "a.tfrecord", _records(range(12)))
    common: dict[str, Any] = {"batch_size": 4, "rows_per_shard": 5,
                              "output_format": "prediction_log"}

    _run(jobs, "p", JobSpec("ex", (str(data / "a.tfrecord"),), str(data / "p"), **common))
    assert sorted(p.name for p in (data / "p").iterdir()) == [
        "manifest.json", "part-00000.tfrecord", "part-00001.tfrecord", "part-00002.tfrecord"]
    logs = _logs(data / "p")
    with service.manager.acquire("ex", 1, None) as handle:
        own = handle.servable.run("serving_default",
                                  {"examples": np.array(records, dtype=object)})
    assert len(logs) == 12
    for i, log in enumerate(logs):
        assert log.WhichOneof("log_type") == "predict_log"
        request, response = log.predict_log.request, log.predict_log.response
        for spec in (request.model_spec, response.model_spec):
            assert (spec.name, spec.version.value, spec.signature_name) == (
                "ex", 1, "serving_default")
        assert set(request.inputs) == {"examples"}
        assert tf.make_ndarray(request.inputs["examples"]).tolist() == [records[i]]
        assert set(response.outputs) == {"y", "scores"}
        for name in ("y", "scores"):
            assert np.array_equal(tf.make_ndarray(response.outputs[name]), own[name][i:i + 1])

    _run(jobs, "c", JobSpec("ex", (str(data / "a.tfrecord"),), str(data / "c"),
                            signature="classify", method="classify", **common))
    _, classified = service.dataplane.classify(ModelRef("ex"), "classify", _batch(records))
    answer = codec.classify_response("ex", 1, "classify", classified)
    logs = _logs(data / "c")
    assert len(logs) == 12
    for i, log in enumerate(logs):
        request, response = log.classify_log.request, log.classify_log.response
        assert list(request.input.example_list.examples) == [
            tf.train.Example.FromString(records[i])]
        assert request.model_spec == response.model_spec == answer.model_spec
        assert list(response.result.classifications) == [answer.result.classifications[i]]

    _run(jobs, "r", JobSpec("ex", (str(data / "a.tfrecord"),), str(data / "r"),
                            signature="regress", method="regress", **common))
    _, values = service.dataplane.regress(ModelRef("ex"), "regress", _batch(records))
    answer = codec.regress_response("ex", 1, "regress", values)
    logs = _logs(data / "r")
    assert [list(log.regress_log.response.result.regressions) for log in logs] == [
        [r] for r in answer.result.regressions]
    assert all(log.regress_log.request.model_spec == answer.model_spec for log in logs)
    assert [log.regress_log.request.input.example_list.examples[0].SerializeToString()
            for log in logs] == records

    # Columns of other data: each row's inputs, cast to the signature's dtypes.
    x = np.arange(7, dtype=np.float64).reshape(7, 1)
    np.savez(data / "d.npz", x=x, id=np.arange(7))
    _run(jobs, "d", JobSpec("ex", (str(data / "d.npz"),), str(data / "d"), signature="dense",
                            **common))
    logs = _logs(data / "d")
    assert [tf.make_ndarray(log.predict_log.request.inputs["x"]).tolist() for log in logs] == [
        [[float(i)]] for i in range(7)]
    assert all(log.predict_log.request.inputs["x"].dtype == tf.float32.as_datatype_enum
               for log in logs)
    assert [tf.make_ndarray(log.predict_log.response.outputs["y"]).tolist() for log in logs] \
        == [[[i / 2 + 2]] for i in range(7)]


def test_bad_records_fail_naming_them_and_keep_complete_shards(served, tmp_path: Path) -> None:
    service, jobs = served
    data = tmp_path / "data"
    records = _records(range(20))
    records[13] = b"not a tf.Example"
    _write(data / "bad.tfrecord", records)
    spec = JobSpec("ex", (str(data / "bad.tfrecord"),), str(data / "o"), batch_size=4,
                   rows_per_shard=5)
    job = jobs.start("bad", spec)
    assert job.wait(WAIT) and job.state is JobState.FAILED
    assert "bad.tfrecord records 10-15: record 13 is not a tf.Example" in job.error
    manifest = json.loads((data / "o" / "manifest.json").read_text())
    assert sorted(manifest["shards"]) == ["0", "1"]
    assert sorted(p.name for p in (data / "o").glob("part-*")) == [
        "part-00000.parquet", "part-00001.parquet"]

    no_id = _example(7)
    del no_id.features.feature["id"]
    _write(data / "keys.tfrecord", [*_records(range(7)), no_id.SerializeToString()])
    job = jobs.start("keys", JobSpec("ex", (str(data / "keys.tfrecord"),), str(data / "k"),
                                     rows_per_shard=5, keys=("id",)))
    assert job.wait(WAIT) and job.state is JobState.FAILED
    assert "keys.tfrecord records 5-8: record 7 has no feature id" in job.error
    assert [p.name for p in (data / "k").glob("part-*")] == ["part-00000.parquet"]

    # A record the model cannot parse (no x): the model's error, naming the records.
    _write(data / "nox.tfrecord", [tf.train.Example().SerializeToString()])
    job = jobs.start("nox", JobSpec("ex", (str(data / "nox.tfrecord"),), str(data / "n"),
                                    signature="regress", method="regress"))
    assert job.wait(WAIT) and job.state is JobState.FAILED
    assert job.error.startswith(f"{data / 'nox.tfrecord'} records 0-1: ")
    assert service.in_flight().get(("ex", 1), 0) == 0


def test_methods_that_do_not_fit_are_refused(served, models: Path, tmp_path: Path) -> None:
    service, jobs = served
    data = tmp_path / "data"
    _write(data / "a.tfrecord", _records(range(3)))
    np.savez(data / "d.npz", x=np.zeros((3, 1)))
    tfrecord, npz = (str(data / "a.tfrecord"),), (str(data / "d.npz"),)
    refusals = {
        "classify reads TFRecord files of tf.Example; the data set .*d.npz is npz":
            JobSpec("ex", npz, str(data / "o"), signature="classify", method="classify"),
        "Signature dense of model ex version 1 takes x as DT_FLOAT: TFRecord data needs":
            JobSpec("ex", tfrecord, str(data / "o"), signature="dense"),
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict":
            JobSpec("ex", tfrecord, str(data / "o"), method="classify"),
        "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/classify":
            JobSpec("ex", tfrecord, str(data / "o"), signature="classify", method="regress"),
        "Unknown method 'explain'": JobSpec("ex", tfrecord, str(data / "o"), method="explain"),
        "A prediction_log holds no key columns":
            JobSpec("ex", tfrecord, str(data / "o"), keys=("id",),
                    output_format="prediction_log"),
    }
    for message, spec in refusals.items():
        with pytest.raises(ServingError, match=message) as refused:
            jobs.start("x", spec)
        assert refused.value.code == Code.INVALID_ARGUMENT
    assert jobs.jobs() == [] and not (data / "o").exists()
    assert service.in_flight().get(("ex", 1), 0) == 0

    # Without the method-name check (TF Serving's default), a predict signature classifies:
    # its scores, with no labels (as the data plane answers it).
    unchecked = _service(ServiceOptions(model_root=str(models), file_system_poll_wait_seconds=0,
                                        signature_method_name_check=False), "ex", 1)
    try:
        runner = JobRunner(unchecked.dataplane, unchecked.manager, [str(data)])
        _run(runner, "c", JobSpec("ex", tfrecord, str(data / "c"), method="classify"))
        _, classified = unchecked.dataplane.classify(
            ModelRef("ex"), None, _batch(_records(range(3))))
    finally:
        unchecked.stop()
    out = _parquet(data / "c")
    assert classified.labels is None
    assert np.stack(out["classes"]).tolist() == [["", ""]] * 3
    assert np.array_equal(np.stack(out["scores"]), classified.scores)


def test_tf_serving_half_plus_two(testdata: Path, tmp_path: Path) -> None:
    """TF Serving's own export (TF 1.14): its classify_x_to_y (scores only) and
    regress_x_to_y signatures, whose input declares no shape, through jobs."""
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "default" base_path: "%s" '
                      'model_platform: "tensorflow" } }'
                      % (testdata / "saved_model_half_plus_two_cpu"))
    (tmp_path / "models").mkdir()
    (tmp_path / "data").mkdir()
    service = _service(ServiceOptions(model_root=str(tmp_path / "models"),
                                      model_config_file=str(config)), "default", 123)
    try:
        jobs = JobRunner(service.dataplane, service.manager, [str(tmp_path / "data")])
        records = [tf.train.Example(features=tf.train.Features(feature={"x": tf.train.Feature(
            float_list=tf.train.FloatList(value=[x]))})).SerializeToString()
            for x in (2.0, 3.0, 4.0, 5.0, 6.0)]
        _write(tmp_path / "data" / "x.tfrecord", records)
        inputs = (str(tmp_path / "data" / "x.tfrecord"),)
        _run(jobs, "c", JobSpec("default", inputs, str(tmp_path / "data" / "c"),
                                signature="classify_x_to_y", method="classify", batch_size=2,
                                rows_per_shard=3))
        _run(jobs, "r", JobSpec("default", inputs, str(tmp_path / "data" / "r"),
                                signature="regress_x_to_y", method="regress", batch_size=2))
        _, classified = service.dataplane.classify(ModelRef("default"), "classify_x_to_y",
                                                   _batch(records))
        _, values = service.dataplane.regress(ModelRef("default"), "regress_x_to_y",
                                              _batch(records))
    finally:
        service.stop()
    out = _parquet(tmp_path / "data" / "c")
    assert np.stack(out["scores"]).tolist() == [[3.0], [3.5], [4.0], [4.5], [5.0]]
    assert np.array_equal(np.stack(out["scores"]), classified.scores)
    assert np.stack(out["classes"]).tolist() == [[""]] * 5
    assert _parquet(tmp_path / "data" / "r")["value"].tolist() == values.tolist() == [
        3.0, 3.5, 4.0, 4.5, 5.0]
