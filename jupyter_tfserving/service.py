"""ModelService: the data plane, independent of any transport.

It owns the :class:`~jupyter_tfserving.core.manager.Manager`, the repository source that feeds
it, and the worker pool that runs requests. ``TFServingApp`` builds one from its traitlets
(``ServiceOptions`` are the plain options) and the REST handlers call into it; the kernel-side
embedded server will reuse it as is. Nothing here imports tornado, Jupyter or TensorFlow.

Threads: ``start``/``stop`` may block briefly and are called off the IOLoop or at start-up;
request work is submitted to ``executor``.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .core.manager import Manager, ManagerOptions
from .core.model_spec import ModelSpec
from .core.repository import discover_models
from .core.servable import LoadSpec, Loader
from .core.source import RepositorySource
from .core.state import ServableId
from .metrics.prometheus import make_registry
from .metrics.stats import ServingStats

log = logging.getLogger(__name__)

CONFIG_FILE_NAME = "models.config"


@dataclass
class ServiceOptions:
    """Plain options for :class:`ModelService` (see ``TFServingApp`` for each one's meaning)."""

    model_root: str
    model_config_file: str | None = None
    file_system_poll_wait_seconds: float = 1.0
    model_config_file_poll_wait_seconds: float = 1.0
    num_request_threads: int = 4
    request_timeout_seconds: float | None = 30.0
    manager: ManagerOptions = field(default_factory=ManagerOptions)


def _default_loader_factory(servable_id: ServableId, spec: LoadSpec) -> Loader:
    from .platforms import make_loader

    return make_loader(servable_id, spec)


class ModelService:
    """Manager + source + request workers for one repository."""

    def __init__(
        self,
        options: ServiceOptions,
        loader_factory: Callable[[ServableId, LoadSpec], Loader] | None = None,
    ) -> None:
        self.options = options
        self.model_root = os.path.abspath(options.model_root)
        self.manager = Manager(loader_factory or _default_loader_factory, options.manager)
        self.stats = ServingStats()
        self.executor = ThreadPoolExecutor(
            max_workers=max(1, options.num_request_threads), thread_name_prefix="tfserving-request"
        )
        self._config_file = None
        if options.model_config_file:
            self._config_file = self._make_config_file(options.model_config_file)
        self.source = RepositorySource(
            self.manager, self.model_specs, options.file_system_poll_wait_seconds
        )
        self._started = False
        # Its own Prometheus registry, never the process-global one.
        self.prometheus_registry = make_registry(self.stats, self.in_flight)

    def _make_config_file(self, path: str):  # -> ModelConfigFile, imported lazily
        from .model_config import ModelConfigFile

        return ModelConfigFile(path, self.options.model_config_file_poll_wait_seconds)

    @property
    def config_path(self) -> str | None:
        """The config file in force: the configured one, else ``<model_root>/models.config``
        when it exists, else None (models are discovered)."""
        if self._config_file is not None:
            return self._config_file.path
        default = os.path.join(self.model_root, CONFIG_FILE_NAME)
        return default if os.path.isfile(default) else None

    @property
    def config_error(self) -> str | None:
        """Why the config file could not be read, if it could not (the last good one is used)."""
        return self._config_file.error if self._config_file is not None else None

    def model_specs(self) -> Sequence[ModelSpec]:
        """The models to serve now (the source's spec provider; runs on its poller thread)."""
        if self._config_file is None:
            default = os.path.join(self.model_root, CONFIG_FILE_NAME)
            if not os.path.isfile(default):
                return discover_models(self.model_root)
            self._config_file = self._make_config_file(default)
        return self._config_file.specs()

    def in_flight(self) -> dict[tuple[str, int], int]:
        """Handles held now per (model, version): the dashboard's refcounts."""
        return {
            (name, version): count
            for name in self.manager.model_names()
            for version, count in self.manager.refcounts(name).items()
        }

    def start(self) -> None:
        """Create the repository directory if needed and start polling it."""
        if self._started:
            return
        os.makedirs(self.model_root, exist_ok=True)
        self.source.start()
        self._started = True
        log.info("jupyter_tfserving: serving models from %s", self.model_root)

    def reload(self) -> None:
        """Scan the repository now (blocking; call from a worker thread)."""
        self.source.poll_once()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop polling, let in-flight requests finish, unload everything. Blocking."""
        self.source.stop()
        self.executor.shutdown(wait=True)
        self.manager.stop(timeout)
        self._started = False
