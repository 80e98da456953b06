"""Request logging: TF Serving's ``logging_config`` of a model, honoured (DESIGN §10).

Who calls: ``ModelService`` builds one :class:`RequestLog` and wires it: :meth:`observe` to the
data plane's exchanges (``DataPlane.add_exchange_observer``), :meth:`configure` to the control
plane's spec listeners (so ``models.config``, edited or reloaded, takes effect); it starts and
stops it with itself. The management routes call :meth:`check`, :meth:`status`,
:meth:`requests` and :meth:`tfrecord` through the service, on worker threads.

What holds:

- A model logs while its ``models.config`` entry has a ``logging_config`` with a
  ``sampling_rate`` above 0 and a usable log collector (type ``""`` or :data:`COLLECTOR`: this
  server's collector writes TFRecord files; another type is one of TF Serving's C++ collectors,
  which this server does not have, and is refused as TF Serving refuses an unregistered type).
  Each successful online request of the model (REST or gRPC: an exchange) is logged with
  probability ``sampling_rate``.
- A record is one ``tensorflow.serving.PredictionLog`` per request, as TF Serving's request
  logger writes it: ``predict_log`` (request inputs, response outputs: every output of the
  signature), ``classify_log`` or ``regress_log`` (the request's tf.Examples, the result); the
  request's and response's ``model_spec`` name the model, the version that answered and the
  signature; ``log_metadata`` holds the model spec, the ``sampling_config`` and
  ``timestamp_secs``. Tensors are written in ``tensor_content`` (strings in ``string_val``).
- Files: ``<repository>/<filename_prefix>-<UTC time>-<seq>.tfrecord``, ``filename_prefix``
  relative to the repository (default :data:`DEFAULT_PREFIX`, hidden like ``.datasets``); an
  absolute prefix is INVALID_ARGUMENT, one that leads out of the repository (``..``, a
  symbolic link) PERMISSION_DENIED. A file is closed and the next begun before a record would
  take it past ``max_file_bytes``; once a model's files hold more than ``max_total_bytes``, its
  oldest files are deleted (never the one being written). ``seq`` goes on from the highest on
  disk, so it orders a model's files across restarts.
- Off the request path: :meth:`observe` only samples and puts the exchange in a bounded queue
  (``put_nowait``); when the queue is full the record is dropped and counted (``dropped``),
  the request is never delayed. One writer thread encodes and writes the records; it imports
  TensorFlow (``tf.io.TFRecordWriter``) with its first record, and flushes after each run of
  records, so that :meth:`requests` reads what was logged.
- A model whose files cannot be written stops logging, with the error in its status (and one
  log line); serving goes on. Setting its logging again (:meth:`retry`) tries again.
- :meth:`stop` writes what is queued and closes the files.

Threads: :meth:`observe` runs on the threads that finish requests and returns at once;
:meth:`configure` on the thread that read the specs; reads (:meth:`requests`,
:meth:`tfrecord`: TensorFlow's TFRecord reader) on worker threads. Every method is
thread-safe. Imports nothing of tornado, Jupyter or TensorFlow.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import queue
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from ..core.model_spec import ModelSpec, RequestLogging
from ..core.servable import ExampleBatch
from ..core.status import Code, ServingError, invalid_argument
from ..dataplane import Exchange, classifications, regressions

log = logging.getLogger(__name__)

# The log collector type this server writes with (TFRecord files of PredictionLog), and the
# types it takes as its own ("" is what TF Serving's examples of logging_config leave).
COLLECTOR = "tfrecord"
COLLECTORS = ("", COLLECTOR)
LOGS_DIR = ".logs"
DEFAULT_PREFIX = LOGS_DIR + "/{model}/requests"
MAX_FILE_BYTES = 64 << 20
MAX_TOTAL_BYTES = 1 << 30
QUEUE_SIZE = 1024
# The most records one read returns.
MAX_READ = 1000
# The newest records written are also kept in memory (at most this many, and bytes), so the
# dashboard's and the panel's polls of recent requests do not read the files.
RECENT_KEPT = 100
RECENT_KEPT_BYTES = 8 << 20
# TFRecord's framing around each record: its length (8 bytes) and two CRCs (4 each).
_FRAMING = 16
# Records the writer takes off the queue before it flushes.
_RUN = 256
# How long a read waits for the records queued before it to be written.
READ_WAIT_SECONDS = 10.0
_STOP = object()


class LoggingStatusJSON(TypedDict):
    """A model's request logging, as the management API and the stats show it: the rate and
    prefix in force, records written and dropped (queue full, or not encodable) since this
    server started, the model's log files now (bytes, count), and why it stopped, if it did."""

    sampling_rate: float
    filename_prefix: str
    logged: int
    dropped: int
    bytes: int
    files: int
    error: str | None


