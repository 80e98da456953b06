"""Shadow traffic on a real service (manager, scheduler, data plane, control plane) serving
fake versions written here: exact differences, the clients' answers untouched, mismatches,
the full queue, the refusals and what ends a shadow."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jupyter_tfserving.batching import BatchingParameters
from jupyter_tfserving.core.servable import (
    CLASSIFY_METHOD,
    ExampleBatch,
    Feature,
    SignatureInfo,
    TensorInfo,
)
from jupyter_tfserving.core.state import ServableState
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.dataplane import ModelRef
from jupyter_tfserving.service import ModelService, ServiceOptions
from jupyter_tfserving.traffic.shadow import ShadowTraffic, compare_output
from tests.fakes import FakeLoader, FakeServable

COLUMN = TensorInfo("DT_FLOAT", (-1, 1))


class Linear(FakeServable):
    """y = 2x + offset, float32, over a batch dimension."""

    offset = 0.0
    output_shape: tuple[int, ...] = (-1, 1)

    def signatures(self):
        return {"serving_default": SignatureInfo({"x": COLUMN},
                                                 {"y": TensorInfo("DT_FLOAT", self.output_shape)})}

    def run(self, signature_name, inputs):
        return {"y": inputs["x"] * np.float32(2) + np.float32(self.offset)}


class PlusHalf(Linear):
    offset = 0.5


class PlusQuarterOfX(Linear):
    """y = 2x + x/4: differs from Linear by |x|/4."""

    def run(self, signature_name, inputs):
        x = inputs["x"]
        return {"y": x * np.float32(2) + x / np.float32(4)}


class Wider(Linear):
    """The same signature names, but y has two columns."""

    output_shape = (-1, 2)

    def run(self, signature_name, inputs):
        return {"y": np.repeat(inputs["x"] * np.float32(2), 2, axis=1)}


class Broken(Linear):
    def run(self, signature_name, inputs):
        raise RuntimeError("the candidate is broken")


def blocked_until(event: threading.Event) -> type[Linear]:
    class Slow(PlusHalf):
        def run(self, signature_name, inputs):
            event.wait(30)
            return super().run(signature_name, inputs)

    return Slow


SCORES = SignatureInfo({"x": COLUMN}, {"scores": TensorInfo("DT_FLOAT", (-1, 3))})


class Scores(FakeServable):
    """Class scores [x, 1 - x, 0] per row (argmax 1 below 0.5, else 0)."""

    flip = False

    def signatures(self):
        return {"serving_default": SCORES}

    def run(self, signature_name, inputs):
        x = inputs["x"][:, 0]
        scores = np.stack([x, 1 - x, np.zeros_like(x)], axis=1)
        if self.flip:  # rows with x >= 0.75 get their first two columns swapped
            swap = x >= 0.75
            scores[swap] = scores[swap][:, [1, 0, 2]]
        return {"scores": scores}


class FlippedScores(Scores):
    flip = True


EXAMPLES = SignatureInfo({"examples": TensorInfo("DT_STRING", (-1,))},
                         {"scores": TensorInfo("DT_FLOAT", (-1, 2))}, CLASSIFY_METHOD)


class Classifier(FakeServable):
    """A classification signature over tf.Examples: scores [p, 1 - p] (+ shift)."""

    shift = 0.0

    def signatures(self):
        return {"serving_default": EXAMPLES}

    def run_examples(self, signature_name, batch):
        return {"scores": np.float32([[f.values[0] + self.shift, 1 - f.values[0]]
                                      for e in batch.examples for f in e.values()])}


class ShiftedClassifier(Classifier):
    shift = -0.125


def serving(model_root: Path, versions: dict[int, Callable[[], Any]],
            **options: Any) -> ModelService:
    """A started service whose model ``m`` has these versions: version 1 labelled ``stable``
    (it serves the unversioned requests), the highest one loaded beside it."""
    (model_root / "m" / "1").mkdir(parents=True)
    options.setdefault("batching", BatchingParameters(num_batch_threads=4))
    service = ModelService(
        ServiceOptions(model_root=str(model_root), file_system_poll_wait_seconds=0, **options),
        loader_factory=lambda servable_id, spec: FakeLoader(versions[servable_id.version]))
    service.start()
    service.manager.wait_for("m", 1, [ServableState.AVAILABLE], 10)
    service.control.set_label("m", "stable", 1)
    for version in sorted(versions)[1:]:
        (model_root / "m" / str(version)).mkdir()
    service.control.reload()
    for version in sorted(versions)[1:]:
        service.manager.wait_for("m", version, [ServableState.AVAILABLE, ServableState.END], 10)
    return service


@pytest.fixture
def services():
    """Services a test started, stopped whatever happens."""
    made: list[ModelService] = []
    yield made
    for service in made:
        service.stop(10)


UNVERSIONED = ModelRef("m")


def predict(service: ModelService, rows: list[float], ref: ModelRef = UNVERSIONED
            ) -> np.ndarray:
    """An online predict of ``rows`` (one column), as a client makes it; its ``y``."""
    call = service.dataplane.begin_predict(
        ref, None, lambda sig: {"x": np.float32(rows).reshape(-1, 1)})
    outputs = service.dataplane.submit_predict(call).result(10)
    return next(iter(outputs.values()))


def settled(service: ModelService | ShadowTraffic, runs: int, timeout: float = 10.0
            ) -> dict[str, Any]:
    """The report of model ``m`` once ``runs`` sampled requests were compared, failed or
    dropped."""
    traffic = service.shadow if isinstance(service, ModelService) else service
    deadline = time.monotonic() + timeout
    while True:
        report = traffic.report("m")
        if report["pairs"] + report["errors"] + report["dropped"] >= runs:
            return report
        assert time.monotonic() < deadline, report
        time.sleep(0.01)


# ----------------------------------------------------------------------------- differences


def test_a_known_difference_is_reported_exactly(tmp_path, services):
    services.append(service := serving(tmp_path, {1: Linear, 2: PlusHalf}))
    started = service.shadow.set("m", 2, 1.0)
    assert started["active"] and started["candidate_version"] == 2 and started["pairs"] == 0
    assert started["agreement"] is None and started["worst"] == []

    batches = [[1.0], [0.0, 2.5], [-3.0], [0.25, 4.0, -1.5], [8.0]]
    for rows in batches:
        assert predict(service, rows).ravel().tolist() == [2 * x for x in rows]
    # Requests naming a version or a label are not mirrored.
    predict(service, [1.0], ModelRef("m", version=1))
    predict(service, [1.0], ModelRef("m", label="stable"))
    predict(service, [1.0], ModelRef("m", version=2))

    report = settled(service, len(batches))
    assert (report["pairs"], report["errors"], report["dropped"]) == (5, 0, 0)
    assert report["mismatches"] == 0 and report["agreement"] == 0.0
    y = report["outputs"]["y"]
    assert y["pairs"] == 5 and y["mismatches"] == 0 and y["agreement"] == 0.0
    assert y["max_abs_diff"] == 0.5 and y["mean_abs_diff"] == 0.5
    assert y["argmax_agreement"] is None
    assert all(abs(q - 0.5) <= 0.005 for q in y["abs_diff_quantiles"].values())
    assert report["latency_us"]["serving"]["count"] == 5
    assert report["latency_us"]["shadow"]["count"] == 5
    assert all(report["latency_us"][side]["p50"] > 0 for side in ("serving", "shadow"))
    assert len(report["worst"]) == 5
    assert {(w["output"], w["max_abs_diff"], w["mismatch"], w["serving_version"],
             w["request"]) for w in report["worst"]} == {("y", 0.5, None, 1, None)}
    assert service.in_flight().get(("m", 2), 0) == 0  # every shadow handle was released

    stats = {m["name"]: m for m in service.stats_report()["models"]}
    assert stats["m"]["shadow"] == report


class SlowPlusHalf(PlusHalf):
    """PlusHalf taking 30 ms per run."""

    def run(self, signature_name, inputs):
        time.sleep(0.03)
        return super().run(signature_name, inputs)


def test_latencies_compare_the_model_runs(tmp_path, services):
    """Both sides' latency is the model's run of the batch that answered (the candidate's
    wait in the low-priority lane left out): a candidate that runs 30 ms shows p50 >= 30 ms,
    the serving version (a multiplication) well under it."""
    services.append(service := serving(tmp_path, {1: Linear, 2: SlowPlusHalf}))
    service.shadow.set("m", 2, 1.0)
    for i in range(4):
        predict(service, [float(i)])
        settled(service, i + 1)
    latency = service.shadow.report("m")["latency_us"]
    assert latency["shadow"]["count"] == latency["serving"]["count"] == 4
    assert latency["shadow"]["p50"] >= 30_000 * 0.99  # the sketch's 1% accuracy
    assert latency["serving"]["p99"] < 30_000


def test_class_scores_report_argmax_agreement(tmp_path, services):
    services.append(service := serving(tmp_path, {1: Scores, 2: FlippedScores}))
    service.shadow.set("m", 2, 1.0)
    for rows in ([0.0, 0.25], [0.75, 1.0], [0.25, 0.75]):
        predict(service, rows)
    report = settled(service, 3)
    scores = report["outputs"]["scores"]
    # Rows: 0.0 and 0.25 agree (twice for 0.25), 0.75 and 1.0 flip (0.75 twice): 3 of 6.
    assert scores["argmax_agreement"] == 0.5
    assert report["agreement"] == pytest.approx(1 / 3) and scores["agreement"] == report[
        "agreement"]
    assert scores["max_abs_diff"] == 1.0 and report["mismatches"] == 0
    assert [w["max_abs_diff"] for w in report["worst"]] == [1.0, 0.5, 0.0]


def test_classify_requests_are_mirrored_through_run_examples(tmp_path, services):
    services.append(service := serving(tmp_path, {1: Classifier, 2: ShiftedClassifier}))
    service.shadow.set("m", 2, 1.0)
    batch = ExampleBatch([{"p": Feature("float", [0.25])}, {"p": Feature("float", [0.5])}])
    version, result = service.dataplane.classify(ModelRef("m"), None, batch)
    assert version == 1 and result.scores.tolist() == [[0.25, 0.75], [0.5, 0.5]]
    report = settled(service, 1)
    assert report["pairs"] == 1 and report["outputs"]["scores"]["max_abs_diff"] == 0.125
    # [0.5, 0.5] has argmax 0, [0.375, 0.5] argmax 1; the 0.25 row agrees.
    assert report["outputs"]["scores"]["argmax_agreement"] == 0.5


def test_outputs_of_different_shapes_are_a_mismatch(tmp_path, services):
    services.append(service := serving(tmp_path, {1: Linear, 2: Wider}))
    service.shadow.set("m", 2, 1.0)
    for rows in ([1.0], [2.0, 3.0]):
        predict(service, rows)
    report = settled(service, 2)
    assert (report["pairs"], report["mismatches"], report["errors"]) == (2, 2, 0)
    assert report["agreement"] == 0.0
    y = report["outputs"]["y"]
    assert y["mismatches"] == 2 and y["max_abs_diff"] is None and y["mean_abs_diff"] is None
    assert sorted(w["mismatch"] for w in report["worst"]) == [
        "shape [1, 1] vs [1, 2]", "shape [2, 1] vs [2, 2]"]


def test_compare_output_rules():
    f32 = np.float32
    assert compare_output(f32([[1, 2]]), f32([[1, 2]])).agrees
    assert compare_output(f32([1.0]), f32([1.0 + 1e-7])).agrees  # within np.allclose
    assert compare_output(f32([1, 2]), np.float64([1, 2])).mismatch == "dtype float32 vs float64"
    assert compare_output(f32([1]), None).mismatch == "missing from the candidate's outputs"
    nan = compare_output(f32([np.nan, 1]), f32([np.nan, 1]))
    assert nan.agrees and nan.max_abs_diff == 0.0
    one_sided = compare_output(f32([np.nan, 1]), f32([0, 3]))
    assert not one_sided.agrees and one_sided.max_abs_diff == 2.0  # the NaN is left out
    strings = compare_output(np.array([b"a", b"b"], object), np.array([b"a", b"c"], object))
    assert strings.mismatch is None and not strings.agrees and strings.max_abs_diff is None
    assert compare_output(np.array([b"a"], object), np.array([b"a"], "S1")).agrees
    empty = compare_output(f32(np.zeros((0, 3))), f32(np.zeros((0, 3))))
    assert empty.agrees and empty.max_abs_diff == 0.0
    scalar = compare_output(np.float32(1.0), np.float32(1.5))
    assert not scalar.agrees and scalar.max_abs_diff == 0.5
    assert compare_output(np.array([1 + 1j]), np.array([1 + 2j])).max_abs_diff == 1.0
    assert not compare_output(np.array([True, False]), np.array([True, True])).agrees


# ----------------------------------------------------------------------------- the clients


@pytest.mark.parametrize("candidate", ["broken", "slow"])
def test_the_clients_answers_never_depend_on_the_shadow(tmp_path, services, candidate):
    release = threading.Event()
    versions = {1: Linear, 2: Broken if candidate == "broken" else blocked_until(release)}
    services.append(service := serving(tmp_path, versions))
    batches = [[float(i), i + 0.5] for i in range(8)]
    try:
        without = [predict(service, rows) for rows in batches]
        service.shadow.set("m", 2, 1.0)
        # The slow candidate does not answer until released: the clients get theirs anyway.
        with_shadow = [predict(service, rows) for rows in batches]
        for a, b in zip(without, with_shadow, strict=True):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    finally:
        release.set()
    report = settled(service, len(batches))
    if candidate == "broken":
        assert (report["errors"], report["pairs"]) == (8, 0)
    else:
        assert report["pairs"] + report["dropped"] == 8 and report["pairs"] >= 1
        assert report["outputs"]["y"]["max_abs_diff"] == 0.5


def test_a_full_shadow_queue_drops_and_counts(tmp_path, services):
    release = threading.Event()
    services.append(service := serving(tmp_path, {1: Linear, 2: blocked_until(release)},
                                       shadow_max_pending=1))
    try:
        service.shadow.set("m", 2, 1.0)
        for i in range(4):
            predict(service, [float(i)])
        report = settled(service, 3)  # the first run waits for its candidate
        assert (report["dropped"], report["pairs"]) == (3, 0)
    finally:
        release.set()
    report = settled(service, 4)
    assert (report["pairs"], report["dropped"], report["errors"]) == (1, 3, 0)


def test_copies_past_the_cpu_budget_are_dropped(tmp_path, services):
    """The shadow's thread may spend ``max_cpu_share`` of a core: with a budget no copy fits
    in, the first copy (taken while the budget is not empty) is compared and the copies
    sampled after it, before the budget refills, are dropped and counted."""
    services.append(service := serving(tmp_path, {1: Linear, 2: PlusHalf},
                                       shadow_max_cpu_share=1e-9))
    service.shadow.set("m", 2, 1.0)
    predict(service, [1.0])
    assert settled(service, 1)["pairs"] == 1
    for i in range(5):
        predict(service, [float(i)])
    report = settled(service, 6)
    assert (report["pairs"], report["dropped"]) == (1, 5)
    with pytest.raises(ValueError, match="max_cpu_share"):
        ShadowTraffic(service.manager, service.dataplane, service.executor,
                      serving_version=service.control.serving_version, max_cpu_share=0)


def test_a_fraction_samples_requests(tmp_path, services):
    services.append(service := serving(tmp_path, {1: Linear, 2: PlusHalf}))
    traffic = ShadowTraffic(service.manager, service.dataplane, service.executor,
                            serving_version=service.control.serving_version,
                            rng=random.Random(3))
    service.dataplane.add_exchange_observer(traffic.observe)
    try:
        traffic.set("m", 2, 0.25)
        for i in range(40):
            predict(service, [float(i)])
        # One draw per unversioned request (in whatever order their exchanges come).
        draws = random.Random(3)
        expected = sum(draws.random() < 0.25 for _ in range(40))
        assert 0 < expected < 40
        assert settled(traffic, expected)["pairs"] == expected
        predict(service, [1.0], ModelRef("m", version=1))  # no draw
        service.dataplane.remove_exchange_observer(traffic.observe)
        assert traffic.report("m")["pairs"] == expected
    finally:
        traffic.stop(5)


# ----------------------------------------------------------------------------- the worst pairs


def test_worst_pairs_are_bounded_and_keep_requests_only_while_logging(tmp_path, services):
    services.append(service := serving(tmp_path, {1: Linear, 2: PlusQuarterOfX}))
    logging = [True]
    traffic = ShadowTraffic(service.manager, service.dataplane, service.executor,
                            serving_version=service.control.serving_version,
                            logging_on=lambda model: logging[0])
    service.dataplane.add_exchange_observer(traffic.observe)
    try:
        traffic.set("m", 2, 1.0)
        for x in range(1, 13):
            predict(service, [float(x)])
        settled(traffic, 12)

        def encode(request: Any) -> dict[str, Any]:
            return {name: value.tolist() for name, value in request.items()}

        report = traffic.report("m", encode)
        assert [w["max_abs_diff"] for w in report["worst"]] == [x / 4 for x in range(12, 2, -1)]
        assert report["worst"][0]["request"] == {"x": [[12.0]]}
        logging[0] = False
        assert all(w["request"] is None for w in traffic.report("m", encode)["worst"])
    finally:
        traffic.stop(5)


# ----------------------------------------------------------------------------- refusals


def refused(fn: Callable[[], Any], code: Code, *words: str) -> None:
    with pytest.raises(ServingError) as err:
        fn()
    assert err.value.code == code, err.value
    assert all(w in err.value.message for w in words), err.value.message


def test_refusals(tmp_path, services):
    class FailsToLoad:
        def __init__(self) -> None:
            raise ServingError(Code.INVALID_ARGUMENT, "no such model")

    services.append(service := serving(tmp_path, {1: Linear, 2: FailsToLoad},
                                       manager=_no_retries()))
    shadow = service.shadow
    refused(lambda: shadow.set("m", 2, 1.5), Code.INVALID_ARGUMENT, "between 0 and 1")
    refused(lambda: shadow.set("m", 2, True), Code.INVALID_ARGUMENT, "fraction")
    refused(lambda: shadow.set("m", None, 0.5), Code.INVALID_ARGUMENT, "version")
    refused(lambda: shadow.set("m", 1, 1.0), Code.FAILED_PRECONDITION,
            "Version 1 serves the unversioned requests of model m")
    refused(lambda: shadow.set("m", 2, 1.0), Code.FAILED_PRECONDITION,
            "Version 2 of model m is END", "AVAILABLE")
    refused(lambda: shadow.set("m", 7, 1.0), Code.FAILED_PRECONDITION, "Version 7", "unknown")
    refused(lambda: shadow.set("nope", 1, 1.0), Code.NOT_FOUND)
    refused(lambda: shadow.set("m", None, 0), Code.NOT_FOUND, "no shadow")
    refused(lambda: shadow.report("m"), Code.NOT_FOUND, "Model m has no shadow")
    assert shadow.maybe_report("m") is None
    assert {m["name"]: m["shadow"] for m in service.stats_report()["models"]} == {"m": None}


def _no_retries() -> Any:
    from jupyter_tfserving.core.manager import ManagerOptions

    return ManagerOptions(max_num_load_retries=0)


class IntInput(Linear):
    def signatures(self):
        return {"serving_default": SignatureInfo({"x": TensorInfo("DT_INT32", (-1, 1))},
                                                 {"y": COLUMN})}


class OtherOutput(Linear):
    def signatures(self):
        return {"serving_default": SignatureInfo({"x": COLUMN}, {"z": COLUMN})}


class MoreSignatures(Linear):
    def signatures(self):
        return {**super().signatures(), "extra": super().signatures()["serving_default"]}


@pytest.mark.parametrize(("candidate", "difference"), [
    (IntInput, "signature serving_default: input x is DT_FLOAT in the serving version and "
               "DT_INT32 in the candidate"),
    (OtherOutput, "signature serving_default: outputs differ: the candidate lacks y; the "
                  "candidate has z besides"),
    (MoreSignatures, "signatures differ: the candidate has extra besides"),
])
def test_a_candidate_with_other_signatures_is_refused(tmp_path, services, candidate,
                                                      difference):
    services.append(service := serving(tmp_path, {1: Linear, 2: candidate}))
    refused(lambda: service.shadow.set("m", 2, 1.0), Code.INVALID_ARGUMENT,
            f"Version 2 of model m cannot shadow version 1: {difference}")


# ----------------------------------------------------------------------------- the end


def ended(service: ModelService, reason: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (report := service.shadow.report("m"))["active"]:
        assert time.monotonic() < deadline, report
        time.sleep(0.01)
    assert report["end_reason"] == reason and report["ended_at"] >= report["started_at"]
    return report


def test_promote_rollback_unload_and_fraction_0_end_a_shadow(tmp_path, services):
    services.append(service := serving(tmp_path, {1: Linear, 2: PlusHalf}))
    shadow, control = service.shadow, service.control

    shadow.set("m", 2, 1.0)
    predict(service, [1.0])
    settled(service, 1)
    kept = shadow.set("m", 2, 0.5)  # a new fraction keeps the figures
    assert kept["fraction"] == 0.5 and kept["pairs"] == 1
    stopped = shadow.set("m", None, 0)
    assert not stopped["active"] and stopped["end_reason"] == "stopped"
    assert stopped["pairs"] == 1 and stopped["fraction"] == 0.5

    shadow.set("m", 2, 1.0)
    assert shadow.report("m")["pairs"] == 0  # a new shadow, a new report
    control.promote("m", 2)
    ended(service, "promoted")
    predict(service, [1.0])  # answered by version 2 now: not recorded
    assert shadow.report("m")["pairs"] == 0

    shadow.set("m", 1, 1.0)  # version 1 is kept loaded for rollback
    control.rollback("m")
    ended(service, "rolled back")

    shadow.set("m", 2, 1.0)
    control.unload_version("m", 2)
    report = ended(service, "unloaded")
    refused(lambda: shadow.set("m", 2, 1.0), Code.FAILED_PRECONDITION, "AVAILABLE")
    assert service.stats_report()["models"][0]["shadow"] == report
