from __future__ import annotations

import pytest

from jupyter_tfserving.core.state import ServableState
from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.core.transition_policy import (
    Action,
    Snapshot,
    availability_preserving,
    get_policy,
    resource_preserving,
)

S, L, A, U, E = (ServableState.START, ServableState.LOADING, ServableState.AVAILABLE,
                 ServableState.UNLOADING, ServableState.END)


def snaps(*rows: tuple[int, ServableState, bool]) -> list[Snapshot]:
    return [Snapshot(v, state, aspired) for v, state, aspired in rows]


def load(v: int) -> Action:
    return Action("load", v)


def unload(v: int) -> Action:
    return Action("unload", v)


AVAILABILITY_CASES = [
    pytest.param([], [], id="empty"),
    pytest.param([(1, S, True)], [load(1)], id="first-load"),
    pytest.param([(1, S, True), (3, S, True), (2, S, True)], [load(3), load(2), load(1)],
                 id="loads-highest-first"),
    pytest.param([(1, A, False), (2, S, True)], [load(2)], id="new-before-old-unloads"),
    pytest.param([(1, A, False), (2, L, True)], [], id="old-serves-while-new-loads"),
    pytest.param([(1, A, False), (2, A, True)], [unload(1)], id="unload-once-new-available"),
    pytest.param([(1, A, False)], [unload(1)], id="no-aspired-at-all"),
    pytest.param([(1, A, False), (2, A, False)], [unload(1), unload(2)], id="no-aspired-both"),
    pytest.param([(1, A, False), (2, A, False), (3, L, True)], [unload(1)],
                 id="several-unaspired-keep-highest"),
    pytest.param([(1, A, False), (2, A, False), (4, A, False), (5, S, True)],
                 [unload(1), unload(2), load(5)], id="several-unaspired-and-new"),
    pytest.param([(1, A, False), (2, E, True)], [], id="failed-aspired-keeps-old"),
    pytest.param([(1, E, True)], [], id="failed-is-not-reloaded"),
    pytest.param([(1, E, False), (2, E, False)], [], id="history-only"),
    pytest.param([(1, U, False), (2, A, True)], [], id="already-unloading"),
    pytest.param([(1, L, False), (2, A, True)], [], id="unaspired-loading-waits"),
    pytest.param([(1, A, True), (2, A, True), (3, S, False)], [], id="unaspired-start-ignored"),
]


@pytest.mark.parametrize(("rows", "expected"), AVAILABILITY_CASES)
def test_availability_preserving(rows: list, expected: list[Action]) -> None:
    assert availability_preserving(snaps(*rows)) == expected


RESOURCE_CASES = [
    pytest.param([], [], id="empty"),
    pytest.param([(1, S, True)], [load(1)], id="first-load"),
    pytest.param([(1, A, False), (2, S, True)], [unload(1)], id="unload-before-load"),
    pytest.param([(1, U, False), (2, S, True)], [], id="wait-for-unload"),
    pytest.param([(1, L, False), (2, S, True)], [], id="wait-for-unaspired-load"),
    pytest.param([(1, E, False), (2, S, True)], [load(2)], id="load-after-old-ended"),
    pytest.param([(1, A, False), (2, A, False), (3, S, True)], [unload(1), unload(2)],
                 id="unload-all-unaspired"),
    pytest.param([(1, A, True), (2, S, True), (3, S, True)], [load(3), load(2)],
                 id="aspired-available-does-not-block"),
    pytest.param([(1, E, True), (2, A, False)], [unload(2)], id="failed-aspired"),
    pytest.param([(1, E, True)], [], id="failed-is-not-reloaded"),
]


@pytest.mark.parametrize(("rows", "expected"), RESOURCE_CASES)
def test_resource_preserving(rows: list, expected: list[Action]) -> None:
    assert resource_preserving(snaps(*rows)) == expected


@pytest.mark.parametrize("policy", [availability_preserving, resource_preserving])
def test_fixed_point(policy) -> None:
    """Applying a policy's actions and asking again yields nothing new until a load or an
    unload completes."""
    state = {1: (A, False), 2: (A, False), 3: (S, True), 4: (S, True)}
    for action in policy(snaps(*[(v, s, a) for v, (s, a) in state.items()])):
        s, a = state[action.version]
        state[action.version] = (L if action.kind == "load" else U, a)
    assert policy(snaps(*[(v, s, a) for v, (s, a) in state.items()])) == []


def test_get_policy() -> None:
    assert get_policy("availability_preserving") is availability_preserving
    assert get_policy("resource_preserving") is resource_preserving
    with pytest.raises(ServingError) as info:
        get_policy("eager")
    assert info.value.code == Code.INVALID_ARGUMENT
