"""The one routing rule (DESIGN §3): the route the manager draws from and the split reported."""

from __future__ import annotations

from jupyter_tfserving.core.routing import Route, traffic_split, unversioned_route


def test_route_without_stable_is_the_latest_available():
    assert unversioned_route({}, 0.0) == Route(None, None, 0.0)
    assert unversioned_route({"canary": 2}, 0.5) == Route(None, None, 0.0)
    assert unversioned_route({"other": 2}, 0.5) == Route(None, None, 0.0)


def test_route_with_stable_and_canary():
    assert unversioned_route({"stable": 1}, 0.5) == Route(1, None, 0.0)
    assert unversioned_route({"stable": 1, "canary": 2}, 0.0) == Route(1, None, 0.0)
    assert unversioned_route({"stable": 1, "canary": 2}, 0.25) == Route(1, 2, 0.25)
    assert unversioned_route({"stable": 2, "canary": 2}, 0.25) == Route(2, None, 0.0)


def test_traffic_split_rule():
    assert traffic_split({}, 0.0, {1, 3}) == {3: 1.0}
    assert traffic_split({}, 0.0, set()) == {}
    assert traffic_split({"stable": 1}, 0.5, {1, 2}) == {1: 1.0}
    assert traffic_split({"stable": 1}, 0.0, {2}) == {}  # stable not AVAILABLE: nothing served
    assert traffic_split({"stable": 1, "canary": 2}, 0.5, {1, 2}) == {1: 0.5, 2: 0.5}
    assert traffic_split({"stable": 1, "canary": 2}, 0.5, {1}) == {1: 1.0}
    assert traffic_split({"stable": 1, "canary": 2}, 1.0, {1, 2}) == {2: 1.0}
