"""Servables written in a test, and a started ModelService serving one: the fakes the data
plane and job tests share (fakes over mocks).

A fake servable subclasses :class:`FakeServable` and gives ``signatures()`` and the run it is
called for; the others refuse to be called. :func:`fake_service` serves it as version 1 of
model ``m`` from a fresh repository and returns once that version is AVAILABLE; the caller
stops the service.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_tfserving.core.state import ServableState
from jupyter_tfserving.service import ModelService, ServiceOptions


class FakeServable:
    """The parts of a servable a test does not exercise."""

    def run(self, signature_name: str, inputs: Any) -> Any:
        raise AssertionError("not called")

    def run_examples(self, signature_name: str, batch: Any) -> Any:
        raise AssertionError("not called")

    def metadata(self) -> dict[str, Any]:
        return {"signature_def": {"signature_def": {}}}

    def close(self) -> None:
        pass


class FakeLoader:
    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make

    def load(self) -> Any:
        return self._make()


def fake_service(model_root: Path, make: Callable[[], Any], **options: Any) -> ModelService:
    """A started service whose model ``m`` version 1 is ``make()``; ``options``: more
    ``ServiceOptions``."""
    (model_root / "m" / "1").mkdir(parents=True, exist_ok=True)
    service = ModelService(
        ServiceOptions(model_root=str(model_root), file_system_poll_wait_seconds=0, **options),
        loader_factory=lambda servable_id, spec: FakeLoader(make))
    service.start()
    service.manager.wait_for("m", 1, [ServableState.AVAILABLE], 10)
    return service
