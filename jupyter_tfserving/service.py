"""ModelService: one server's serving machinery, independent of any transport.

It builds and owns the :class:`~jupyter_tfserving.core.manager.Manager`, the batch scheduler,
the request threads, the statistics, the request :class:`~.core.admission.Admission`, and the two
planes every front end calls: :attr:`ModelService.dataplane` (predict, classify, regress, status,
metadata) and :attr:`ModelService.control` (publish, labels, canary, promote, rollback, unload,
config). ``TFServingApp`` builds one from its traitlets (``ServiceOptions`` are the plain
options); the kernel's embedded server builds one from the same defaults. Nothing here imports
tornado, Jupyter or TensorFlow.

Threads: ``start`` returns at once (one poller thread; loads run on the manager's workers);
``stop`` blocks and is called off the IOLoop.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypedDict, cast

from .batching import BatchEvent, BatchingParameters, BatchScheduler
from .control_plane import ControlPlane, ControlPlaneOptions, VersionJSON, version_json
from .core import defaults
from .core.admission import Admission
from .core.manager import Manager, ManagerOptions
from .core.servable import Loader, LoadSpec
from .core.state import ServableId, ServableState, VersionStatus
from .core.status import ServingError
from .dataplane import DataPlane, DataPlaneOptions
from .jobs.operations import DATASETS_DIR, JobOperations
from .jobs.runner import JobRunner
from .metrics.prometheus import make_registry
from .metrics.stats import ServingStats, VersionStatsJSON
from .traffic import request_log
from .traffic.request_log import LoggedRequest, LoggingStatusJSON, RequestLog, RequestLogOptions
from .traffic.shadow import (
    MAX_CPU_SHARE,
    MAX_PENDING,
    RequestEncoder,
    ShadowReportJSON,
    ShadowTraffic,
)

log = logging.getLogger(__name__)

# The bulk jobs' record, beside the serving state file.
JOBS_FILE_NAME = "jupyter_tfserving_jobs.json"


@dataclass
class ServiceOptions:
    """Plain options for :class:`ModelService` (see ``TFServingApp`` for each one's meaning;
    every default is ``core.defaults``')."""

    model_root: str
    model_config_file: str | None = None
    file_system_poll_wait_seconds: float = defaults.FILE_SYSTEM_POLL_WAIT_SECONDS
    model_config_file_poll_wait_seconds: float = defaults.MODEL_CONFIG_FILE_POLL_WAIT_SECONDS
    num_request_threads: int = defaults.NUM_REQUEST_THREADS
    request_timeout_seconds: float | None = defaults.request_timeout_seconds(
        defaults.REST_API_TIMEOUT_IN_MS)
    manager: ManagerOptions = field(default_factory=ManagerOptions)
    # None turns batching off; per-model parameters replace it for their model.
    batching: BatchingParameters | None = field(default_factory=BatchingParameters)
    model_batching: Mapping[str, BatchingParameters] = field(default_factory=dict)
    # The secret that signs pickled (platform "python") versions published through this
    # service; None: such versions are refused. See ``load_signing_key``.
    signing_key: bytes | None = None
    # Largest accepted upload (a packed version directory), in bytes, unpacked; also the largest
    # upload body.
    max_upload_bytes: int = defaults.MAX_UPLOAD_BYTES
    # Request limits: a larger body is 413; JSON nested deeper, or holding more values, is 400.
    max_request_bytes: int = defaults.MAX_REQUEST_BYTES
    max_json_depth: int = defaults.MAX_JSON_DEPTH
    max_tensor_elements: int = defaults.MAX_TENSOR_ELEMENTS
    signature_method_name_check: bool = True
    # Serve a version's model.tflite, when it has one, instead of its SavedModel.
    prefer_tflite_model: bool = False
    # Replay a version's assets.extra/tf_serving_warmup_requests before it is AVAILABLE, this
    # many times.
    enable_model_warmup: bool = True
    warmup_iterations: int = 1
    # Bulk jobs: the directories they may read and write besides the repository (the Jupyter
    # server's root_dir), and what a relative data path is relative to (default: the first of
    # them, else the repository).
    job_roots: tuple[str, ...] = ()
    job_base_dir: str | None = None
    # Shadow traffic: runs pending at once (sampled, not yet compared), over all models; past
    # that a sampled request is dropped and counted.
    shadow_max_pending: int = MAX_PENDING
    # ... and the share of one core's time its thread may spend; past that copies are dropped.
    shadow_max_cpu_share: float = MAX_CPU_SHARE
    # Request logging (models.config's logging_config): a log file is closed at this size,
    # and a model's oldest files are deleted past the total.
    request_log_max_file_bytes: int = request_log.MAX_FILE_BYTES
    request_log_max_total_bytes: int = request_log.MAX_TOTAL_BYTES


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


def _default_loader_factory(servable_id: ServableId, spec: LoadSpec) -> Loader:
    from .platforms import make_loader

    return make_loader(servable_id, spec)


class VersionStatsEntry(VersionJSON, VersionStatsJSON):
    in_flight: int


class ModelStatsJSON(TypedDict):
    name: str
    labels: dict[str, int]
    versions: list[VersionStatsEntry]
    shadow: ShadowReportJSON | None
    logging: LoggingStatusJSON | None


class StatsJSON(TypedDict):
    models: list[ModelStatsJSON]
    grpc_target: str | None


class ModelService:
    """Manager, scheduler, request threads, statistics and the two planes of one repository."""

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
            elif spec.platform == "tensorflow":
                spec = dataclasses.replace(spec, extra={
                    **spec.extra, "prefer_tflite_model": options.prefer_tflite_model,
                    "model_warmup": options.enable_model_warmup,
                    "warmup_iterations": options.warmup_iterations})
            return factory(servable_id, spec)

        self.manager = Manager(make_loader, options.manager)
        self.stats = ServingStats()
        self.manager.add_listener(self._forget_stats)
        self.admission = Admission()
        self.executor = ThreadPoolExecutor(
            max_workers=max(1, options.num_request_threads),
            thread_name_prefix="tfserving-request",
        )
        threads = max(
            [p.num_batch_threads for p in (options.batching, *options.model_batching.values())
             if p is not None] or [1]
        )
        self.scheduler = BatchScheduler(threads)
        self.scheduler.add_observer(self._record_batch)
        self.dataplane = DataPlane(
            self.manager, self.scheduler, self.executor, self.stats, self.admission,
            DataPlaneOptions(options.request_timeout_seconds, options.batching,
                             options.model_batching, options.signature_method_name_check))
        self.control = ControlPlane(self.manager, ControlPlaneOptions(
            model_root=self.model_root,
            model_config_file=options.model_config_file,
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            model_config_file_poll_wait_seconds=options.model_config_file_poll_wait_seconds,
            signing_key=options.signing_key,
            max_upload_bytes=options.max_upload_bytes,
        ))
        roots = [os.path.abspath(r) for r in options.job_roots]
        self.jobs = JobOperations(
            JobRunner(self.dataplane, self.manager, [*roots, self.model_root],
                      state_file=os.path.join(self.control.config_dir, JOBS_FILE_NAME)),
            base_dir=options.job_base_dir or (roots[0] if roots else self.model_root),
            datasets_dir=os.path.join(self.model_root, DATASETS_DIR))
        # Request logging, fed by the data plane's exchanges, set by models.config.
        self.request_log = RequestLog(self.model_root, RequestLogOptions(
            max_file_bytes=options.request_log_max_file_bytes,
            max_total_bytes=options.request_log_max_total_bytes))
        self.dataplane.add_exchange_observer(self.request_log.observe)
        self.control.add_spec_listener(self.request_log.configure)
        # Shadow traffic, fed by the data plane's exchanges; promote, rollback and the
        # candidate leaving AVAILABLE end a shadow.
        self.shadow = ShadowTraffic(
            self.manager, self.dataplane, self.executor,
            serving_version=self.control.serving_version,
            logging_on=self.request_log.is_on,
            max_pending=options.shadow_max_pending,
            max_cpu_share=options.shadow_max_cpu_share)
        self.dataplane.add_exchange_observer(self.shadow.observe)
        self.manager.add_listener(self.shadow.version_changed)
        self.control.add_rollout_listener(self.shadow.rollout_changed)
        self._started = False
        # Its own Prometheus registry, never the process-global one.
        self.prometheus_registry = make_registry(self.stats, self.in_flight,
                                                 self.batch_timeouts)

    def _record_batch(self, event: BatchEvent) -> None:
        # The data plane's batch key: (model, version, signature name, input dtypes and shapes,
        # lane).
        model = cast("tuple[str, int, str, object, str]", event.key)[0]
        self.stats.record_batch(model, event.input_batch_size, event.processed_batch_size,
                                event.queuing_latencies)

    def _forget_stats(self, servable_id: ServableId, status: VersionStatus) -> None:
        """Manager listener: once a version ends, drop the statistics of versions the manager
        no longer lists (it keeps a bounded history of END versions, whose last figures stay
        readable until they are forgotten)."""
        if status.state is ServableState.END:
            try:
                known = {s.version for s in self.manager.version_statuses(servable_id.name)}
            except ServingError:  # NOT_FOUND: the model is gone altogether
                known = set()
            self.stats.retain_versions(servable_id.name, known)

    def batch_timeouts(self) -> dict[str, int]:
        """The batch timeout in use per model (microseconds), the longest of its online
        queues: what ``batch_timeout_micros="auto"`` chose last, else the fixed value. For the
        Prometheus gauge, at scrape time."""
        out: dict[str, int] = {}
        for queue in self.scheduler.queue_stats():
            # The data plane's batch key: (model, version, signature, inputs, lane).
            model, *_, lane = cast("tuple[str, int, str, object, str]", queue.key)
            if lane == "online":
                out[model] = max(out.get(model, 0), queue.batch_timeout_micros)
        return out

    def in_flight(self) -> dict[tuple[str, int], int]:
        """Handles held now per (model, version): the dashboard's refcounts."""
        return {
            (name, version): count
            for name in self.manager.model_names()
            for version, count in self.manager.refcounts(name).items()
        }

    def stats_report(self, grpc_target: str | None = None,
                     encode_request: RequestEncoder | None = None) -> StatsJSON:
        """``GET P/api/stats``: per model and version, state, labels, in-flight handles,
        requests, errors and latency (p50/p99 and buckets, microseconds), for the dashboard
        and the side panel; per model its shadow report (None: it never had a shadow; its
        worst requests encoded by ``encode_request``, the transport's); ``grpc_target``: where
        the front end serves gRPC, if it does."""
        snapshot = self.stats.snapshot()
        in_flight = self.in_flight()
        models: list[ModelStatsJSON] = []
        for info in self.dataplane.list_models():
            versions: list[VersionStatsEntry] = [{
                **version_json(status),
                **snapshot.version_json(info.name, status.version),
                "in_flight": in_flight.get((info.name, status.version), 0),
            } for status in info.statuses]
            models.append({"name": info.name, "labels": dict(sorted(info.labels.items())),
                           "versions": versions,
                           "shadow": self.shadow.maybe_report(info.name, encode_request),
                           "logging": self.request_log.status(info.name)})
        return {"models": models, "grpc_target": grpc_target}

    def set_request_logging(self, name: str, sampling_rate: object,
                            filename_prefix: object = None) -> LoggingStatusJSON:
        """``POST P/api/models/{m}:logging``: log ``sampling_rate`` (0 to 1; 0 turns logging
        off) of model ``name``'s requests to ``filename_prefix`` (relative to the repository;
        default: the prefix in force, else ``.logs/<model>/requests``), written to
        ``models.config`` as TF Serving's ``logging_config`` (removed for 0); a logging that
        had stopped on an error tries again. The model's logging status. NOT_FOUND,
        INVALID_ARGUMENT, PERMISSION_DENIED (a prefix out of the repository). Blocking."""
        from .model_config import set_logging_config

        config = self.request_log.check(name, sampling_rate, filename_prefix)
        self.control.edit_model_entry(name, lambda entry: set_logging_config(entry, config))
        self.request_log.retry(name)
        return self.request_log.status_or_off(name)

    def logged_requests(self, name: str, n: int) -> list[LoggedRequest]:
        """``GET P/api/models/{m}/requests``: the ``n`` newest logged requests of model
        ``name``, newest first. NOT_FOUND for an unknown model. Blocking (reads files)."""
        self.control.describe_model(name)
        return self.request_log.requests(name, n)

    def logged_tfrecord(self, name: str, n: int) -> bytes:
        """:meth:`logged_requests` as the bytes of a TFRecord file of their PredictionLogs."""
        self.control.describe_model(name)
        return self.request_log.tfrecord(name, n)

    def start(self) -> None:
        """Create the repository directory if needed and start polling it."""
        if self._started:
            return
        self.request_log.start()
        self.control.start()
        self._started = True
        log.info("jupyter_tfserving: serving models from %s", self.model_root)

    def wait_loaded(self, timeout: float) -> bool:
        """Scan the repository now and block until no version is still loading (each is
        AVAILABLE, or END with its error), as TF Serving's server waits for its initial
        models before it opens its ports. False if ``timeout`` seconds pass first. For start-up
        off the event loop (the command line); the extension itself never blocks on loads."""
        self.control.reload()
        return self.control.wait_settled(None, timeout)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop serving without cutting off the requests in flight. Blocking; never call it on
        a request thread (it would wait for itself).

        0. Running bulk jobs stop after their current calls, recorded as ``interrupted``
           (resumable by the next server on this repository); shadow traffic starts no more
           runs.
        1. From now on a new request is refused with UNAVAILABLE (503): ``admission`` is
           closed. Requests admitted before go on, and so does the work they handed on.
        2. Wait, up to ``timeout`` seconds, until every admitted request and its work is done
           (model runs, batches running *or still queued*, encoding). jupyter_server keeps its
           IOLoop running while the extension stops, so those requests get their answers.
        3. Stop polling, the request threads, the batch scheduler (anything still queued, only
           after a timeout, fails with UNAVAILABLE), the request log (what it queued is
           written, its files closed), and unload every version.
        """
        self.jobs.runner.stop(timeout)
        self.shadow.stop(timeout)
        self.admission.close()
        self.control.stop()
        if not self.admission.drain(timeout):
            log.warning("jupyter_tfserving: requests still in flight after %ss; stopping anyway",
                        timeout)
        self.executor.shutdown(wait=True)
        self.scheduler.stop(timeout)
        self.request_log.stop(timeout)
        self.manager.stop(timeout)
        self._started = False

