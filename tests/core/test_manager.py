from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Iterator

import pytest

from jupyter_tfserving.core.manager import Manager, ManagerOptions
from jupyter_tfserving.core.servable import LoadSpec, WarmupReport
from jupyter_tfserving.core.state import ServableId, ServableState, VersionStatus
from jupyter_tfserving.core.status import Code, ServingError
from tests.core.fakes import FakeLoaderFactory, FakeServable

S, L, A, U, E = (ServableState.START, ServableState.LOADING, ServableState.AVAILABLE,
                 ServableState.UNLOADING, ServableState.END)
TIMEOUT = 5.0

MakeManager = Callable[..., Manager]


@pytest.fixture
def factory() -> FakeLoaderFactory:
    return FakeLoaderFactory()


@pytest.fixture
def make_manager(factory: FakeLoaderFactory) -> Iterator[MakeManager]:
    made: list[Manager] = []

    def make(**options: object) -> Manager:
        rng = options.pop("rng", random.Random(0))
        opts = {"max_num_load_retries": 0, "load_retry_interval_seconds": 0.0, **options}
        manager = Manager(factory, ManagerOptions(**opts), rng=rng)  # type: ignore[arg-type]
        made.append(manager)
        return manager

    yield make
    for script in factory.scripts.values():  # never leave a load blocked on a gate
        if script.gate is not None:
            script.gate.set()
    for manager in made:
        manager.stop(timeout=TIMEOUT)


@pytest.fixture
def manager(make_manager: MakeManager) -> Manager:
    return make_manager()


def spec(name: str, version: int) -> LoadSpec:
    return LoadSpec(path=f"/models/{name}/{version}")


def aspire(manager: Manager, name: str, *versions: int) -> None:
    manager.set_aspired_versions(name, {v: spec(name, v) for v in versions})


def wait(manager: Manager, name: str, version: int, *states: ServableState) -> VersionStatus:
    return manager.wait_for(name, version, states, TIMEOUT)


def served(manager: Manager, name: str = "m", **kwargs: object) -> int:
    with manager.acquire(name, **kwargs) as handle:  # type: ignore[arg-type]
        return handle.id.version


def states(manager: Manager, name: str = "m") -> list[tuple[int, ServableState]]:
    return [(s.version, s.state) for s in manager.version_statuses(name)]


def serving_error(fn: Callable[[], object]) -> ServingError:
    with pytest.raises(ServingError) as info:
        fn()
    return info.value


