"""Request admission: who is in flight, so that stopping refuses new work and waits for the rest.

Every transport (the REST handlers, later the gRPC servicers and bulk jobs) takes a
:class:`Ticket` with :meth:`Admission.admit` when a request enters and releases it when the
request ends, however it ends. Work a request hands on and that may outlive it (a predict still
queued for its batch after the client's deadline) takes a ticket of its own with
:meth:`Admission.extend`, released when that work completes. ``ModelService.stop`` calls
:meth:`close` (from then on ``admit`` raises UNAVAILABLE: the client gets 503) and
:meth:`drain` (wait until every ticket is released). Thread-safe; plain stdlib.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from .status import Code, ServingError

SHUTTING_DOWN_MESSAGE = "The model server is shutting down"


def shutting_down() -> ServingError:
    """The error a request gets once the server stops admitting (UNAVAILABLE: 503)."""
    return ServingError(Code.UNAVAILABLE, SHUTTING_DOWN_MESSAGE)


class Ticket:
    """One admitted piece of work; :meth:`release` (idempotent) gives it back."""

    __slots__ = ("_admission", "_released")

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._admission._leave()

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class Admission:
    """Counts the tickets out; refuses new ones once closed."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._count = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        return self._count

    def admit(self) -> Ticket:
        """A ticket for a new request; UNAVAILABLE once :meth:`close` was called."""
        with self._cond:
            if self._closed:
                raise shutting_down()
            self._count += 1
        return Ticket(self)

    def extend(self) -> Ticket:
        """A ticket for work an admitted request hands on (never refused: the request was
        admitted before any ``close``)."""
        with self._cond:
            self._count += 1
        return Ticket(self)

    def _leave(self) -> None:
        with self._cond:
            self._count -= 1
            if self._count == 0:
                self._cond.notify_all()

    def close(self) -> None:
        """Refuse new requests from now on."""
        with self._cond:
            self._closed = True

    def drain(self, timeout: float | None) -> bool:
        """Block until no ticket is out; False if ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._count > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True
