"""Request logging (issue 14, item 2): TF Serving's ``logging_config`` honoured, fed by the
data plane's exchanges. On a real ModelService with fake servables (tests.fakes): sampling,
the records (PredictionLog: predict, classify, regress), rotation and the cap, a full queue,
an unwritable directory, config edits, confined prefixes; then on a Jupyter server with a
TensorFlow model: REST and gRPC requests logged alike, read back, and replayed as warmup."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from jupyter_tfserving.core.model_spec import ModelSpec, RequestLogging
from jupyter_tfserving.core.servable import (
    CLASSIFY_METHOD,
    REGRESS_METHOD,
    ExampleBatch,
    Feature,
    SignatureInfo,
    TensorInfo,
)
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.dataplane import Exchange, ModelRef
from jupyter_tfserving.model_config import parse_config_proto
from jupyter_tfserving.service import ModelService
from jupyter_tfserving.traffic.request_log import RequestLog, RequestLogOptions
from tests.fakes import FakeServable, fake_service

PREDICT = SignatureInfo({"x": TensorInfo("DT_FLOAT", (-1, 2))},
                        {"y": TensorInfo("DT_FLOAT", (-1, 2)),
                         "tag_bytes": TensorInfo("DT_STRING", (-1,))})
CLASSIFY = SignatureInfo({"inputs": TensorInfo("DT_STRING", (-1,))},
                         {"classes": TensorInfo("DT_STRING", (-1, 2)),
                          "scores": TensorInfo("DT_FLOAT", (-1, 2))}, CLASSIFY_METHOD)
REGRESS = SignatureInfo({"inputs": TensorInfo("DT_STRING", (-1,))},
                        {"outputs": TensorInfo("DT_FLOAT", (-1,))}, REGRESS_METHOD)
FILE_NAME = re.compile(r"^requests-\d{8}T\d{6}Z-(\d{6})\.tfrecord$")


class Model(FakeServable):
    """Predict doubles x (and tags each row with non-UTF-8 bytes); classify scores p and
    1 - p; regress answers 10 p."""

    def signatures(self):
        return {"serving_default": PREDICT, "classify": CLASSIFY, "regress": REGRESS}

    def run(self, signature_name, inputs):
        x = inputs["x"]
        return {"y": 2 * x, "tag_bytes": np.array([b"\xff\x00"] * len(x), dtype=object)}

    def run_examples(self, signature_name, batch):
        p = np.float32([e["p"].values[0] for e in batch.examples])
        if signature_name == "classify":
            return {"classes": np.array([[b"yes", b"no"]] * len(p), dtype=object),
                    "scores": np.stack([p, 1 - p], axis=1)}
        return {"outputs": 10 * p}


@pytest.fixture
def service(tmp_path: Path):
    made: list[ModelService] = []

    def make(**options) -> ModelService:
        made.append(fake_service(tmp_path / "models", Model, **options))
        return made[-1]

    yield make
    for s in made:
        s.stop(10)


def predict(service: ModelService, x) -> dict[str, np.ndarray]:
    call = service.dataplane.begin_predict(
        ModelRef("m"), None, lambda signature: {"x": np.asarray(x, np.float32)})
    return service.dataplane.submit_predict(call).result(10)


def prediction_log_pb2():
    """The PredictionLog module, imported as the server imports TensorFlow (one thread at a
    time: the request log's writer may be importing it)."""
    from jupyter_tfserving.platforms.tensorflow import configure_tensorflow

    configure_tensorflow()
    from tensorflow_serving.apis import prediction_log_pb2

    return prediction_log_pb2


def logs(service: ModelService, n: int = 1000) -> list:
    PredictionLog = prediction_log_pb2().PredictionLog  # noqa: N806  a message class

    return [PredictionLog.FromString(raw) for raw in service.request_log.recent("m", n)]


def log_dir(service: ModelService) -> Path:
    return Path(service.model_root) / ".logs" / "m"


def tensor(proto) -> np.ndarray:
    from jupyter_tfserving.grpc.codec import tensor_to_array

    return tensor_to_array(proto)


def test_predicts_are_logged_as_prediction_logs_and_in_models_config(service):
    svc = service()
    assert svc.stats_report()["models"][0]["logging"] is None
    status = svc.set_request_logging("m", 1.0)
    assert status == {"sampling_rate": 1.0, "filename_prefix": ".logs/m/requests", "logged": 0,
                      "dropped": 0, "bytes": 0, "files": 0, "error": None}
    config = parse_config_proto(Path(svc.model_root, "models.config").read_text())
    (entry,) = config.model_config_list.config
    assert entry.logging_config.sampling_config.sampling_rate == 1.0
    assert entry.logging_config.log_collector_config.type == "tfrecord"
    assert entry.logging_config.log_collector_config.filename_prefix == ".logs/m/requests"
    # Stock tensorflow_model_server refuses any logging_config: the hand-off leaves it out.
    handoff = svc.control.tfserving_config()
    assert "m" in handoff["model_config"] and "logging_config" not in handoff["model_config"]

    started = int(time.time())
    for i in range(3):
        predict(svc, [[i, i + 0.5]])
    records = logs(svc)
    assert len(records) == 3
    for i, record in zip((2, 1, 0), records, strict=True):  # newest first
        call = record.predict_log
        assert tensor(call.request.inputs["x"]).tolist() == [[i, i + 0.5]]
        assert tensor(call.response.outputs["y"]).tolist() == [[2 * i, 2 * i + 1.0]]
        assert tensor(call.response.outputs["tag_bytes"]).tolist() == [b"\xff\x00"]
        for spec in (call.request.model_spec, call.response.model_spec,
                     record.log_metadata.model_spec):
            assert (spec.name, spec.version.value, spec.signature_name) == (
                "m", 1, "serving_default")
        assert record.log_metadata.sampling_config.sampling_rate == 1.0
        assert started <= record.log_metadata.timestamp_secs <= time.time() + 1
    (name,) = os.listdir(log_dir(svc))
    assert FILE_NAME.match(name).group(1) == "000001"
    status = svc.stats_report()["models"][0]["logging"]
    assert status["logged"] == 3 and status["files"] == 1
    assert status["bytes"] == (log_dir(svc) / name).stat().st_size


def test_sampling_rate_0_1_and_one_half(service):
    svc = service()
    svc.set_request_logging("m", 1.0)
    for _ in range(100):
        predict(svc, [[1, 2]])
    assert svc.request_log.drain(30)
    assert svc.request_log.status("m")["logged"] == 100

    svc.set_request_logging("m", 0.5)
    for _ in range(400):
        predict(svc, [[1, 2]])
    assert svc.request_log.drain(30)
    logged = svc.request_log.status("m")["logged"] - 100
    assert 120 <= logged <= 280  # binomial(400, 0.5): more than 8 sigma either way

    status = svc.set_request_logging("m", 0)
    assert status["sampling_rate"] == 0.0 and status["error"] is None
    config = parse_config_proto(Path(svc.model_root, "models.config").read_text())
    assert not config.model_config_list.config[0].HasField("logging_config")
    for _ in range(50):
        predict(svc, [[1, 2]])
    assert svc.request_log.drain(30)
    assert svc.request_log.status("m")["logged"] == 100 + logged
    assert not svc.request_log.is_on("m")


def test_classify_and_regress_are_logged_with_their_examples_and_results(service):
    from jupyter_tfserving.grpc.codec import input_to_batch

    svc = service(signature_method_name_check=False)
    svc.set_request_logging("m", 1.0)
    batch = ExampleBatch([{"p": Feature("float", [0.25]), "s": Feature("bytes", [b"\xfe"])},
                          {"p": Feature("float", [0.5])}],
                         context={"c": Feature("int64", [7])})
    svc.dataplane.classify(ModelRef("m"), "classify", batch)
    svc.dataplane.regress(ModelRef("m"), "regress", batch)
    regressed, classified = logs(svc)
    assert regressed.WhichOneof("log_type") == "regress_log"
    assert classified.WhichOneof("log_type") == "classify_log"
    for record, signature in ((regressed.regress_log, "regress"),
                              (classified.classify_log, "classify")):
        assert input_to_batch(record.request.input) == batch
        assert record.response.model_spec.signature_name == signature
        assert record.response.model_spec.version.value == 1
    assert [r.value for r in regressed.regress_log.response.result.regressions] == [2.5, 5.0]
    assert [[(c.label, c.score) for c in row.classes]
            for row in classified.classify_log.response.result.classifications] == [
        [("yes", 0.25), ("no", 0.75)], [("yes", 0.5), ("no", 0.5)]]

    newest, older = svc.request_log.requests("m", 2)
    assert (newest.method, newest.signature_name, newest.version) == ("regress", "regress", 1)
    assert newest.examples == batch and newest.inputs is None
    assert newest.outputs["outputs"].tolist() == [2.5, 5.0]
    assert older.outputs["classes"].tolist() == [["yes", "no"], ["yes", "no"]]
    assert older.outputs["scores"].tolist() == [[0.25, 0.75], [0.5, 0.5]]


def test_files_rotate_by_size_and_the_oldest_go_past_the_cap(service):
    svc = service(request_log_max_file_bytes=700, request_log_max_total_bytes=2000)
    svc.set_request_logging("m", 1.0)
    for i in range(60):
        predict(svc, [[i, 0]])
    assert svc.request_log.drain(30)
    sizes = {p.name: p.stat().st_size for p in log_dir(svc).iterdir()}
    assert len(sizes) >= 3
    assert all(size <= 700 for size in sizes.values())
    assert sum(sizes.values()) <= 2000
    seqs = sorted(int(FILE_NAME.match(name).group(1)) for name in sizes)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] > 1  # oldest deleted
    status = svc.request_log.status("m")
    assert (status["files"], status["bytes"], status["logged"]) == (
        len(sizes), sum(sizes.values()), 60)
    newest = [tensor(r.predict_log.request.inputs["x"]).tolist() for r in logs(svc, 3)]
    assert newest == [[[59, 0]], [[58, 0]], [[57, 0]]]