@dataclass(frozen=True)
class RequestLogOptions:
    """Limits of the request log (see ``TFServingApp.request_log_max_file_bytes`` and
    ``request_log_max_total_bytes``); ``queue_size``: exchanges waiting for the writer."""

    max_file_bytes: int = MAX_FILE_BYTES
    max_total_bytes: int = MAX_TOTAL_BYTES
    queue_size: int = QUEUE_SIZE


@dataclass(frozen=True)
class LoggedRequest:
    """One logged request read back: when (``timestamp_secs``, whole seconds), the version
    that answered, the method and signature; ``inputs`` (predict) or ``examples`` (classify,
    regress); ``outputs``: a predict's outputs, a classify's ``classes`` and ``scores``
    ([N, K]), a regress's ``outputs`` ([N])."""

    time: float
    version: int
    method: str
    signature_name: str
    inputs: dict[str, np.ndarray] | None
    examples: ExampleBatch | None
    outputs: dict[str, np.ndarray]


def check_count(n: object) -> int:
    """How many records a read asks for (an int, or its decimal text from a URL): 1 to
    :data:`MAX_READ`, else INVALID_ARGUMENT."""
    if isinstance(n, str) and n.isascii() and n.isdigit():
        return check_count(int(n))
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_READ:
        raise invalid_argument(f"n must be an integer from 1 to {MAX_READ}, got {n!r}")
    return n


def default_prefix(model: str) -> str:
    return DEFAULT_PREFIX.format(model=model)


