"""Request admission: tickets out while requests run; stop refuses new ones and drains."""

from __future__ import annotations

import threading
import time

import pytest

from jupyter_tfserving.core.admission import SHUTTING_DOWN_MESSAGE, Admission
from jupyter_tfserving.core.status import Code, ServingError


def test_tickets_are_counted_and_released_once():
    admission = Admission()
    a, b = admission.admit(), admission.admit()
    assert admission.in_flight == 2
    a.release()
    a.release()  # idempotent
    assert admission.in_flight == 1
    with b:
        pass
    assert admission.in_flight == 0
    assert admission.drain(0) is True


def test_close_refuses_new_requests_but_not_work_of_admitted_ones():
    admission = Admission()
    request = admission.admit()
    admission.close()
    with pytest.raises(ServingError) as err:
        admission.admit()
    assert (err.value.code, err.value.message) == (Code.UNAVAILABLE, SHUTTING_DOWN_MESSAGE)
    run = admission.extend()  # e.g. the request's batch, still queued
    request.release()
    assert admission.drain(0.05) is False  # the run is still out
    released = threading.Timer(0.1, run.release)
    released.start()
    started = time.monotonic()
    assert admission.drain(10) is True
    assert time.monotonic() - started >= 0.05
    released.join()
