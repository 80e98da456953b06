"""Transition policies: given the versions of one model, what to load and unload next.

After tensorflow_serving/core/{availability,resource}_preserving_policy.cc. TF Serving asks its
policy for one action per model per tick and applies it; here a policy returns every action it
would take before the state of some version changes again (the fixed point of asking repeatedly),
and the manager applies them all and asks again after each load or unload completes.

Rules common to both policies:

- Only a version in START that is aspired is ever loaded, highest version first. A version in END
  (unloaded, or failed to load) is never loaded again by a policy; the manager turns it back into
  a fresh START only when it stops being aspired and then becomes aspired again.
- Only an AVAILABLE version that is not aspired is ever unloaded.

These are pure functions: no locks, no I/O; the manager calls them under its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from .state import ServableState
from .status import invalid_argument

ActionKind = Literal["load", "unload"]


@dataclass(frozen=True)
class Snapshot:
    """One version of a model as the policy sees it."""

    version: int
    state: ServableState
    is_aspired: bool


@dataclass(frozen=True)
class Action:
    """Load or unload one version."""

    kind: ActionKind
    version: int


TransitionPolicy = Callable[[Sequence[Snapshot]], list[Action]]


def _loads(snapshots: Iterable[Snapshot]) -> list[Action]:
    new = sorted(
        (s.version for s in snapshots if s.is_aspired and s.state is ServableState.START),
        reverse=True,
    )
    return [Action("load", v) for v in new]


def availability_preserving(snapshots: Sequence[Snapshot]) -> list[Action]:
    """Keep something serving: load new versions before unloading old ones (TF Serving default).

    An un-aspired AVAILABLE version is unloaded only when the model has no aspired version at
    all, or some aspired version is AVAILABLE; otherwise all but the highest un-aspired AVAILABLE
    versions are unloaded (lowest first), so exactly one old version keeps serving until a new
    one is AVAILABLE. A failed aspired version (END) counts as aspired but not AVAILABLE, so the
    old version keeps serving. New aspired versions are loaded at once, highest first.
    """
    has_aspired = any(s.is_aspired for s in snapshots)
    has_aspired_available = any(
        s.is_aspired and s.state is ServableState.AVAILABLE for s in snapshots
    )
    unaspired_available = sorted(
        s.version for s in snapshots if not s.is_aspired and s.state is ServableState.AVAILABLE
    )
    if not has_aspired or has_aspired_available:
        to_unload = unaspired_available
    else:
        to_unload = unaspired_available[:-1]
    return [Action("unload", v) for v in to_unload] + _loads(snapshots)


def resource_preserving(snapshots: Sequence[Snapshot]) -> list[Action]:
    """Free resources first: unload every un-aspired AVAILABLE version, and load new aspired
    versions only once no un-aspired version is LOADING, AVAILABLE or UNLOADING (so the model
    may serve nothing in between)."""
    unloads = [
        Action("unload", s.version)
        for s in sorted(snapshots, key=lambda s: s.version)
        if not s.is_aspired and s.state is ServableState.AVAILABLE
    ]
    busy = {ServableState.LOADING, ServableState.AVAILABLE, ServableState.UNLOADING}
    if any(not s.is_aspired and s.state in busy for s in snapshots):
        return unloads
    return unloads + _loads(snapshots)


POLICIES: dict[str, TransitionPolicy] = {
    "availability_preserving": availability_preserving,
    "resource_preserving": resource_preserving,
}


def get_policy(name: str) -> TransitionPolicy:
    """The policy called ``name`` (a key of :data:`POLICIES`), else INVALID_ARGUMENT."""
    try:
        return POLICIES[name]
    except KeyError:
        raise invalid_argument(
            f"Unknown transition policy {name!r}; expected one of {sorted(POLICIES)}"
        ) from None