def _exchange(i: int) -> Exchange:
    x = np.float32([[i, i]])
    return Exchange(ModelRef("m"), 1, "predict", "serving_default", PREDICT, {"x": x}, None,
                    {"y": 2 * x, "tag_bytes": np.array([b""], dtype=object)}, 0.001, 0.0005)


def test_a_full_queue_drops_and_counts_records_and_never_waits(tmp_path):
    request_log = RequestLog(str(tmp_path), RequestLogOptions(queue_size=3))
    request_log.configure([ModelSpec("m", str(tmp_path / "m"), logging=RequestLogging(1.0))])
    try:
        for i in range(10):  # the writer is not started: nothing leaves the queue
            request_log.observe(_exchange(i))
        status = request_log.status("m")
        assert (status["logged"], status["dropped"]) == (0, 7)
        request_log.start()
        assert request_log.drain(60)
        assert request_log.status("m")["logged"] == 3
        logged = [tensor_of(raw) for raw in request_log.recent("m", 10)]
        assert logged == [[[2, 2]], [[1, 1]], [[0, 0]]]  # the first three, newest first
    finally:
        request_log.stop()


def tensor_of(raw: bytes) -> list:
    record = prediction_log_pb2().PredictionLog.FromString(raw)
    return tensor(record.predict_log.request.inputs["x"]).tolist()


