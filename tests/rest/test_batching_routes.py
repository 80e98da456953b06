"""Batching through the real server: requests from concurrent callers share batches and each
gets its own rows; a full queue is 503 at once; a deadline is 504 and still frees the version.

The model is a test platform ("gated") registered with the platform registry: its run blocks on
an Event, so a test decides exactly when a batch finishes while other requests queue up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from jupyter_tfserving import platforms
from jupyter_tfserving.core.servable import SignatureInfo, TensorInfo
from jupyter_tfserving.core.status import unimplemented

SERVICE = "jupyter_tfserving.service"


class GatedServable:
    """y = 2x on x: float [-1, 1]; ``run`` records each batch's rows and waits for ``gate``."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[float]] = []

    def signatures(self):
        spec = TensorInfo("DT_FLOAT", (-1, 1))
        return {"serving_default": SignatureInfo({"x": spec}, {"y": spec})}

    def run(self, name, inputs):
        self.batches.append(inputs["x"][:, 0].tolist())
        self.entered.set()
        assert self.gate.wait(30)
        return {"y": inputs["x"] * 2}

    def run_examples(self, name, batch):
        raise unimplemented("no examples")

    def metadata(self):
        return {"signature_def": {"signature_def": {}}}

    def close(self) -> None:
        self.gate.set()


@pytest.fixture
def gated(model_root: Path):
    servable = GatedServable()

    class Loader:
        def load(self):
            return servable

    platforms.register_platform("gated", lambda _id, _spec: Loader())
    (model_root / "gated" / "1").mkdir(parents=True)
    (model_root / "models.config").write_text(
        'model_config_list { config { name: "gated" base_path: "gated" model_platform: "gated" } }'
    )
    yield servable
    servable.gate.set()
    platforms._REGISTRY.pop("gated", None)


def _queued_rows(jp_serverapp) -> int:
    service = jp_serverapp.web_app.settings[SERVICE]
    return sum(q.enqueued_rows for q in service.scheduler.queue_stats())


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def _predict(rest, value: float):
    code, data, _ = await rest.call("/v1/models/gated:predict", {"instances": [[value]]})
    return code, data


@pytest.mark.parametrize("tfserving_config", [{"num_batch_threads": 1}])
async def test_queued_requests_share_a_batch_and_get_their_own_rows(gated, rest, jp_serverapp):
    await rest.wait_for("gated", 1)
    first = asyncio.create_task(_predict(rest, 100.0))
    await _until(gated.entered.is_set)
    others = [asyncio.create_task(_predict(rest, float(v))) for v in range(1, 8)]
    await _until(lambda: _queued_rows(jp_serverapp) == 7)
    gated.gate.set()
    assert await first == (200, {"predictions": [[200.0]]})
    for v, task in zip(range(1, 8), others, strict=True):
        assert await task == (200, {"predictions": [[2.0 * v]]})
    assert [len(b) for b in gated.batches] == [1, 7]
    assert sorted(gated.batches[1]) == [float(v) for v in range(1, 8)]
    code, text, _ = await rest.call("/monitoring/prometheus/metrics")
    assert (
        ':tensorflow:serving:batching_session:input_batch_size_sum{model_name="gated"} 8.0' in text
    )


@pytest.mark.parametrize("tfserving_config", [
    {"num_batch_threads": 1, "max_batch_size": 1, "max_enqueued_batches": 1}])
async def test_a_full_queue_answers_503_at_once(gated, rest, jp_serverapp):
    await rest.wait_for("gated", 1)
    running = asyncio.create_task(_predict(rest, 1.0))
    await _until(gated.entered.is_set)
    queued = asyncio.create_task(_predict(rest, 2.0))
    await _until(lambda: _queued_rows(jp_serverapp) == 1)
    code, data = await _predict(rest, 3.0)
    assert code == 503 and "full" in data["error"]
    gated.gate.set()
    assert await running == (200, {"predictions": [[2.0]]})
    assert await queued == (200, {"predictions": [[4.0]]})


@pytest.mark.parametrize("tfserving_config", [{"rest_api_timeout_in_ms": 300}])
async def test_a_deadline_answers_504_and_frees_the_version(gated, rest, jp_serverapp):
    await rest.wait_for("gated", 1)
    code, data = await _predict(rest, 1.0)
    assert code == 504 and "deadline" in data["error"].lower()
    service = jp_serverapp.web_app.settings[SERVICE]
    assert service.in_flight() == {("gated", 1): 1}  # the model is still running it
    gated.gate.set()
    await _until(lambda: service.in_flight() == {("gated", 1): 0})
    assert await _predict(rest, 2.0) == (200, {"predictions": [[4.0]]})


@pytest.mark.parametrize("tfserving_config", [{"enable_batching": False}])
async def test_batching_off_runs_each_request_alone(gated, rest):
    await rest.wait_for("gated", 1)
    gated.gate.set()
    results = await asyncio.gather(*(_predict(rest, float(v)) for v in range(6)))
    assert results == [(200, {"predictions": [[2.0 * v]]}) for v in range(6)]
    assert [len(b) for b in gated.batches] == [1] * 6


async def test_signatures_without_a_batch_dimension_run_unbatched(rest, publish, jp_serverapp):
    publish("multi", 1)
    await rest.wait_for("multi", 1)
    code, data, _ = await rest.call("/v1/models/multi:predict",
                                    {"signature_name": "scalar", "inputs": 2.0})
    assert (code, data) == (200, {"outputs": 6.0})
    service = jp_serverapp.web_app.settings[SERVICE]
    assert service.scheduler.queue_stats() == []
    code, data, _ = await rest.call("/v1/models/multi:predict", {
        "inputs": {"a": [[1.0, 1.0]], "b": [1], "s": ["x"]}})
    assert code == 200
    assert len(service.scheduler.queue_stats()) == 1


@pytest.mark.parametrize("tfserving_config", [{"num_batch_threads": 1}])
async def test_rows_of_other_shapes_go_to_their_own_queue(gated, rest, jp_serverapp):
    await rest.wait_for("gated", 1)
    gated.gate.set()
    assert await _predict(rest, 1.0) == (200, {"predictions": [[2.0]]})
    code, data, _ = await rest.call("/v1/models/gated:predict", {"instances": [[1.0, 2.0]]})
    assert (code, data) == (200, {"predictions": [[2.0, 4.0]]})
    service = jp_serverapp.web_app.settings[SERVICE]
    assert len(service.scheduler.queue_stats()) == 2


@pytest.mark.parametrize("tfserving_config", [
    {"num_batch_threads": 1, "pad_variable_length_inputs": True}])
async def test_padding_lets_rows_of_other_lengths_share_a_queue(gated, rest, jp_serverapp):
    await rest.wait_for("gated", 1)
    gated.gate.set()
    assert await _predict(rest, 1.0) == (200, {"predictions": [[2.0]]})
    code, data, _ = await rest.call("/v1/models/gated:predict", {"instances": [[1.0, 2.0]]})
    assert (code, data) == (200, {"predictions": [[2.0, 4.0]]})
    service = jp_serverapp.web_app.settings[SERVICE]
    assert len(service.scheduler.queue_stats()) == 1
