"""The repository source: polls the file system and tells the manager what to serve.

After TF Serving's FileSystemStoragePathSource: every ``poll_wait_seconds`` a daemon thread asks
``specs()`` for the models to serve (from ``models.config`` or discovered), lists each model's
version directories, applies its version policy, adds the versions its labels name (DESIGN §3:
labelled versions are always aspired), and hands the manager the complete aspired set per model.
Models that disappear get an empty aspired set, which unloads them.

Who calls: ``ModelService.start()`` starts it, ``ModelService.stop()`` stops it. ``poll_once`` may
also be called directly (tests, a "reload" request) from any thread except the IOLoop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .manager import Manager
from .model_spec import ModelSpec
from .repository import list_versions
from .servable import LoadSpec

log = logging.getLogger(__name__)


class RepositorySource:
    def __init__(
        self,
        manager: Manager,
        specs: Callable[[], Sequence[ModelSpec]],
        poll_wait_seconds: float = 1.0,
        platform_of: Callable[[str, str], str] | None = None,
        lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        """``specs`` returns the models to serve; it is called on the poller thread and may do
        I/O. ``platform_of(version_dir, configured_platform)`` may refine the platform of one
        version (e.g. a ``servable.json`` in it); by default the configured one is used.
        ``poll_wait_seconds <= 0`` polls once at start and then only when ``poll_once`` is
        called. ``lock``, if given, is held for each whole scan (reading the specs and applying
        them), so whoever changes what ``specs`` returns under the same lock is never seen
        half-way (the management operations)."""
        self._manager = manager
        self._specs = specs
        self._poll_wait = poll_wait_seconds
        self._platform_of = platform_of or (lambda _path, platform: platform)
        self._known: set[str] = set()
        self._applied_labels: dict[str, dict[str, int]] = {}
        self._poll_lock = threading.Lock()
        self._outer_lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the poller thread; its first scan runs at once."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="tfserving-source", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop polling (does not unload anything) and join the poller thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def poll_once(self) -> None:
        """One scan of the repository. Errors are logged and leave the manager as it was."""
        with self._outer_lock, self._poll_lock:
            try:
                specs = list(self._specs())
            except Exception:  # a bad config must not stop the poller
                log.exception("Could not read the model configuration; keeping the last one")
                return
            seen: set[str] = set()
            for spec in specs:
                if spec.name in seen:
                    log.error("Model %r is configured twice; using the first", spec.name)
                    continue
                seen.add(spec.name)
                try:
                    self._apply(spec)
                except Exception:  # one broken model must not stop the others or the poller
                    log.exception("Could not scan model %r; keeping its versions as they are",
                                  spec.name)
            for gone in self._known - seen:
                self._manager.set_aspired_versions(gone, {})
                self._applied_labels.pop(gone, None)
            self._known = seen

    def _apply(self, spec: ModelSpec) -> None:
        on_disk = {v: path for v, path in list_versions(spec.base_path).items()
                   if v not in spec.unloaded}
        aspired = set(spec.version_policy.aspired(on_disk))
        aspired |= {v for v in (*spec.labels.values(), *spec.pinned) if v in on_disk}
        self._manager.set_aspired_versions(
            spec.name,
            {
                v: LoadSpec(path=on_disk[v], platform=self._platform_of(on_disk[v], spec.platform))
                for v in sorted(aspired)
            },
        )
        labels = dict(spec.labels)
        if self._applied_labels.get(spec.name) != labels:
            try:
                self._manager.set_labels(spec.name, labels, pending_ok=True)
            except Exception:
                log.exception("Could not apply the labels of model %r", spec.name)
            else:
                self._applied_labels[spec.name] = labels

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            if self._poll_wait <= 0:
                return
            self._stop.wait(self._poll_wait)
