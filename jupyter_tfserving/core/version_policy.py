"""Version policies: which of the versions on disk a source aspires to serve (DESIGN §3).

After TF Serving's ``ServableVersionPolicy`` (latest / all / specific). A source calls
``policy.aspired(versions_on_disk)`` on every scan; the result, plus any versions that carry a
label, is the aspired set it hands the manager. Policies are immutable values, safe to share
between threads.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass

from .status import invalid_argument


class VersionPolicy(abc.ABC):
    """Chooses the aspired versions of one model from the versions present on disk."""

    @abc.abstractmethod
    def aspired(self, versions_on_disk: Iterable[int]) -> set[int]:
        """The versions to serve; always a subset of ``versions_on_disk``."""


@dataclass(frozen=True)
class Latest(VersionPolicy):
    """Serve the ``num_versions`` highest versions on disk (TF Serving's default, n=1)."""

    num_versions: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.num_versions, bool) or not isinstance(self.num_versions, int) \
                or self.num_versions < 1:
            raise invalid_argument(
                f"Latest version policy needs num_versions >= 1, got {self.num_versions!r}"
            )

    def aspired(self, versions_on_disk: Iterable[int]) -> set[int]:
        return set(sorted(set(versions_on_disk), reverse=True)[: self.num_versions])

    def __str__(self) -> str:
        return f"latest({self.num_versions})"


@dataclass(frozen=True)
class All(VersionPolicy):
    """Serve every version on disk."""

    def aspired(self, versions_on_disk: Iterable[int]) -> set[int]:
        return set(versions_on_disk)

    def __str__(self) -> str:
        return "all"


@dataclass(frozen=True, init=False)
class Specific(VersionPolicy):
    """Serve exactly the listed versions, those of them that exist on disk."""

    versions: frozenset[int]

    def __init__(self, versions: Iterable[int]) -> None:
        chosen = frozenset(versions)
        for v in chosen:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise invalid_argument(f"Specific version policy: invalid version {v!r}")
        object.__setattr__(self, "versions", chosen)

    def aspired(self, versions_on_disk: Iterable[int]) -> set[int]:
        return set(versions_on_disk) & self.versions

    def __repr__(self) -> str:
        return f"Specific(versions={sorted(self.versions)!r})"

    def __str__(self) -> str:
        return f"specific({', '.join(str(v) for v in sorted(self.versions))})"