def test_an_unwritable_directory_stops_logging_with_the_error_and_serving_goes_on(service):
    svc = service()
    blocker = Path(svc.model_root) / ".logs"
    blocker.write_text("a file where the log directory would be")
    svc.set_request_logging("m", 1.0)
    for i in range(3):
        assert predict(svc, [[i, 1]])["y"].tolist() == [[2 * i, 2]]
    assert svc.request_log.drain(30)
    status = svc.stats_report()["models"][0]["logging"]
    assert status["error"].startswith("Cannot write the request log")
    assert status["logged"] == 0 and not svc.request_log.is_on("m")
    assert predict(svc, [[5, 5]])["y"].tolist() == [[10, 10]]

    blocker.unlink()
    status = svc.set_request_logging("m", 1.0)  # setting it again tries again
    assert status["error"] is None
    predict(svc, [[6, 6]])
    assert svc.request_log.drain(30)
    assert svc.request_log.status("m")["logged"] == 1


CONFIG = """model_config_list {
  config {
    name: "m" base_path: "m" model_platform: "tensorflow"
    %s
  }
}
"""


def test_models_config_edits_take_effect(service):
    svc = service()
    config = Path(svc.model_root, "models.config")

    def reload(logging_config: str) -> None:
        config.write_text(CONFIG % logging_config)
        svc.control.reload_config()

    reload('logging_config { sampling_config { sampling_rate: 1 } '
           'log_collector_config { filename_prefix: "custom/log" } }')
    predict(svc, [[1, 1]])
    assert svc.request_log.drain(30)
    assert [p.name.startswith("log-") for p in Path(svc.model_root, "custom").iterdir()] == [True]
    assert svc.request_log.status("m")["filename_prefix"] == "custom/log"

    # A collector this server does not have, a prefix out of the repository: refused, said in
    # the status; the model serves on.
    reload('logging_config { sampling_config { sampling_rate: 1 } '
           'log_collector_config { type: "kafka" filename_prefix: "x" } }')
    assert "kafka" in svc.request_log.status("m")["error"]
    reload('logging_config { sampling_config { sampling_rate: 1 } '
           'log_collector_config { filename_prefix: "/tmp/elsewhere" } }')
    assert "relative to the model repository" in svc.request_log.status("m")["error"]
    assert predict(svc, [[1, 1]])["y"].tolist() == [[2, 2]]

    reload("")
    status = svc.request_log.status("m")
    assert status["sampling_rate"] == 0.0 and not svc.request_log.is_on("m")


