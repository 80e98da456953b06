"""Fakes for manager tests: a servable that records close() and refuses use after it, and a
loader factory whose loads a test can script (hold open, fail n times, fail always)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jupyter_tfserving.core.servable import ExampleBatch, LoadSpec, SignatureInfo
from jupyter_tfserving.core.state import ServableId
from jupyter_tfserving.core.status import Code, ServingError

# Long enough never to fire in a passing test, short enough that a broken one fails, not hangs.
GATE_TIMEOUT = 10.0


class FakeServable:
    """A servable whose ``run`` answers its own version and fails loudly once closed."""

    def __init__(self, servable_id: ServableId) -> None:
        self.id = servable_id
        self._lock = threading.Lock()
        self.close_calls = 0
        self.closed = threading.Event()

    def signatures(self) -> Mapping[str, SignatureInfo]:
        return {}

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.closed.is_set():
            raise AssertionError(f"run() on closed servable {self.id}")
        return {"version": np.array([self.id.version])}

    def run_examples(self, signature_name: str, batch: ExampleBatch) -> dict[str, np.ndarray]:
        return self.run(signature_name, {})

    def metadata(self) -> dict[str, Any]:
        return {"signature_def": {"signature_def": {}}}

    def close(self) -> None:
        with self._lock:
            self.close_calls += 1
        self.closed.set()


@dataclass
class LoadScript:
    """How loads of one servable id behave. ``gate``: when set to an Event, each attempt waits
    for it (so a test can hold a load open). ``failures``: the first n attempts raise ``error``
    (-1: every attempt). ``attempted`` is set after each attempt starts."""

    gate: threading.Event | None = None
    failures: int = 0
    error: Exception = field(default_factory=lambda: ServingError(Code.NOT_FOUND, "no such file"))
    attempts: int = 0
    started: threading.Event = field(default_factory=threading.Event)
    attempt_threads: list[int] = field(default_factory=list)


class FakeLoader:
    def __init__(self, factory: FakeLoaderFactory, servable_id: ServableId) -> None:
        self._factory = factory
        self._id = servable_id

    def load(self) -> FakeServable:
        script = self._factory.script(self._id.name, self._id.version)
        with self._factory.lock:
            script.attempts += 1
            attempt = script.attempts
            script.attempt_threads.append(threading.get_ident())
        script.started.set()
        if script.gate is not None and not script.gate.wait(GATE_TIMEOUT):
            raise AssertionError(f"load gate of {self._id} never opened")
        if script.failures < 0 or attempt <= script.failures:
            raise script.error
        servable = FakeServable(self._id)
        with self._factory.lock:
            self._factory.servables.setdefault(self._id, []).append(servable)
        return servable


class FakeLoaderFactory:
    """``Manager(loader_factory=FakeLoaderFactory())``; unscripted ids load at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scripts: dict[ServableId, LoadScript] = {}
        self.servables: dict[ServableId, list[FakeServable]] = {}
        self.specs: list[tuple[ServableId, LoadSpec]] = []

    def script(self, name: str, version: int, **changes: Any) -> LoadScript:
        """The script of ``name/version`` (created on first use), with ``changes`` applied."""
        with self.lock:
            script = self.scripts.setdefault(ServableId(name, version), LoadScript())
            for key, value in changes.items():
                setattr(script, key, value)
            return script

    def servable(self, name: str, version: int) -> FakeServable:
        """The last servable loaded for ``name/version``."""
        with self.lock:
            return self.servables[ServableId(name, version)][-1]

    def __call__(self, servable_id: ServableId, spec: LoadSpec) -> FakeLoader:
        with self.lock:
            self.specs.append((servable_id, spec))
        return FakeLoader(self, servable_id)
