"""The data plane on a real manager and scheduler with a servable written here: classify and
regress results checked once, and TF Serving's signature method-name check as an option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jupyter_tfserving.core.servable import (
    PREDICT_METHOD,
    ExampleBatch,
    Feature,
    SignatureInfo,
    TensorInfo,
)
from jupyter_tfserving.core.state import ServableState
from jupyter_tfserving.core.status import Code, ServingError, SignatureNotFound
from jupyter_tfserving.dataplane import ModelRef
from jupyter_tfserving.service import ModelService, ServiceOptions

# A native TF2 export: every signature is "predict", even one that classifies tf.Examples.
SIGNATURE = SignatureInfo({"examples": TensorInfo("DT_STRING", (-1,))},
                          {"scores": TensorInfo("DT_FLOAT", (-1, 2))}, PREDICT_METHOD)


class TF2Classifier:
    def signatures(self):
        return {"serving_default": SIGNATURE}

    def run(self, signature_name, inputs):
        raise AssertionError("not called")

    def run_examples(self, signature_name, batch):
        return {"scores": np.float32([[f.values[0], 1 - f.values[0]]
                                      for e in batch.examples for f in e.values()])}

    def metadata(self):
        return {"signature_def": {"signature_def": {}}}

    def close(self):
        pass


class Loader:
    def load(self):
        return TF2Classifier()


def make(model_root: Path, check: bool) -> ModelService:
    (model_root / "m" / "1").mkdir(parents=True, exist_ok=True)
    service = ModelService(ServiceOptions(model_root=str(model_root),
                                          file_system_poll_wait_seconds=0, batching=None,
                                          signature_method_name_check=check),
                           loader_factory=lambda servable_id, spec: Loader())
    service.start()
    service.manager.wait_for("m", 1, [ServableState.AVAILABLE], 10)
    return service


BATCH = ExampleBatch([{"p": Feature("float", [0.25])}, {"p": Feature("float", [0.5])}])


@pytest.mark.parametrize("check", [True, False])
def test_signature_method_name_check_is_an_option(tmp_path, check):
    service = make(tmp_path / "models", check)
    try:
        if check:
            with pytest.raises(ServingError) as err:
                service.dataplane.classify(ModelRef("m"), None, BATCH)
            assert err.value.code == Code.INVALID_ARGUMENT
            assert err.value.message.startswith(
                "Expected classification signature method_name to be")
            assert err.value.version == 1
        else:
            version, result = service.dataplane.classify(ModelRef("m"), None, BATCH)
            assert version == 1 and result.labels is None
            assert result.scores.tolist() == [[0.25, 0.75], [0.5, 0.5]]
        with pytest.raises(SignatureNotFound) as missing:
            service.dataplane.regress(ModelRef("m"), "nope", BATCH)
        assert missing.value.signature_name == "nope"
    finally:
        service.stop(5)


class Doubler:
    """y = 2x over a batch dimension."""

    def signatures(self):
        spec = TensorInfo("DT_FLOAT", (-1, 1))
        return {"serving_default": SignatureInfo({"x": spec}, {"y": spec})}

    def run(self, signature_name, inputs):
        return {"y": inputs["x"] * 2}

    def run_examples(self, signature_name, batch):
        raise AssertionError("not called")

    def metadata(self):
        return {"signature_def": {"signature_def": {}}}

    def close(self):
        pass


def test_bulk_predicts_run_in_queues_of_their_own(tmp_path):
    """A bulk job's predicts (``submit_predict(..., bulk=True)``) go to the scheduler's bulk
    lane, in queues apart from online requests' (so online batches go first), and answer the
    same rows; their handle is released when they ran."""
    from jupyter_tfserving.batching import BatchingParameters

    class DoublerLoader:
        def load(self):
            return Doubler()

    (tmp_path / "m" / "1").mkdir(parents=True)
    service = ModelService(ServiceOptions(model_root=str(tmp_path),
                                          file_system_poll_wait_seconds=0,
                                          batching=BatchingParameters()),
                           loader_factory=lambda servable_id, spec: DoublerLoader())
    service.start()
    try:
        service.manager.wait_for("m", 1, [ServableState.AVAILABLE], 10)

        def predict(rows, bulk):
            call = service.dataplane.begin_predict(
                ModelRef("m"), None, lambda sig: {"x": np.float32(rows).reshape(-1, 1)})
            return service.dataplane.submit_predict(call, bulk=bulk)

        bulk = [predict([i, i + 1], True) for i in range(5)]
        online = predict([7], False)
        assert online.result(10)["y"].tolist() == [[14.0]]
        assert [f.result(10)["y"].ravel().tolist() for f in bulk] == [
            [2.0 * i, 2.0 * i + 2] for i in range(5)]
        keys = {stats.key[-1] for stats in service.scheduler.queue_stats()}
        assert keys == {True, False}
        assert service.in_flight().get(("m", 1), 0) == 0
    finally:
        service.stop()