def check_sampling_rate(rate: object) -> float:
    """``rate`` as a float if it is a number from 0 to 1, else INVALID_ARGUMENT."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or math.isnan(rate) or \
            not 0.0 <= rate <= 1.0:
        raise invalid_argument(f"sampling_rate must be a number between 0 and 1, got {rate!r}")
    return float(rate)


def resolve_prefix(model_root: str, prefix: str) -> str:
    """The absolute path of ``prefix`` (relative to the repository ``model_root``), symbolic
    links followed: INVALID_ARGUMENT for an absolute or empty prefix or one with no file name
    part, PERMISSION_DENIED for one that leads out of the repository."""
    from ..jobs.sources import confine

    if not isinstance(prefix, str) or not prefix.strip() or "\0" in prefix:
        raise invalid_argument("filename_prefix must be a non-empty path")
    if os.path.isabs(prefix) or prefix.startswith("~"):
        raise invalid_argument(
            f"filename_prefix {prefix!r} must be relative to the model repository "
            "(this server writes request logs only inside it)")
    if prefix.endswith(("/", os.sep)) or os.path.basename(os.path.normpath(prefix)) in ("", ".",
                                                                                        ".."):
        raise invalid_argument(f"filename_prefix {prefix!r} must end with a file name part")
    path = os.path.join(model_root, prefix)
    try:
        directory = confine(os.path.dirname(path), [model_root])
    except ServingError:
        raise ServingError(Code.PERMISSION_DENIED,
                           f"filename_prefix {prefix!r} leads out of the model repository"
                           ) from None
    return os.path.join(directory, os.path.basename(path))


def _file_pattern(path: str) -> re.Pattern[str]:
    return re.compile(re.escape(os.path.basename(path)) + r"-(\d{8}T\d{6}Z)-(\d+)\.tfrecord$")


def log_files(path: str) -> list[tuple[str, int]]:
    """The log files of absolute prefix ``path`` with their sizes, oldest first (by ``seq``)."""
    directory = os.path.dirname(path)
    pattern = _file_pattern(path)
    found: list[tuple[int, str, int]] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        try:
            size = entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
        found.append((int(match.group(2)), entry.path, size))
    return [(p, size) for _, p, size in sorted(found)]


def _tensorflow() -> Any:
    """TensorFlow, set up as before a model loads (GPU memory growth). Its first import is
    serialised with the loaders' (``configure_tensorflow``'s lock): TensorFlow's modules
    deadlock when two threads import them at once, and ``tensorflow_serving``'s
    ``prediction_log_pb2`` imports them, so it is imported only after this."""
    from ..platforms.tensorflow import configure_tensorflow

    configure_tensorflow()
    import tensorflow as tf

    return tf


def encode(exchange: Exchange, when: float, sampling_rate: float) -> bytes:
    """The serialized ``PredictionLog`` of ``exchange`` (see the module docstring), logged at
    unix time ``when``. Raises ServingError for an output no TensorProto can hold. The caller
    has imported TensorFlow through :func:`_tensorflow` (the writer thread does, once)."""
    from ..grpc import codec

    spec = codec.LogSpec(exchange.method, exchange.ref.name, exchange.version,
                         exchange.signature_name)
    entry, call = codec.prediction_log(spec)
    if exchange.method == "predict":
        for name, arr in (exchange.inputs or {}).items():
            codec.array_into(call.request.inputs[name], arr, tensor_content=True, name=name)
        for name, arr in exchange.outputs.items():
            codec.array_into(call.response.outputs[name], arr, tensor_content=True, name=name)
    else:
        assert exchange.examples is not None  # classify and regress exchanges carry them
        codec.batch_into_input(call.request.input, exchange.examples)
        if exchange.method == "classify":
            codec.classification_result_into(call.response.result,
                                              classifications(exchange.outputs))
        else:
            codec.regression_result_into(call.response.result, regressions(exchange.outputs))
    metadata = entry.log_metadata
    codec.fill_model_spec(metadata.model_spec, spec.model, spec.version, spec.signature_name)
    metadata.sampling_config.sampling_rate = sampling_rate
    metadata.timestamp_secs = int(when)
    return bytes(entry.SerializeToString())


def decode(raw: bytes) -> LoggedRequest:
    """A serialized ``PredictionLog`` (predict, classify or regress) read back; INVALID_ARGUMENT
    for anything else."""
    _tensorflow()
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import prediction_log_pb2

    from ..grpc import codec

    entry = prediction_log_pb2.PredictionLog()
    try:
        entry.ParseFromString(raw)
    except DecodeError:
        raise invalid_argument("A logged record is not a PredictionLog") from None
    kind = entry.WhichOneof("log_type")
    methods = {field: method for method, field in codec.LOG_FIELDS.items()}
    if kind not in methods:
        raise invalid_argument(f"A logged record holds a {kind or 'empty log'}")
    call = getattr(entry, kind)
    spec = call.response.model_spec
    inputs: dict[str, np.ndarray] | None = None
    examples: ExampleBatch | None = None
    outputs: dict[str, np.ndarray]
    if kind == "predict_log":
        inputs = {name: codec.tensor_to_array(t) for name, t in call.request.inputs.items()}
        outputs = {name: codec.tensor_to_array(t) for name, t in call.response.outputs.items()}
    elif kind == "classify_log":
        examples = codec.input_to_batch(call.request.input)
        rows = call.response.result.classifications
        outputs = {
            "classes": np.array([[c.label for c in row.classes] for row in rows], dtype=object),
            "scores": np.array([[c.score for c in row.classes] for row in rows],
                               dtype=np.float32),
        }
    else:
        examples = codec.input_to_batch(call.request.input)
        outputs = {"outputs": np.array([r.value for r in call.response.result.regressions],
                                       dtype=np.float32)}
    return LoggedRequest(float(entry.log_metadata.timestamp_secs), int(spec.version.value),
                         methods[kind], spec.signature_name, inputs, examples, outputs)


class _ModelLog:
    """One model's log: its settings, counters and files; the file being written belongs to
    the writer thread, under :attr:`lock`."""

    def __init__(self, model: str, options: RequestLogOptions) -> None:
        self.model = model
        self.options = options
        self.lock = threading.Lock()
        self.sampling_rate = 0.0
        self.prefix = default_prefix(model)  # as configured, relative to the repository
        self.path: str | None = None  # the prefix resolved; None: it does not resolve
        self.config_error: str | None = None
        self.write_error: str | None = None
        self.logged = 0
        self.dropped = 0
        self.files: dict[str, int] = {}  # path -> bytes, oldest first
        self._writer: Any = None
        self._current: str | None = None
        self._seq = 0
        self._recent: collections.deque[bytes] = collections.deque()
        self._recent_bytes = 0

    @property
    def active(self) -> bool:
        return self.sampling_rate > 0 and self.path is not None and self.config_error is None \
            and self.write_error is None

    def set(self, rate: float, prefix: str, path: str | None, config_error: str | None) -> None:
        """New settings (from ``models.config``); a new prefix closes the file being written
        and takes the files of the new prefix as the model's."""
        with self.lock:
            if path != self.path:
                self._close()
                self._recent.clear()
                self._recent_bytes = 0
                self.files = dict(log_files(path)) if path is not None else {}
                self._seq = 0
                self.write_error = None
            if rate > 0 and self.sampling_rate == 0:
                self.write_error = None
            if rate == 0:
                self._close()
            self.sampling_rate, self.prefix, self.path = rate, prefix, path
            self.config_error = config_error

    def count_drop(self) -> None:
        with self.lock:
            self.dropped += 1

    def status(self) -> LoggingStatusJSON:
        with self.lock:
            return {"sampling_rate": self.sampling_rate, "filename_prefix": self.prefix,
                    "logged": self.logged, "dropped": self.dropped,
                    "bytes": sum(self.files.values()), "files": len(self.files),
                    "error": self.config_error or self.write_error}

    # ---------------------------------------------------------------- the writer's side

    def write(self, tf: Any, record: bytes) -> None:
        """Append one record (rotating and capping the files); on failure, stop with the error.
        Writer thread only."""
        with self.lock:
            if not self.active:
                return
            try:
                self._append(tf, record)
            except (OSError, ServingError, tf.errors.OpError) as exc:
                message = getattr(exc, "message", None) or str(exc)
                self.write_error = f"Cannot write the request log {self.path}: {message}"
                log.error("jupyter_tfserving: request logging of model %s stopped: %s",
                          self.model, self.write_error)
                self._close(quiet=True)
            else:
                self.logged += 1
                self._keep(record)

    def _keep(self, record: bytes) -> None:
        """Remember ``record`` among the newest (lock held)."""
        recent = self._recent
        recent.append(record)
        self._recent_bytes += len(record)
        while len(recent) > RECENT_KEPT or (self._recent_bytes > RECENT_KEPT_BYTES
                                            and len(recent) > 1):
            self._recent_bytes -= len(recent.popleft())

    def newest_kept(self, n: int) -> list[bytes] | None:
        """The ``n`` newest records written by this process, newest first, when it still holds
        that many in memory; else None (read the files)."""
        with self.lock:
            if len(self._recent) < n:
                return None
            return [self._recent[-i] for i in range(1, n + 1)]

    def _append(self, tf: Any, record: bytes) -> None:
        size = len(record) + _FRAMING
        max_file = min(self.options.max_file_bytes, self.options.max_total_bytes)
        current = self._current
        if current is not None and self.files.get(current, 0) + size > max_file and \
                self.files.get(current, 0) > 0:
            self._close()
            current = None
        if current is None:
            current = self._open(tf)
        self._writer.write(record)
        self.files[current] = self.files.get(current, 0) + size
        total = sum(self.files.values())
        for old in list(self.files):
            if total <= self.options.max_total_bytes or old == current:
                break
            with contextlib.suppress(FileNotFoundError):
                os.remove(old)
            total -= self.files.pop(old)

    def _open(self, tf: Any) -> str:
        assert self.path is not None
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        # checked again (resolved when configured): it may have been replaced by a link since
        if os.path.realpath(directory) != directory:
            raise ServingError(Code.PERMISSION_DENIED,
                               f"{directory} has become a link out of the repository")
        self._seq = max([self._seq, *(_seq_of(p) for p in self.files)]) + 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = f"{self.path}-{stamp}-{self._seq:06d}.tfrecord"
        self._writer = tf.io.TFRecordWriter(path)
        self._current = path
        self.files[path] = 0
        return path

    def flush(self) -> None:
        with self.lock:
            if self._writer is not None:
                try:
                    self._writer.flush()
                except Exception as exc:  # a TensorFlow OpError: the disk went away
                    self.write_error = f"Cannot write the request log {self.path}: {exc}"
                    log.error("jupyter_tfserving: request logging of model %s stopped: %s",
                              self.model, self.write_error)
                    self._close(quiet=True)

    def close(self) -> None:
        with self.lock:
            self._close()

    def _close(self, quiet: bool = False) -> None:
        writer, self._writer, self._current = self._writer, None, None
        if writer is None:
            return
        try:
            writer.close()
        except Exception:
            if not quiet:
                log.exception("jupyter_tfserving: closing the request log of %s", self.model)

    def paths_newest_first(self) -> list[str]:
        with self.lock:
            if self.path is None:
                return []
            if not self.active:  # files may have come and gone since they were listed
                self.files = dict(log_files(self.path))
            return list(reversed(self.files))


