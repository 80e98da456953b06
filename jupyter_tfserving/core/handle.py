"""A request's hold on one servable version (DESIGN §3: every request holds a handle).

``Manager.acquire`` makes a handle after raising the version's refcount, under the manager's lock.
The request uses ``handle.servable`` and then releases the handle exactly once in effect
(``release()`` is idempotent and thread-safe; ``with`` releases on exit). Releasing lowers the
refcount and lets the manager unload a version that was waiting for its last handle. A handle
that is never released keeps its version loaded forever; there is no finaliser, on purpose (a
finaliser could run inside the manager's lock during garbage collection).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from .servable import Servable
from .state import ServableId
from .status import failed_precondition


class ServableHandle:
    """Holds one version of a servable for a request's life."""

    __slots__ = ("_id", "_servable", "_on_release", "_lock", "_released")

    def __init__(
        self, servable_id: ServableId, servable: Servable, on_release: Callable[[], None]
    ) -> None:
        """Made by the manager only. ``on_release`` is called once, by the first ``release()``,
        in the releasing thread, with no lock of the handle held."""
        self._id = servable_id
        self._servable = servable
        self._on_release = on_release
        self._lock = threading.Lock()
        self._released = False

    @property
    def id(self) -> ServableId:
        return self._id

    @property
    def servable(self) -> Servable:
        """The servable; FAILED_PRECONDITION once the handle has been released (it may be
        closed by then)."""
        if self._released:
            raise failed_precondition(f"The handle on {self._id} has been released")
        return self._servable

    def lend(self) -> ServableHandle:
        """A handle on the same version whose release does nothing: for work this handle's
        holder starts and waits for before it releases this handle (a bulk job's calls), so
        that work runs on this version even while it unloads. FAILED_PRECONDITION once this
        handle has been released."""
        return ServableHandle(self._id, self.servable, _nothing)

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Give the version back. Only the first call has an effect."""
        with self._lock:
            if self._released:
                return
            self._released = True
        self._on_release()

    def __enter__(self) -> ServableHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<ServableHandle {self._id.name}/{self._id.version} {state}>"


def _nothing() -> None:
    """A lent handle's release (see :meth:`ServableHandle.lend`)."""