class Recorder:
    """A listener that records (name, version, state) and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, ServableState]] = []
        self._cond = threading.Condition()

    def __call__(self, servable_id: ServableId, status: VersionStatus) -> None:
        with self._cond:
            self.events.append((servable_id.name, servable_id.version, status.state))
            self._cond.notify_all()

    def wait_for(self, name: str, version: int, state: ServableState) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: (name, version, state) in self.events, TIMEOUT)

    def states(self, name: str, version: int) -> list[ServableState]:
        with self._cond:
            return [s for n, v, s in self.events if (n, v) == (name, version)]

    def index(self, name: str, version: int, state: ServableState) -> int:
        with self._cond:
            return self.events.index((name, version, state))


# ---------------------------------------------------------------------------- loading


def test_first_load_becomes_available(manager: Manager, factory: FakeLoaderFactory) -> None:
    aspire(manager, "m", 1)
    status = wait(manager, "m", 1, A)
    assert status.version == 1 and status.error is None
    assert served(manager) == 1
    assert states(manager) == [(1, A)]
    assert manager.model_names() == ["m"]
    assert factory.specs == [(ServableId("m", 1), spec("m", 1))]
    assert threading.get_ident() not in factory.script("m", 1).attempt_threads


def test_set_aspired_versions_does_not_wait_for_the_load(
    manager: Manager, factory: FakeLoaderFactory
) -> None:
    gate = threading.Event()
    script = factory.script("m", 1, gate=gate)
    aspire(manager, "m", 1)  # returns while the load is held open
    assert states(manager) == [(1, L)]
    assert script.started.wait(TIMEOUT)
    err = serving_error(lambda: manager.acquire("m"))
    assert err.code == Code.NOT_FOUND
    assert err.message == "Servable not found for request: Latest(m)"
    gate.set()
    wait(manager, "m", 1, A)


def test_swap_is_availability_preserving(manager: Manager, factory: FakeLoaderFactory) -> None:
    recorder = Recorder()
    manager.add_listener(recorder)
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    gate = threading.Event()
    factory.script("m", 2, gate=gate)
    aspire(manager, "m", 2)
    assert states(manager) == [(2, L), (1, A)]
    assert served(manager) == 1  # the old version serves while the new one loads
    gate.set()
    wait(manager, "m", 1, E)
    assert served(manager) == 2
    recorder.wait_for("m", 1, E)
    assert recorder.index("m", 2, A) < recorder.index("m", 1, U)
    assert factory.servable("m", 1).close_calls == 1
    assert states(manager) == [(2, A), (1, E)]


def test_resource_preserving_unloads_before_loading(
    make_manager: MakeManager, factory: FakeLoaderFactory
) -> None:
    manager = make_manager(transition_policy="resource_preserving")
    recorder = Recorder()
    manager.add_listener(recorder)
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    handle = manager.acquire("m")
    aspire(manager, "m", 2)
    assert states(manager) == [(2, S), (1, U)]  # 2 waits until 1 is gone
    assert serving_error(lambda: manager.acquire("m")).code == Code.NOT_FOUND
    handle.release()
    wait(manager, "m", 2, A)
    recorder.wait_for("m", 2, A)
    assert recorder.index("m", 1, E) < recorder.index("m", 2, L)


def test_unaspired_start_version_ends_without_loading(
    make_manager: MakeManager, factory: FakeLoaderFactory
) -> None:
    manager = make_manager(transition_policy="resource_preserving")
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    handle = manager.acquire("m")
    aspire(manager, "m", 2)
    aspire(manager, "m", 3)
    assert states(manager) == [(3, S), (2, E), (1, U)]
    handle.release()
    wait(manager, "m", 3, A)
    assert ServableId("m", 2) not in {sid for sid, _ in factory.specs}
    assert [s.error for s in manager.version_statuses("m")] == [None, None, None]


# ---------------------------------------------------------------------------- handles


def test_held_handle_delays_close(manager: Manager, factory: FakeLoaderFactory) -> None:
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    handle = manager.acquire("m")
    aspire(manager, "m", 2)
    wait(manager, "m", 2, A)
    wait(manager, "m", 1, U)
    old = factory.servable("m", 1)
    assert old.close_calls == 0
    assert manager.refcounts("m") == {1: 1, 2: 0}
    err = serving_error(lambda: manager.acquire("m", version=1))
    assert (err.code, err.message) == (Code.NOT_FOUND,
                                       "Servable not found for request: Specific(m, 1)")
    assert served(manager) == 2
    assert handle.servable.run("serving_default", {})["version"][0] == 1
    handle.release()
    wait(manager, "m", 1, E)
    assert old.close_calls == 1
    handle.release()  # idempotent
    assert manager.refcounts("m") == {2: 0}
    assert old.close_calls == 1
    assert serving_error(lambda: handle.servable).code == Code.FAILED_PRECONDITION


def test_handle_is_a_context_manager(manager: Manager) -> None:
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    with manager.acquire("m") as handle:
        assert handle.id == ServableId("m", 1)
        assert manager.refcounts("m") == {1: 1}
    assert handle.released
    assert manager.refcounts("m") == {1: 0}


def test_reaspired_while_unloading_loads_afresh(
    manager: Manager, factory: FakeLoaderFactory
) -> None:
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    handle = manager.acquire("m")
    aspire(manager, "m")
    assert states(manager) == [(1, U)]
    aspire(manager, "m", 1)
    assert states(manager) == [(1, U)]
    handle.release()
    wait(manager, "m", 1, A)
    first, second = factory.servables[ServableId("m", 1)]
    assert first.close_calls == 1 and second.close_calls == 0


# ---------------------------------------------------------------------------- failures


def test_failed_load_ends_with_error_and_old_keeps_serving(
    manager: Manager, factory: FakeLoaderFactory
) -> None:
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    factory.script("m", 2, failures=-1, error=ServingError(Code.NOT_FOUND, "no saved_model.pb"))
    aspire(manager, "m", 2)
    status = wait(manager, "m", 2, E)
    assert status.error is not None
    assert (status.error.code, status.error.message) == (Code.NOT_FOUND, "no saved_model.pb")
    assert served(manager) == 1
    assert states(manager) == [(2, E), (1, A)]


def test_other_exceptions_become_unknown(manager: Manager, factory: FakeLoaderFactory) -> None:
    factory.script("m", 1, failures=-1, error=RuntimeError("boom"))
    aspire(manager, "m", 1)
    error = wait(manager, "m", 1, E).error
    assert error is not None and (error.code, error.message) == (Code.UNKNOWN, "boom")


def test_loader_factory_error_fails_the_load(make_manager: MakeManager) -> None:
    def bad_factory(servable_id: ServableId, load_spec: LoadSpec) -> object:
        raise ServingError(Code.INVALID_ARGUMENT, "unknown platform 'onnx'")

    manager = Manager(bad_factory, ManagerOptions(max_num_load_retries=0))  # type: ignore
    try:
        aspire(manager, "m", 1)
        error = wait(manager, "m", 1, E).error
        assert error is not None and error.code == Code.INVALID_ARGUMENT
    finally:
        manager.stop(TIMEOUT)


def test_the_loaders_warmup_report_is_in_the_status_from_available_on() -> None:
    report = WarmupReport(records=2, requests=6, seconds=0.25)

    class WarmingLoader:
        def __init__(self, servable_id: ServableId) -> None:
            self._id = servable_id
            self.warmup_report: WarmupReport | None = None

        def load(self) -> FakeServable:
            if self._id.version == 1:
                self.warmup_report = report
            return FakeServable(self._id)

    seen: list[VersionStatus] = []
    manager = Manager(lambda servable_id, load_spec: WarmingLoader(servable_id),
                      ManagerOptions(max_num_load_retries=0))
    manager.add_listener(lambda servable_id, status: seen.append(status))
    try:
        aspire(manager, "m", 1, 2)
        assert wait(manager, "m", 1, A).warmup == report
        assert wait(manager, "m", 2, A).warmup is None  # nothing replayed
        aspire(manager, "m", 2)
        assert wait(manager, "m", 1, E).warmup == report  # kept in the history
    finally:
        manager.stop(TIMEOUT)  # delivers every event
    # the AVAILABLE event already carries it; no state before it does
    assert [(s.state, s.warmup) for s in seen if s.version == 1] == [
        (S, None), (L, None), (A, report), (U, report), (E, report)]


def test_retries_honour_max_num_load_retries(
    make_manager: MakeManager, factory: FakeLoaderFactory
) -> None:
    manager = make_manager(max_num_load_retries=3)
    recorder = Recorder()
    manager.add_listener(recorder)
    flaky = factory.script("flaky", 1, failures=2)
    broken = factory.script("broken", 1, failures=-1)
    aspire(manager, "flaky", 1)
    aspire(manager, "broken", 1)
    wait(manager, "flaky", 1, A)
    wait(manager, "broken", 1, E)
    assert flaky.attempts == 3
    assert broken.attempts == 4  # one attempt and three retries
    recorder.wait_for("broken", 1, E)
    recorder.wait_for("flaky", 1, A)
    assert recorder.states("flaky", 1) == [S, L, A]  # LOADING throughout the retries
    assert recorder.states("broken", 1) == [S, L, E]


def test_retries_stop_when_the_version_is_no_longer_aspired(
    make_manager: MakeManager, factory: FakeLoaderFactory
) -> None:
    manager = make_manager(max_num_load_retries=5, load_retry_interval_seconds=60.0)
    script = factory.script("m", 1, failures=-1)
    aspire(manager, "m", 1)
    assert script.started.wait(TIMEOUT)
    aspire(manager, "m")  # wakes the retry wait; no 60 s interval is waited out
    status = wait(manager, "m", 1, E)
    assert status.error is not None
    assert script.attempts == 1


def test_failed_version_is_reloaded_only_after_it_stops_being_aspired(
    manager: Manager, factory: FakeLoaderFactory
) -> None:
    script = factory.script("m", 1, failures=1)  # the first attempt fails, later ones work
    aspire(manager, "m", 1)
    wait(manager, "m", 1, E)
    aspire(manager, "m", 1)  # still aspired: stays failed
    assert states(manager) == [(1, E)]
    assert script.attempts == 1
    aspire(manager, "m")
    assert states(manager) == [(1, E)]  # history is kept
    aspire(manager, "m", 1)  # aspired again: a fresh start
    status = wait(manager, "m", 1, A)
    assert status.error is None
    assert script.attempts == 2


# ---------------------------------------------------------------------------- labels


def test_strict_label_needs_an_available_version(
    manager: Manager, factory: FakeLoaderFactory
) -> None:
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    manager.set_label("m", "stable", 1)
    assert manager.labels("m") == {"stable": 1}
    assert served(manager, label="stable") == 1
    err = serving_error(lambda: manager.set_label("m", "stable", 3))
    assert err.code == Code.FAILED_PRECONDITION
    assert err.message == ("Request to assign label to version 3 of model m, which is not "
                           "currently available for inference")
    gate = threading.Event()
    factory.script("m", 2, gate=gate)
    aspire(manager, "m", 1, 2)
    assert serving_error(lambda: manager.set_label("m", "canary", 2)).code == \
        Code.FAILED_PRECONDITION
    assert serving_error(lambda: manager.set_labels("m", {"a": 1, "b": 2})).code == \
        Code.FAILED_PRECONDITION
    assert manager.labels("m") == {"stable": 1}  # a failed set_labels changes nothing
    gate.set()


def test_pending_labels_apply_when_their_version_is_available(
    manager: Manager, factory: FakeLoaderFactory
) -> None:
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    manager.set_label("m", "stable", 1)
    gate = threading.Event()
    factory.script("m", 2, gate=gate)
    aspire(manager, "m", 1, 2)
    manager.set_labels("m", {"stable": 2, "canary": 1, "new": 2}, pending_ok=True)
    assert manager.labels("m") == {"stable": 1, "canary": 1}  # stable keeps serving 1
    assert manager.pending_labels("m") == {"stable": 2, "new": 2}
    gate.set()
    wait(manager, "m", 2, A)
    assert manager.labels("m") == {"stable": 2, "canary": 1, "new": 2}
    assert manager.pending_labels("m") == {}
    manager.set_labels("m", {"stable": 2}, pending_ok=True)  # replaces: others go
    assert manager.labels("m") == {"stable": 2}


def test_allow_flag_labels_unavailable_versions(make_manager: MakeManager) -> None:
    manager = make_manager(allow_version_labels_for_unavailable_models=True)
    manager.set_label("m", "stable", 7)
    manager.set_labels("m", {"stable": 7, "canary": 8})
    assert manager.labels("m") == {"stable": 7, "canary": 8}
    err = serving_error(lambda: manager.acquire("m", label="stable"))
    assert (err.code, err.message) == (Code.NOT_FOUND,
                                       "Servable not found for request: Specific(m, 7)")
    assert serving_error(lambda: manager.acquire("m")).message == \
        "Servable not found for request: Specific(m, 7)"


def test_unknown_label(manager: Manager) -> None:
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    for name in ("m", "unknown"):
        err = serving_error(lambda name=name: manager.acquire(name, label="nope"))
        assert (err.code, err.message) == (Code.INVALID_ARGUMENT,
                                           "Unrecognized servable version label: nope")


def test_label_on_an_unloaded_version_stays(manager: Manager) -> None:
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    manager.set_label("m", "stable", 1)
    manager.set_label("m", "old", 1)
    aspire(manager, "m", 2)
    wait(manager, "m", 1, E)
    assert manager.labels("m") == {"stable": 1, "old": 1}
    err = serving_error(lambda: manager.acquire("m", label="old"))
    assert (err.code, err.message) == (Code.NOT_FOUND,
                                       "Servable not found for request: Specific(m, 1)")
    manager.remove_label("m", "old")
    manager.remove_label("m", "old")  # a no-op
    manager.remove_label("unknown", "old")
    assert manager.labels("m") == {"stable": 1}


def test_invalid_label_arguments(manager: Manager) -> None:
    assert serving_error(lambda: manager.set_label("m", "", 1)).code == Code.INVALID_ARGUMENT
    assert serving_error(lambda: manager.set_label("m", "x", -1)).code == Code.INVALID_ARGUMENT


# ---------------------------------------------------------------------------- routing


def test_routing_latest_specific_and_errors(manager: Manager) -> None:
    aspire(manager, "m", 1, 2, 3)
    for v in (1, 2, 3):
        wait(manager, "m", v, A)
    assert served(manager) == 3
    assert served(manager, version=1) == 1
    err = serving_error(lambda: manager.acquire("m", version=99))
    assert (err.code, err.message) == (Code.NOT_FOUND,
                                       "Servable not found for request: Specific(m, 99)")
    err = serving_error(lambda: manager.acquire("nope"))
    assert (err.code, err.message) == (Code.NOT_FOUND,
                                       "Servable not found for request: Latest(nope)")
    assert serving_error(lambda: manager.acquire("m", version=1, label="x")).code == \
        Code.INVALID_ARGUMENT
    assert serving_error(lambda: manager.acquire("nope", version=1)).code == Code.NOT_FOUND


def test_stable_and_canary_routing(make_manager: MakeManager) -> None:
    manager = make_manager(rng=random.Random(1234))
    aspire(manager, "m", 1, 2, 3)
    for v in (1, 2, 3):
        wait(manager, "m", v, A)
    manager.set_labels("m", {"stable": 1, "canary": 2})
    assert manager.canary_weight("m") == 0.0
    assert {served(manager) for _ in range(200)} == {1}  # stable, not the latest (3)

    manager.set_canary_weight("m", 0.25)
    assert manager.canary_weight("m") == 0.25
    n = 2000
    to_canary = sum(served(manager) == 2 for _ in range(n))
    assert abs(to_canary / n - 0.25) < 0.04  # ~4 standard deviations

    manager.set_canary_weight("m", 1.0)
    assert {served(manager) for _ in range(200)} == {2}
    assert served(manager, label="stable") == 1
    manager.remove_label("m", "canary")
    assert {served(manager) for _ in range(200)} == {1}
    manager.remove_label("m", "stable")
    assert served(manager) == 3


def test_canary_that_is_not_available_falls_back_to_stable(make_manager: MakeManager) -> None:
    manager = make_manager(allow_version_labels_for_unavailable_models=True)
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    manager.set_labels("m", {"stable": 1, "canary": 5})
    manager.set_canary_weight("m", 1.0)
    assert {served(manager) for _ in range(50)} == {1}


@pytest.mark.parametrize("weight", [-0.1, 1.5, math.nan, True, "0.5"])
def test_canary_weight_must_be_a_fraction(manager: Manager, weight: object) -> None:
    err = serving_error(lambda: manager.set_canary_weight("m", weight))  # type: ignore[arg-type]
    assert err.code == Code.INVALID_ARGUMENT


# ---------------------------------------------------------------------------- status and listeners


def test_version_statuses_are_newest_first_with_history(
    manager: Manager, factory: FakeLoaderFactory
) -> None:
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    aspire(manager, "m", 2)
    wait(manager, "m", 1, E)
    factory.script("m", 3, failures=-1, error=ServingError(Code.DATA_LOSS, "corrupt"))
    aspire(manager, "m", 3)
    wait(manager, "m", 3, E)
    statuses = manager.version_statuses("m")
    assert [(s.version, s.state) for s in statuses] == [(3, E), (2, A), (1, E)]
    assert statuses[0].error is not None and statuses[0].error.code == Code.DATA_LOSS
    assert statuses[1].error is None and statuses[2].error is None
    assert statuses[1].since <= statuses[2].since  # 1 ended after 2 became AVAILABLE
    err = serving_error(lambda: manager.version_statuses("unknown"))
    assert (err.code, err.message) == (Code.NOT_FOUND,
                                       "Could not find any versions of model unknown")
    aspire(manager, "b", 1)
    assert manager.model_names() == ["b", "m"]


def test_listener_sees_every_change_outside_the_lock(manager: Manager) -> None:
    recorder = Recorder()
    seen_refcounts: list[dict[int, int]] = []

    def reentrant(servable_id: ServableId, status: VersionStatus) -> None:
        seen_refcounts.append(manager.refcounts(servable_id.name))  # would deadlock in the lock

    manager.add_listener(recorder)
    manager.add_listener(reentrant)
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    aspire(manager, "m")
    wait(manager, "m", 1, E)
    recorder.wait_for("m", 1, E)
    assert recorder.states("m", 1) == [S, L, A, U, E]
    assert len(seen_refcounts) >= 4


def test_stop_waits_for_handles(manager: Manager, factory: FakeLoaderFactory) -> None:
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    handle = manager.acquire("m")
    stopper = threading.Thread(target=manager.stop, kwargs={"timeout": TIMEOUT})
    stopper.start()
    wait(manager, "m", 1, U)
    assert stopper.is_alive()  # cannot finish: END needs the handle back
    assert factory.servable("m", 1).close_calls == 0
    handle.release()
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    assert factory.servable("m", 1).close_calls == 1
    assert states(manager) == [(1, E)]
    aspire(manager, "m", 2)  # ignored once stopped
    assert states(manager) == [(1, E)]
    assert serving_error(lambda: manager.acquire("m")).code == Code.NOT_FOUND


def test_stop_with_timeout_returns_and_release_still_closes(
    manager: Manager, factory: FakeLoaderFactory
) -> None:
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    handle = manager.acquire("m")
    manager.stop(timeout=0.01)
    assert states(manager) == [(1, U)]
    handle.release()
    wait(manager, "m", 1, E)
    manager.stop(timeout=TIMEOUT)
    assert factory.servable("m", 1).close_calls == 1


def test_stop_finishes_a_load_in_progress(manager: Manager, factory: FakeLoaderFactory) -> None:
    gate = threading.Event()
    factory.script("m", 1, gate=gate)
    aspire(manager, "m", 1)
    stopper = threading.Thread(target=manager.stop, kwargs={"timeout": TIMEOUT})
    stopper.start()
    gate.set()
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    assert states(manager) == [(1, E)]
    assert factory.servable("m", 1).close_calls == 1


def test_options_are_validated(factory: FakeLoaderFactory) -> None:
    for bad in (ManagerOptions(transition_policy="eager"), ManagerOptions(num_load_threads=0),
                ManagerOptions(max_num_load_retries=-1)):
        assert serving_error(lambda bad=bad: Manager(factory, bad)).code == Code.INVALID_ARGUMENT


# ---------------------------------------------------------------------------- concurrency


def test_no_handle_is_ever_on_a_closed_servable(
    make_manager: MakeManager, factory: FakeLoaderFactory
) -> None:
    manager = make_manager(num_load_threads=3)
    aspire(manager, "m", 1)
    wait(manager, "m", 1, A)
    done = threading.Event()
    problems: list[BaseException] = []
    counts = [0] * 6

    def client(i: int) -> None:
        try:
            while not done.is_set():
                with manager.acquire("m") as handle:
                    servable = handle.servable
                    assert not servable.closed.is_set(), f"handle on closed {handle.id}"
                    servable.run("serving_default", {})
                    counts[i] += 1
        except BaseException as exc:  # reported below, in the test thread
            problems.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(counts))]
    for t in threads:
        t.start()
    try:
        for version in range(2, 16):
            aspire(manager, "m", version)
            wait(manager, "m", version, A)
            wait(manager, "m", version - 1, E)
    finally:
        done.set()
        for t in threads:
            t.join(TIMEOUT)
    assert problems == []
    assert all(c > 0 for c in counts)
    manager.stop(TIMEOUT)
    for version in range(1, 16):
        assert factory.servable("m", version).close_calls == 1
