"""Model warmup (issue 14, first part): a version's ``assets.extra/tf_serving_warmup_requests``
is replayed when it loads, each record ``warmup_iterations`` times; a record that is not a
PredictionLog, names a missing signature or fails to run fails the load naming the record; the
flag turns it off."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.platforms.tensorflow import SavedModelLoader
from jupyter_tfserving.platforms.warmup import WARMUP_FILE


def _version(exported_models: Path, tmp_path: Path) -> Path:
    version = tmp_path / "half_plus_two" / "1"
    shutil.copytree(exported_models / "half_plus_two" / "1", version)
    (version / "assets.extra").mkdir(exist_ok=True)
    return version


def _predict_log(signature: str = "", values=(1.0, 2.0), alias: str = "x") -> bytes:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    record = prediction_log_pb2.PredictionLog()
    request = record.predict_log.request
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = signature
    request.inputs[alias].CopyFrom(tf.make_tensor_proto([[v] for v in values], tf.float32))
    return record.SerializeToString()


def _write(version: Path, records: list[bytes]) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(version / WARMUP_FILE)) as writer:
        for record in records:
            writer.write(record)


def test_warmup_records_are_replayed_before_the_version_is_ready(exported_models, tmp_path):
    version = _version(exported_models, tmp_path)
    _write(version, [_predict_log(), _predict_log(values=(3.0,))])
    loader = SavedModelLoader(str(version), warmup_iterations=3)
    servable = loader.load()
    try:
        report = loader.warmup_report
        assert report is not None
        assert (report.records, report.requests) == (2, 6) and report.seconds >= 0
        x = np.ones((1, 1), np.float32)
        assert servable.run("serving_default", {"x": x})["y"].tolist() == [[2.5]]
    finally:
        servable.close()


def test_without_a_warmup_file_or_with_warmup_off_nothing_is_replayed(exported_models,
                                                                      tmp_path):
    version = _version(exported_models, tmp_path)
    loader = SavedModelLoader(str(version))
    loader.load().close()
    assert loader.warmup_report is None
    _write(version, [b"garbage"])
    off = SavedModelLoader(str(version), warmup=False)
    off.load().close()  # the bad file is not even read
    assert off.warmup_report is None


@pytest.mark.parametrize("records, index, words, code", [
    ([b"\xff\xff not a proto"], 0, "not a PredictionLog", Code.INVALID_ARGUMENT),
    ([_predict_log(), _predict_log(signature="nope")], 1, "no signature nope",
     Code.INVALID_ARGUMENT),
    ([_predict_log(alias="z")], 0, "z", Code.INVALID_ARGUMENT),
])
def test_a_bad_warmup_record_fails_the_load_naming_it(exported_models, tmp_path, records,
                                                      index, words, code):
    version = _version(exported_models, tmp_path)
    _write(version, records)
    with pytest.raises(ServingError) as failed:
        SavedModelLoader(str(version)).load()
    assert failed.value.code is code
    assert f"Warmup record {index} of {version / WARMUP_FILE}" in failed.value.message
    assert words in failed.value.message


def test_a_truncated_warmup_file_is_data_loss(exported_models, tmp_path):
    version = _version(exported_models, tmp_path)
    _write(version, [_predict_log(), _predict_log()])
    path = version / WARMUP_FILE
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ServingError) as failed:
        SavedModelLoader(str(version)).load()
    assert failed.value.code is Code.DATA_LOSS and "after 1 records" in failed.value.message


def test_the_services_warmup_iterations_and_the_status_of_a_warmed_version(exported_models,
                                                                           tmp_path):
    """The service's ``warmup_iterations`` reaches the loader (TF Serving's
    num_request_iterations is a server setting); what ran is in the management JSON of the
    version, and TF Serving's own status answers (REST and gRPC) stay as TF Serving's."""
    from jupyter_tfserving.core.state import ServableState
    from jupyter_tfserving.grpc.codec import status_response
    from jupyter_tfserving.rest.v1 import status_json
    from jupyter_tfserving.service import ModelService, ServiceOptions

    version = _version(exported_models, tmp_path / "models")
    _write(version, [_predict_log(), _predict_log(values=(3.0,))])
    service = ModelService(ServiceOptions(model_root=str(tmp_path / "models"),
                                          file_system_poll_wait_seconds=0, warmup_iterations=3))
    service.start()
    try:
        status = service.manager.wait_for("half_plus_two", 1, [ServableState.AVAILABLE], 60)
        assert status.warmup is not None and status.warmup.requests == 6
        (entry,) = service.control.describe_model("half_plus_two")["versions"]
        assert entry["warmup"] == {"requests": 6, "seconds": status.warmup.seconds}
        (stats,) = service.stats_report()["models"][0]["versions"]
        assert stats["warmup"] == entry["warmup"]
        assert status_json([status]) == {"model_version_status": [{
            "version": "1", "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}
        assert [f.name for f, _ in status_response([status]).model_version_status[0].ListFields()
                ] == ["version", "state", "status"]
    finally:
        service.stop(10)
