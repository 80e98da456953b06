"""Servable ids, servable states and the status of one version (DESIGN §3).

After tensorflow_serving/core/servable_id.h and servable_state.h. These are plain values: the
manager (``core.manager``) makes them, the REST layer and the dashboard read them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .servable import WarmupReport
from .status import ServingError


@dataclass(frozen=True, order=True)
class ServableId:
    """One version of one model: ``(name, version)``."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{{name: {self.name} version: {self.version}}}"


class ServableState(str, enum.Enum):
    """The life of a servable version, in order. The values are TF Serving's REST state names.

    START -> LOADING -> AVAILABLE -> UNLOADING -> END; a failed load goes LOADING -> END with an
    error, and a version that stops being aspired before it was loaded goes START -> END.
    """

    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class VersionStatus:
    """What the manager reports about one version.

    ``error`` is set only for a version whose load failed (``state`` is then END). ``since`` is
    the wall-clock time (``time.time()``) at which the version entered ``state``. ``warmup``:
    what its loader's warmup ran before it became AVAILABLE (kept while the version is listed;
    None when nothing was replayed or it never loaded).
    """

    version: int
    state: ServableState
    error: ServingError | None
    since: float
    warmup: WarmupReport | None = None