def _seq_of(path: str) -> int:
    match = re.search(r"-(\d+)\.tfrecord$", path)
    return int(match.group(1)) if match else 0


class RequestLog:
    """The request logs of one repository's models (see the module docstring)."""

    def __init__(self, model_root: str, options: RequestLogOptions | None = None, *,
                 sample: Callable[[], float] = random.random) -> None:
        self.model_root = os.path.realpath(model_root)
        self.options = options or RequestLogOptions()
        self._sample = sample
        self._logs: dict[str, _ModelLog] = {}
        # model -> its log while it is active: what observe() reads, replaced whole
        self._active: dict[str, _ModelLog] = {}
        self._configured: dict[str, RequestLogging | None] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(max(1, self.options.queue_size))
        self._thread: threading.Thread | None = None
        self._stopped = False
        # exchanges sampled, and those written or given up since: drain() compares them
        self._sampled = 0
        self._finished = 0
        self._idle = threading.Condition()

    # ---------------------------------------------------------------- life

    def start(self) -> None:
        """Start the writer thread (it loads TensorFlow only with its first record)."""
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="tfserving-request-log",
                                                daemon=True)
                self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, close every file; later exchanges are not logged. Blocking."""
        with self._lock:
            self._stopped = True
            thread = self._thread
            self._active = {}
        if thread is not None:
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                log.warning("jupyter_tfserving: the request log writer is stuck; stopping")
            thread.join(timeout)
        for model_log in list(self._logs.values()):
            model_log.close()

    # ---------------------------------------------------------------- configuration

    def configure(self, specs: Sequence[ModelSpec]) -> None:
        """Apply the models' ``logging_config`` (the control plane's spec listener): logging
        starts, changes or stops as ``models.config`` says. Cheap when nothing changed."""
        if self._stopped:
            return
        wanted = {spec.name: spec.logging for spec in specs}
        wanted.update({name: None for name in self._configured if name not in wanted})
        if wanted == self._configured:
            return
        with self._lock:
            for name, config in wanted.items():
                if self._configured.get(name) != config or name not in self._configured:
                    self._apply(name, config)
            self._configured = wanted
            self._active = {name: model_log for name, model_log in self._logs.items()
                            if model_log.active}

    def _apply(self, model: str, config: RequestLogging | None) -> None:
        """Callers hold ``_lock``."""
        model_log = self._logs.get(model)
        if config is None:
            if model_log is not None:
                model_log.set(0.0, model_log.prefix, model_log.path, None)
            return
        if model_log is None:
            model_log = self._logs[model] = _ModelLog(model, self.options)
        prefix = config.filename_prefix or default_prefix(model)
        path: str | None = None
        error: str | None = None
        try:
            if config.collector not in COLLECTORS:
                raise ServingError(
                    Code.NOT_FOUND,
                    f"Cannot find a log collector of type {config.collector!r}: this server's "
                    f"collector writes TFRecord files (type {COLLECTOR!r})")
            path = resolve_prefix(self.model_root, prefix)
        except ServingError as exc:
            error = exc.message
            log.error("jupyter_tfserving: request logging of model %s is off: %s", model, error)
        model_log.set(config.sampling_rate, prefix, path, error)

    def check(self, model: str, sampling_rate: object, filename_prefix: object
              ) -> RequestLogging | None:
        """The ``logging_config`` to write for ``POST P/api/models/{model}:logging``: None
        for a rate of 0 (logging off), else the rate, the prefix (``filename_prefix``, else
        the one in force, else the default) and :data:`COLLECTOR`. INVALID_ARGUMENT or
        PERMISSION_DENIED (see :func:`resolve_prefix`) for bad values."""
        rate = check_sampling_rate(sampling_rate)
        if filename_prefix is not None and not isinstance(filename_prefix, str):
            raise invalid_argument("filename_prefix must be a string")
        if rate == 0:
            return None
        if filename_prefix is None:
            configured = self._configured.get(model)
            filename_prefix = (configured.filename_prefix if configured is not None else "") \
                or default_prefix(model)
        resolve_prefix(self.model_root, filename_prefix)
        return RequestLogging(rate, filename_prefix, COLLECTOR)

    def retry(self, model: str) -> None:
        """Clear a write error of ``model`` (its logging was set again): the next record
        tries its files again."""
        with self._lock:
            model_log = self._logs.get(model)
            if model_log is None:
                return
            with model_log.lock:
                model_log.write_error = None
            self._active = {name: m for name, m in self._logs.items() if m.active}

    # ---------------------------------------------------------------- status

    def status(self, model: str) -> LoggingStatusJSON | None:
        """``model``'s logging status; None when it has not logged since this server started
        (and is not configured to)."""
        model_log = self._logs.get(model)
        return model_log.status() if model_log is not None else None

    def status_or_off(self, model: str) -> LoggingStatusJSON:
        """:meth:`status`, or that of logging that is off at the default prefix."""
        status = self.status(model)
        if status is not None:
            return status
        return {"sampling_rate": 0.0, "filename_prefix": default_prefix(model), "logged": 0,
                "dropped": 0, "bytes": 0, "files": 0, "error": None}

    def is_on(self, model: str) -> bool:
        """Whether ``model``'s requests are being logged now."""
        return model in self._active

    # ---------------------------------------------------------------- the request path

    def observe(self, exchange: Exchange) -> None:
        """The data plane's exchange observer: sample, and queue without waiting (a full
        queue drops the record, counted)."""
        model_log = self._active.get(exchange.ref.name)
        if model_log is None:
            return
        rate = model_log.sampling_rate
        if rate < 1.0 and self._sample() >= rate:
            return
        with self._idle:
            self._sampled += 1
        try:
            self._queue.put_nowait((model_log, exchange, time.time()))
        except queue.Full:
            self._written(1)
            model_log.count_drop()

    def _written(self, count: int) -> None:
        with self._idle:
            self._finished += count
            self._idle.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until the exchanges sampled so far are written (or given up); False if
        ``timeout`` seconds pass first."""
        with self._idle:
            target = self._sampled
            return self._idle.wait_for(lambda: self._finished >= target, timeout)

    def _run(self) -> None:
        tf: Any = None
        while True:
            run = [self._queue.get()]
            while len(run) < _RUN and run[-1] is not _STOP:
                try:
                    run.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            touched: dict[int, _ModelLog] = {}
            for item in run:
                if item is _STOP:
                    break
                model_log, exchange, when = item
                if not model_log.active:
                    continue
                try:
                    if tf is None:
                        tf = _tensorflow()
                    record = encode(exchange, when, model_log.sampling_rate)
                except Exception as exc:
                    model_log.count_drop()
                    log.warning("jupyter_tfserving: a request to %s could not be logged: %s",
                                model_log.model, getattr(exc, "message", None) or exc)
                    continue
                model_log.write(tf, record)
                touched[id(model_log)] = model_log
            for model_log in touched.values():
                model_log.flush()
            self._written(sum(1 for item in run if item is not _STOP))
            if run[-1] is _STOP:
                return
            if touched:
                with self._lock:
                    self._active = {name: m for name, m in self._logs.items() if m.active}

    # ---------------------------------------------------------------- reading back

    def _model_log(self, model: str) -> _ModelLog:
        """``model``'s log, or one at the default prefix (logs of an earlier run)."""
        with self._lock:
            model_log = self._logs.get(model)
            if model_log is not None:
                return model_log
        model_log = _ModelLog(model, self.options)
        try:
            model_log.path = resolve_prefix(self.model_root, model_log.prefix)
        except ServingError:
            model_log.path = None
        return model_log

    def recent(self, model: str, n: int) -> list[bytes]:
        """The ``n`` (at most :data:`MAX_READ`) newest logged records of ``model``, newest
        first, serialized: once the exchanges queued before the call are written (up to
        :data:`READ_WAIT_SECONDS`). A record cut short at the end of the file being written is
        not read. Blocking (TensorFlow's TFRecord reader)."""
        check_count(n)
        if self._thread is not None:
            self.drain(READ_WAIT_SECONDS)
        model_log = self._model_log(model)
        kept = model_log.newest_kept(n)
        if kept is not None:
            return kept
        paths = model_log.paths_newest_first()
        if not paths:
            return []
        tf = _tensorflow()
        out: list[bytes] = []
        for path in paths:
            tail: collections.deque[bytes] = collections.deque(maxlen=n - len(out))
            try:
                for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
                    tail.append(bytes(raw))
            except tf.errors.OpError as exc:  # gone (capped), or its last record half written
                log.debug("jupyter_tfserving: reading %s stopped: %s", path, exc.message)
            out.extend(reversed(tail))
            if len(out) >= n:
                break
        return out

    def requests(self, model: str, n: int) -> list[LoggedRequest]:
        """:meth:`recent`, decoded."""
        return [decode(raw) for raw in self.recent(model, n)]

    def tfrecord(self, model: str, n: int) -> bytes:
        """:meth:`recent` as the bytes of a TFRecord file (newest first)."""
        return tfrecord_bytes(self.recent(model, n))


def tfrecord_bytes(records: Iterable[bytes]) -> bytes:
    """``records`` framed as a TFRecord file, written by TensorFlow's own writer."""
    tf = _tensorflow()
    with tempfile.TemporaryDirectory(prefix="tfserving-log-") as tmp:
        path = os.path.join(tmp, "requests.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for record in records:
                writer.write(record)
        with open(path, "rb") as f:
            return f.read()

