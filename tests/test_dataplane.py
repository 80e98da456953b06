"""The data plane on a real manager and scheduler with a servable written here: classify and
regress results checked once, and TF Serving's signature method-name check as an option."""

from __future__ import annotations

import time
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
from jupyter_tfserving.core.status import Code, ServingError, SignatureNotFound
from jupyter_tfserving.dataplane import ModelRef
from jupyter_tfserving.service import ModelService
from tests.fakes import FakeServable, fake_service

# A native TF2 export: every signature is "predict", even one that classifies tf.Examples.
SIGNATURE = SignatureInfo({"examples": TensorInfo("DT_STRING", (-1,))},
                          {"scores": TensorInfo("DT_FLOAT", (-1, 2))}, PREDICT_METHOD)


class TF2Classifier(FakeServable):
    def signatures(self):
        return {"serving_default": SIGNATURE}

    def run_examples(self, signature_name, batch):
        return {"scores": np.float32([[f.values[0], 1 - f.values[0]]
                                      for e in batch.examples for f in e.values()])}


def make(model_root: Path, check: bool) -> ModelService:
    return fake_service(model_root, TF2Classifier, batching=None,
                        signature_method_name_check=check)


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


class Doubler(FakeServable):
    """y = 2x over a batch dimension."""

    def signatures(self):
        spec = TensorInfo("DT_FLOAT", (-1, 1))
        return {"serving_default": SignatureInfo({"x": spec}, {"y": spec})}

    def run(self, signature_name, inputs):
        return {"y": inputs["x"] * 2}


def test_bulk_predicts_run_in_queues_of_their_own(tmp_path):
    """A bulk job's predicts (``submit_predict(..., bulk=True)``) go to the scheduler's bulk
    lane, in queues apart from online requests' (so online batches go first), and answer the
    same rows; their handle is released when they ran."""
    from jupyter_tfserving.batching import BatchingParameters

    service = fake_service(tmp_path, Doubler, batching=BatchingParameters())
    try:
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
        assert keys == {"bulk", "online"}
        assert service.in_flight().get(("m", 1), 0) == 0
    finally:
        service.stop()


def test_exchanges_report_successful_online_requests(tmp_path):
    """Observers get each successful online request once (predict with its inputs and every
    output; classify with its examples), after the answer; bulk rows, failures and a removed
    observer get nothing, and an observer that raises never reaches the client."""
    from jupyter_tfserving.batching import BatchingParameters
    from jupyter_tfserving.dataplane import Exchange

    class Both(Doubler):
        def run_examples(self, signature_name, batch):
            return {"outputs": np.float32([[1.0]] * len(batch.examples))}

    service = fake_service(tmp_path, Both, batching=BatchingParameters(),
                           signature_method_name_check=False)
    seen: list[Exchange] = []

    def broken(exchange: Exchange) -> None:
        raise RuntimeError("observer bug")

    try:
        service.dataplane.add_exchange_observer(seen.append)
        service.dataplane.add_exchange_observer(broken)

        def predict(rows, bulk=False):
            call = service.dataplane.begin_predict(
                ModelRef("m"), None, lambda sig: {"x": np.float32(rows).reshape(-1, 1)})
            return service.dataplane.submit_predict(call, bulk=bulk)

        assert predict([3]).result(10)["y"].tolist() == [[6.0]]
        predict([5], bulk=True).result(10)
        failing = service.dataplane.begin_predict(
            ModelRef("m", version=1), None, lambda sig: {"x": np.array([["not a number"]])})
        with pytest.raises(ServingError):  # numpy cannot double strings
            service.dataplane.submit_predict(failing).result(10)
        version, _ = service.dataplane.regress(ModelRef("m", label=None), None, BATCH)
        assert version == 1
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        predict_exchange, regress_exchange = seen
        assert predict_exchange.ref == ModelRef("m") and predict_exchange.version == 1
        assert predict_exchange.method == "predict"
        assert predict_exchange.signature_name == "serving_default"
        assert predict_exchange.inputs["x"].tolist() == [[3.0]]
        assert predict_exchange.outputs["y"].tolist() == [[6.0]]
        assert predict_exchange.examples is None and predict_exchange.seconds >= 0
        assert regress_exchange.method == "regress" and regress_exchange.inputs is None
        assert regress_exchange.examples is BATCH
        service.dataplane.remove_exchange_observer(seen.append)
        predict([4]).result(10)
        assert len(seen) == 2
    finally:
        service.stop()
