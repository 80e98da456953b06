"""ModelService: the data plane, independent of any transport.

It owns the :class:`~jupyter_tfserving.core.manager.Manager`, the repository source that feeds
it, and the worker pool that runs requests. ``TFServingApp`` builds one from its traitlets
(``ServiceOptions`` are the plain options) and the REST handlers call into it; the kernel-side
embedded server will reuse it as is. Nothing here imports tornado, Jupyter or TensorFlow.

Threads: ``start``/``stop`` may block briefly and are called off the IOLoop or at start-up;
request work is submitted to ``executor``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from .batching import BatchEvent, BatchingParameters, BatchScheduler

from .core.manager import Manager, ManagerOptions
from .core.model_spec import ModelSpec
from .core.repository import discover_models
from .core.serving_state import STATE_FILE_NAME, ModelServingState, ServingStateFile
from .core.servable import Loader, LoadSpec, SignatureInfo
from .core.source import RepositorySource
from .core.state import ServableId
from .core.status import Code, ServingError
from .metrics.prometheus import make_registry
from .metrics.stats import ServingStats

if TYPE_CHECKING:
    from .rest.v1 import PredictCall

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
    # None turns batching off; per-model parameters replace it for their model.
    batching: BatchingParameters | None = field(default_factory=BatchingParameters)
    model_batching: Mapping[str, BatchingParameters] = field(default_factory=dict)
    # The secret that signs pickled (platform "python") versions published through this
    # service; None: such versions are refused. See ``load_signing_key``.
    signing_key: bytes | None = None
    # Largest accepted upload (a packed version directory), in bytes, unpacked; also the largest
    # upload body.
    max_upload_bytes: int = 4 << 30
    # Request limits: a larger body is 413; JSON nested deeper, or holding more values, is 400.
    max_request_bytes: int = 64 << 20
    max_json_depth: int = 64
    max_tensor_elements: int = 1 << 24


def load_signing_key(path: str) -> bytes:
    """The signing key at ``path``, created (32 random bytes, mode 0600) if missing.

    It lives outside the repository (by default in the Jupyter data directory), so someone who
    can only write to the repository cannot make the server unpickle a file of theirs."""
    try:
        with open(path, "rb") as f:
            key = f.read()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def is_batchable(signature: SignatureInfo, inputs: Mapping[str, np.ndarray]) -> bool:
    """True when every input and output of the signature has a batch dimension (known rank >= 1
    with an unknown first dimension) and the request has at least one input: only such calls
    can be concatenated with others and split back by rows."""
    if not inputs:
        return False
    for info in (*signature.inputs.values(), *signature.outputs.values()):
        if info.shape is None or len(info.shape) == 0 or info.shape[0] != -1:
            return False
    return all(a.ndim >= 1 for a in inputs.values())


SHUTTING_DOWN_MESSAGE = "The model server is shutting down"
# Once the request work in flight is done, it must stay done this long before ``stop`` goes on:
# a REST handler resumes on the IOLoop after its model ran and may still submit the encoding of
# its answer to a request thread.
_DRAIN_QUIET_SECONDS = 0.1
_task = threading.local()  # .admitted: this request-thread task was submitted before ``stop``


def _shutting_down() -> ServingError:
    return ServingError(Code.UNAVAILABLE, SHUTTING_DOWN_MESSAGE)


class _RequestWork:
    """The request work in flight, for ``ModelService.stop`` to drain.

    Counted: predicts from ``submit_predict`` until their run completes (on a request thread or
    in a batch, running or still queued), and tasks on the request threads (decoding, encoding,
    status and management calls) until they return. Thread-safe.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._begun = 0
        self.stopping = False

    def begin(self, refuse_if_stopping: bool = False) -> None:
        """Count one piece of work; with ``refuse_if_stopping``, raise UNAVAILABLE instead once
        ``stop`` has begun (checked and counted atomically)."""
        with self._cond:
            if refuse_if_stopping and self.stopping:
                raise _shutting_down()
            self._count += 1
            self._begun += 1

    def end(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def stop_admitting(self) -> None:
        with self._cond:
            self.stopping = True

    def wait_idle(self, quiet: float, timeout: float | None) -> bool:
        """Block until nothing is counted; if anything was, until nothing new has begun for
        ``quiet`` seconds too. False if ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else deadline - time.monotonic()

        with self._cond:
            had_work = self._count > 0
            while True:
                while self._count > 0:
                    remaining = left()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                if not had_work:
                    return True
                begun, quiet_until = self._begun, time.monotonic() + quiet
                while self._begun == begun and time.monotonic() < quiet_until:
                    remaining = left()
                    if remaining is not None and remaining <= 0:
                        return False
                    wait = quiet_until - time.monotonic()
                    self._cond.wait(wait if remaining is None else min(wait, remaining))
                if self._begun == begun and self._count == 0:
                    return True


def _run_task(fn: Callable[..., object], admitted: bool, args: tuple, kwargs: dict) -> object:
    _task.admitted = admitted
    try:
        return fn(*args, **kwargs)
    finally:
        _task.admitted = False


class _RequestExecutor(ThreadPoolExecutor):
    """The request threads (``ModelService.executor``; the REST handlers submit to it too).

    Each task is counted in ``work`` while it runs, and remembers whether it was submitted
    before ``stop`` began (a predict it starts, e.g. after decoding a large body, was in flight
    before the stop, so it is not refused). Once shut down, ``submit`` raises
    ``ServingError(UNAVAILABLE)`` (the client gets 503), never ThreadPoolExecutor's
    RuntimeError (which the handlers would answer 500).
    """

    def __init__(self, work: _RequestWork, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._work = work
        self._closed = False

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        if self._closed:
            raise _shutting_down()
        admitted = not self._work.stopping
        self._work.begin()
        try:
            future = super().submit(_run_task, fn, admitted, args, kwargs)
        except RuntimeError:  # shut down meanwhile, or the interpreter is exiting
            self._work.end()
            raise _shutting_down() from None
        except BaseException:
            self._work.end()
            raise
        future.add_done_callback(lambda _: self._work.end())
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


def _default_loader_factory(servable_id: ServableId, spec: LoadSpec) -> Loader:
    from .platforms import make_loader

    return make_loader(servable_id, spec)


def _platform_of(version_dir: str, configured: str) -> str:
    """A version with a ``servable.json`` names its own platform (``python``)."""
    from .platforms.python import read_platform

    return read_platform(version_dir) or configured


class ModelService:
    """Manager + source + request workers for one repository."""

    def __init__(
        self,
        options: ServiceOptions,
        loader_factory: Callable[[ServableId, LoadSpec], Loader] | None = None,
    ) -> None:
        self.options = options
        self.model_root = os.path.abspath(options.model_root)
        factory = loader_factory or _default_loader_factory
        key = options.signing_key

        def make_loader(servable_id: ServableId, spec: LoadSpec) -> Loader:
            if key is not None and spec.platform == "python":
                spec = dataclasses.replace(spec, extra={**spec.extra, "signing_key": key})
            return factory(servable_id, spec)

        self.manager = Manager(make_loader, options.manager)
        self.stats = ServingStats()
        self._work = _RequestWork()
        self.executor: ThreadPoolExecutor = _RequestExecutor(
            self._work, max_workers=max(1, options.num_request_threads),
            thread_name_prefix="tfserving-request",
        )
        threads = max(
            [p.num_batch_threads for p in (options.batching, *options.model_batching.values())
             if p is not None] or [1]
        )
        self.scheduler = BatchScheduler(threads)
        self.scheduler.add_observer(self._record_batch)
        self._config_file = None
        if options.model_config_file:
            self._config_file = self._make_config_file(options.model_config_file)
        config_dir = os.path.dirname(os.path.abspath(
            options.model_config_file or os.path.join(self.model_root, CONFIG_FILE_NAME)))
        self.state_file = ServingStateFile(os.path.join(config_dir, STATE_FILE_NAME))
        # Per-model routing state beyond models.config; changed only under ``admin_lock``.
        self.serving_state: dict[str, ModelServingState] = {}
        # Serialises the management operations (jupyter_tfserving.admin).
        self.admin_lock = threading.RLock()
        self.source = RepositorySource(
            self.manager, self.model_specs, options.file_system_poll_wait_seconds,
            platform_of=_platform_of, lock=self.admin_lock,
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
        """The models to serve now (the source's spec provider; runs on its poller thread):
        the config file's or the discovered ones, with the persisted routing state (pinned and
        unloaded versions) applied."""
        specs = self._base_specs()
        state = self.serving_state
        return [
            dataclasses.replace(
                spec,
                pinned=frozenset({st.previous_stable} if st.previous_stable is not None else ()),
                unloaded=frozenset(st.unloaded),
            ) if (st := state.get(spec.name)) is not None else spec
            for spec in specs
        ]

    def _base_specs(self) -> Sequence[ModelSpec]:
        if self._config_file is None:
            default = os.path.join(self.model_root, CONFIG_FILE_NAME)
            if not os.path.isfile(default):
                return discover_models(self.model_root)
            self._config_file = self._make_config_file(default)
        return self._config_file.specs()

    def edit_config(self, edit: Callable[[object], None]) -> Sequence[ModelSpec]:
        """Apply ``edit`` to the ``ModelServerConfig`` in force and write it back (see
        ``model_config.edit_model_config``). Without a config file yet, one is created at
        ``<model_root>/models.config`` listing every discovered model first, so switching from
        discovery to a config file serves exactly the same models. Blocking; callers hold
        ``admin_lock``."""
        from .model_config import add_model, config_entry

        config_file = self._config_file or self._make_config_file(
            os.path.join(self.model_root, CONFIG_FILE_NAME))
        seed = [] if os.path.isfile(config_file.path) else discover_models(self.model_root)

        def seeded(config) -> None:
            for spec in seed:
                if config_entry(config, spec.name) is None:
                    add_model(config, spec.name, spec.base_path, spec.platform)
            edit(config)

        specs = config_file.edit(seeded)
        self._config_file = config_file
        return specs

    def invalidate_config(self) -> None:
        """Make the next scan re-read the config file whatever its time stamp."""
        if self._config_file is not None:
            self._config_file.invalidate()

    def uses_config_file(self) -> bool:
        """True when a config file decides which models are served (else they are
        discovered)."""
        return self._config_file is not None or self.config_path is not None

    def batching_parameters(self, model: str) -> BatchingParameters | None:
        """The batching parameters of ``model`` (None: it runs unbatched)."""
        if self.options.batching is None:
            return None
        return self.options.model_batching.get(model, self.options.batching)

    def submit_predict(self, call: "PredictCall") -> "Future[dict[str, np.ndarray]]":
        """Run a decoded predict on its version, batched with other callers' rows when the
        model's batching is on and the signature has a batch dimension; else alone on a request
        thread. Returns at once. The call's handle is released when the future completes
        (whatever the outcome), so the version can unload only after the model ran.
        Raises UNAVAILABLE at once when the batch queue is full, and once ``stop`` has begun
        (unless the call was begun by a request-thread task submitted before: in flight)."""
        servable = call.handle.servable
        model, version = call.handle.id.name, call.handle.id.version
        signature_name = call.signature_name
        stats = self.stats

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            started = time.perf_counter()
            try:
                return servable.run(signature_name, inputs)
            finally:
                stats.record_runtime(model, "predict", time.perf_counter() - started)

        params = self.batching_parameters(model)
        try:
            self._work.begin(refuse_if_stopping=not getattr(_task, "admitted", False))
        except BaseException:
            call.release()
            raise
        try:
            if params is not None and is_batchable(call.signature, call.inputs):
                # Rows can share a batch when their non-batch shapes match, or, with
                # pad_variable_length_inputs, when only their lengths differ (ranks match).
                shape = (lambda a: a.ndim) if params.pad_variable_length_inputs else (
                    lambda a: a.shape[1:])
                key = (model, version, signature_name,
                       tuple((k, a.dtype.str, shape(a)) for k, a in sorted(call.inputs.items())))
                timeout = self.options.request_timeout_seconds
                deadline = time.monotonic() + timeout if timeout else None
                future = self.scheduler.schedule(key, call.inputs, run, params, deadline)
            else:
                future = self.executor.submit(run, call.inputs)
        except BaseException:
            call.release()
            self._work.end()
            raise

        def done(_: Future) -> None:
            call.release()
            self._work.end()

        future.add_done_callback(done)
        return future

    def _record_batch(self, event: BatchEvent) -> None:
        self.stats.record_batch(event.key[0], event.input_batch_size, event.processed_batch_size,
                                event.queuing_latencies)

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
        self.serving_state = self.state_file.load()
        for name, state in self.serving_state.items():
            if state.canary_weight:
                self.manager.set_canary_weight(name, state.canary_weight)
        self.source.start()
        self._started = True
        log.info("jupyter_tfserving: serving models from %s", self.model_root)

    def reload(self) -> None:
        """Scan the repository now (blocking; call from a worker thread)."""
        self.source.poll_once()

    def check_serving(self) -> None:
        """Raise UNAVAILABLE (503) once :meth:`stop` has begun: called by the REST layer before
        it routes a new predict, classify or regress, so a request that arrives while the
        server drains is told so rather than NOT_FOUND once the versions are unloaded. A
        request-thread task submitted before ``stop`` (already in flight) is not refused."""
        if self._work.stopping and not getattr(_task, "admitted", False):
            raise _shutting_down()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop serving without cutting off the requests in flight. Blocking; never call it on
        a request thread (it would wait for itself).

        1. From now on a new predict is refused with UNAVAILABLE (503); one already in flight
           is not (see ``submit_predict``).
        2. Wait, up to ``timeout`` seconds, until the request work in flight is done: model
           runs, batches running *or still queued*, decoding and encoding on the request
           threads (see ``_RequestWork``). jupyter_server keeps its IOLoop running while the
           extension stops, so those requests get their answers.
        3. Stop polling, the request threads (work submitted later is refused with
           UNAVAILABLE), the batch scheduler (anything still queued, only after a timeout,
           fails with UNAVAILABLE), and unload every version.
        """
        self._work.stop_admitting()
        self.source.stop()
        if not self._work.wait_idle(_DRAIN_QUIET_SECONDS, timeout):
            log.warning("jupyter_tfserving: requests still in flight after %ss; stopping anyway",
                        timeout)
        self.executor.shutdown(wait=True)
        self.scheduler.stop(timeout)
        self.manager.stop(timeout)
        self._started = False