def test_prefixes_and_rates_are_checked(service, tmp_path):
    svc = service()
    cases = [({"sampling_rate": 2}, Code.INVALID_ARGUMENT, "between 0 and 1"),
             ({"sampling_rate": True}, Code.INVALID_ARGUMENT, "between 0 and 1"),
             ({"sampling_rate": 1, "filename_prefix": "/tmp/x"}, Code.INVALID_ARGUMENT,
              "relative to the model repository"),
             ({"sampling_rate": 1, "filename_prefix": "logs/"}, Code.INVALID_ARGUMENT,
              "file name part"),
             ({"sampling_rate": 1, "filename_prefix": "../x"}, Code.PERMISSION_DENIED,
              "leads out of the model repository"),
             ({"sampling_rate": 1, "filename_prefix": "a/../../x"}, Code.PERMISSION_DENIED,
              "leads out of the model repository"),
             ({"sampling_rate": 1, "filename_prefix": "out/x"}, Code.PERMISSION_DENIED,
              "leads out of the model repository")]
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", Path(svc.model_root) / "out")
    for body, code, words in cases:
        with pytest.raises(ServingError) as err:
            svc.set_request_logging("m", body["sampling_rate"], body.get("filename_prefix"))
        assert err.value.code == code and words in err.value.message, body
    with pytest.raises(ServingError) as err:
        svc.set_request_logging("nope", 1.0)
    assert err.value.code == Code.NOT_FOUND
    assert not Path(svc.model_root, "models.config").exists()


def test_stop_writes_what_was_queued(service):
    svc = service()
    svc.set_request_logging("m", 1.0)
    for i in range(20):
        predict(svc, [[i, i]])
    svc.stop(30)
    copy = RequestLog(svc.model_root)  # a later server reads the files of this one
    assert len(copy.recent("m", 100)) == 20


# ------------------------------------------------------------------ on a Jupyter server


async def test_rest_and_grpc_requests_are_logged_alike_and_replay_as_warmup(
        jp_serverapp, rest, publish, exported_models: Path, tmp_path: Path):
    from tensorflow_serving.apis import predict_pb2

    from jupyter_tfserving.grpc.codec import array_to_tensor
    from jupyter_tfserving.platforms.tensorflow import SavedModelLoader
    from jupyter_tfserving.platforms.warmup import WARMUP_FILE, run_warmup
    from tests.grpc.conftest import GrpcClient, started_grpc

    publish("half_plus_two", 1)
    await rest.wait_for("half_plus_two", 1)
    api = "/api/models/half_plus_two"
    code, status, _ = await rest.call(f"{api}:logging", {"sampling_rate": 1.0})
    assert code == 200 and status["sampling_rate"] == 1.0 and status["error"] is None

    code, _, _ = await rest.call("/v1/models/half_plus_two:predict",
                                 {"instances": [[1.0], [2.0]]})
    assert code == 200
    server = await started_grpc(jp_serverapp)
    client = GrpcClient(server.target, rest.token)
    try:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.inputs["x"].CopyFrom(array_to_tensor(np.float32([[3.0]])))
        answer = await client.call(client.prediction.Predict, request)
        assert tensor(answer.outputs["y"]).tolist() == [[3.5]]
    finally:
        client.close()

    code, body, _ = await rest.call(f"{api}/requests?n=10")
    assert code == 200 and body["model"] == "half_plus_two"
    grpc_record, rest_record = body["requests"]  # newest first
    assert grpc_record["inputs"] == {"x": [[3.0]]} and grpc_record["outputs"] == {"y": [[3.5]]}
    assert rest_record["inputs"] == {"x": [[1.0], [2.0]]}
    assert rest_record["outputs"] == {"y": [[2.5], [3.0]]}
    for record in (grpc_record, rest_record):
        assert (record["version"], record["method"], record["signature_name"]) == (
            1, "predict", "serving_default")
        assert abs(record["time"] - time.time()) < 60

    response = await rest._client.fetch(
        rest.prefix + f"{api}/requests?n=10&format=tfrecord",
        headers={"Authorization": f"token {rest.token}"})
    assert response.headers["Content-Type"] == "application/octet-stream"
    version = tmp_path / "replay" / "1"
    shutil.copytree(exported_models / "half_plus_two" / "1", version)
    (version / WARMUP_FILE).parent.mkdir(exist_ok=True)
    (version / WARMUP_FILE).write_bytes(response.body)
    servable = SavedModelLoader(str(version), warmup=False).load()
    try:
        report = run_warmup(str(version), servable)
    finally:
        servable.close()
    assert report is not None and report.records == 2

    code, status, _ = await rest.call(f"{api}:logging", {"sampling_rate": 0})
    assert code == 200 and status["sampling_rate"] == 0.0 and status["logged"] == 2
