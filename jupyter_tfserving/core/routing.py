"""The one routing rule for requests that name neither a version nor a label (DESIGN §3).

With no ``stable`` label: the latest AVAILABLE version (TF Serving). With ``stable`` set:
``stable``, except a fraction ``canary_weight`` of requests that go to ``canary`` (when it is set,
differs from ``stable`` and is AVAILABLE). The manager routes with :func:`unversioned_route`; the
control plane reports the resulting split with :func:`traffic_split`; clients read that split
through the management API. Plain stdlib.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import NamedTuple

STABLE_LABEL = "stable"
CANARY_LABEL = "canary"


class Route(NamedTuple):
    """Where unversioned requests go: ``primary`` (None: the latest AVAILABLE version), and a
    ``canary`` version taking ``weight`` of them (None: no canary)."""

    primary: int | None
    canary: int | None
    weight: float


def unversioned_route(labels: Mapping[str, int], canary_weight: float) -> Route:
    """The route of a model with these labels and canary weight (see the module docstring)."""
    stable = labels.get(STABLE_LABEL)
    if stable is None:
        return Route(None, None, 0.0)
    canary = labels.get(CANARY_LABEL)
    if canary is None or canary == stable or canary_weight <= 0:
        return Route(stable, None, 0.0)
    return Route(stable, canary, canary_weight)


def traffic_split(labels: Mapping[str, int], canary_weight: float,
                  available: Collection[int]) -> dict[int, float]:
    """The share of unversioned requests each AVAILABLE version gets now (empty: none is
    served, e.g. ``stable`` names a version that is not AVAILABLE)."""
    route = unversioned_route(labels, canary_weight)
    primary = route.primary if route.primary is not None else max(available, default=None)
    if primary is None or primary not in available:
        return {}
    if route.canary is None or route.canary not in available:
        return {primary: 1.0}
    split = {primary: 1.0 - route.weight, route.canary: route.weight}
    return {v: share for v, share in split.items() if share > 0}
