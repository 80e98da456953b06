"""The data plane: TF Serving's request operations on decoded requests, with no transport in it.

After MLServer's ``handlers/dataplane.py``. Every front end (the REST handlers, later the gRPC
servicers and bulk jobs) parses its own wire format into a :class:`ModelRef` and decoded inputs,
calls one of these operations, and encodes the typed result in its own format. What the
operations share lives here once: routing to a version (a handle held for the request's life),
signature lookup and method checks, batching, request admission (``stop`` drains what was
admitted) and the per-version statistics.

Threads: :meth:`DataPlane.begin_predict` and :meth:`DataPlane.submit_predict` return at once and
may run on the IOLoop (the run goes to a batch thread or a request thread); everything else
blocks (model runs, scans) and runs on a worker thread. Errors are ``ServingError`` with TF
Serving's codes and messages; one raised after routing carries the version (``exc.version``).
Imports nothing of tornado, Jupyter or TensorFlow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np

from .batching import BatchingParameters, BatchScheduler, RunFuture
from .batching.scheduler import BULK_QUIET_SECONDS
from .core.admission import Admission, Ticket
from .core.handle import ServableHandle
from .core.manager import Manager
from .core.servable import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    ExampleBatch,
    SignatureInfo,
)
from .core.state import VersionStatus
from .core.status import Code, ServingError, SignatureNotFound, invalid_argument, not_found
from .metrics.stats import ServingStats

log = logging.getLogger(__name__)

Outputs = dict[str, np.ndarray]
T = TypeVar("T")
# Turns the routed version's signature into the request's inputs (a front end's decoder).
Decoder = Callable[[SignatureInfo], dict[str, np.ndarray]]


@dataclass(frozen=True)
class ModelRef:
    """Which model a request addresses: by version, by label, or neither (routed)."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclass
class PredictCall:
    """A decoded predict holding a handle on its version until the model has run. ``ref``
    (how the client addressed the model) and ``started`` (``time.perf_counter()`` when it was
    routed) are set for online requests, which :meth:`DataPlane.submit_predict` reports as an
    :class:`Exchange`; a call without ``ref`` (a bulk job's, a shadow's) is not reported."""

    handle: ServableHandle
    signature_name: str
    signature: SignatureInfo
    inputs: dict[str, np.ndarray]
    ref: ModelRef | None = None
    started: float = 0.0

    @property
    def version(self) -> int:
        return self.handle.id.version


@dataclass(frozen=True)
class Exchange:
    """One online request that succeeded, as the data plane saw it: what the request log and
    the shadow traffic are fed (REST and gRPC alike; bulk jobs and shadow runs are not
    exchanges). ``inputs`` (predict) or ``examples`` (classify, regress) is the decoded request,
    ``outputs`` every output of the signature as the model returned it (before an output
    filter or a classify/regress result was made of them); ``seconds`` runs from routing to
    the outputs (queueing and the model run; not the front end's decoding or encoding),
    ``run_seconds`` is the model's run of the batch that answered it (``RunFuture``), the
    measure to compare versions by. Observers must not modify the arrays."""

    ref: ModelRef
    version: int
    method: str  # "predict", "classify" or "regress"
    signature_name: str
    signature: SignatureInfo
    inputs: Mapping[str, np.ndarray] | None
    examples: ExampleBatch | None
    outputs: Mapping[str, np.ndarray]
    seconds: float
    run_seconds: float


# Called on the thread that finished the request (a batch thread or a request thread) for each
# exchange; it must only hand the exchange on (a bounded queue), never block or run a model.
ExchangeObserver = Callable[[Exchange], None]


def _run_into(future: RunFuture, run: Callable[[dict[str, np.ndarray]], Outputs],
              inputs: dict[str, np.ndarray]) -> None:
    """An unbatched run on a request thread, completing ``future`` as a batch would."""
    if not future.set_running_or_notify_cancel():
        return
    started = time.perf_counter()
    try:
        outputs = run(inputs)
    except BaseException as exc:
        future.set_exception(exc)
        return
    future.run_seconds = time.perf_counter() - started
    future.set_result(outputs)


class ModelInfo(NamedTuple):
    """A model as ``GET /v1/models`` lists it."""

    name: str
    labels: dict[str, int]
    statuses: list[VersionStatus]


@dataclass(frozen=True)
class DataPlaneOptions:
    """What the data plane needs of the service's options (see ``ServiceOptions``)."""

    request_timeout_seconds: float | None
    # None turns batching off; per-model parameters replace it for their model.
    batching: BatchingParameters | None
    model_batching: Mapping[str, BatchingParameters]
    # Refuse classify/regress on a signature whose method_name is not classify/regress (TF
    # Serving's --enable_signature_method_name_check; off there, so native TF2 signatures,
    # all "predict", can classify and regress).
    signature_method_name_check: bool = True


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


def _signature(handle: ServableHandle, name: str) -> SignatureInfo:
    signatures = handle.servable.signatures()
    if name not in signatures:
        raise SignatureNotFound(name)
    return signatures[name]


@dataclass(frozen=True)
class Classifications:
    """A classify's result, as TF Serving's ClassificationResult holds it: per example, K
    classes with a label (None: the signature has no ``classes`` output, labels are "") and a
    float32 score (None: no ``scores`` output, scores are 0.0)."""

    labels: list[list[str]] | None  # [N][K]
    scores: np.ndarray | None  # float32 [N, K]
    num_examples: int
    num_classes: int


def _batch_matrix(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 1:
        return arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise invalid_argument(
            f"Expected {name} Tensor shape: [batch_size num_classes] but got {list(arr.shape)}")
    return arr


def _label(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    raise invalid_argument(
        f"Expected classes Tensor of DT_STRING. Got an element of type {type(value).__name__}")


def classifications(outputs: Mapping[str, np.ndarray]) -> Classifications:
    """A classification signature's outputs (``classes``: strings, [N, K]; ``scores``:
    numbers, [N, K]; rank 1 is [N, 1]) checked as TF Serving's classifier checks them:
    INVALID_ARGUMENT when neither is there, for other ranks, mismatched shapes or dtypes.
    Labels that are not valid UTF-8 get U+FFFD replacements."""
    classes = outputs.get("classes")
    scores = outputs.get("scores")
    if classes is None and scores is None:
        raise invalid_argument(
            "Classification signature outputs must include 'classes' and/or 'scores'")
    labels: list[list[str]] | None = None
    values: np.ndarray | None = None
    shape: tuple[int, ...] | None = None
    if classes is not None:
        arr = _batch_matrix(np.asarray(classes), "classes")
        if arr.dtype.kind not in "OSU":
            raise invalid_argument(f"Expected classes Tensor of DT_STRING. Got: {arr.dtype}")
        shape = arr.shape
        labels = [[_label(v) for v in row] for row in arr.tolist()]
    if scores is not None:
        arr = _batch_matrix(np.asarray(scores), "scores")
        if arr.dtype.kind not in "fiu":
            raise invalid_argument(f"Expected scores Tensor of DT_FLOAT. Got: {arr.dtype}")
        if shape is not None and arr.shape != shape:
            raise invalid_argument(
                "Tensors class and score should match in shape, but had "
                f"{list(shape)} and {list(arr.shape)}")
        shape = arr.shape
        values = arr.astype(np.float32)
    assert shape is not None
    return Classifications(labels, values, shape[0], shape[1])


def regressions(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """A regression signature's ``outputs`` ([N] or [N, 1], numeric) as float32 [N] (TF
    Serving's RegressionResult holds floats); INVALID_ARGUMENT when missing or of another
    shape or dtype."""
    if "outputs" not in outputs:
        raise invalid_argument("Regression signature outputs must include 'outputs'")
    arr = np.asarray(outputs["outputs"])
    if not (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1)):
        raise invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{list(arr.shape)}")
    if arr.dtype.kind not in "fiu":
        raise invalid_argument(f"Expected output Tensor of DT_FLOAT. Got: {arr.dtype}")
    return arr.reshape(-1).astype(np.float32)


def check_method(signature: SignatureInfo, expected: str, what: str) -> None:
    if signature.method_name != expected:
        raise invalid_argument(
            f"Expected {what} signature method_name to be {expected}. "
            f"Was: {signature.method_name}"
        )


class DataPlane:
    """Predict, classify, regress, status and metadata over one manager and batch scheduler.

    Built by ``ModelService``; front ends reach it as ``service.dataplane``."""

    def __init__(self, manager: Manager, scheduler: BatchScheduler, executor: Executor,
                 stats: ServingStats, admission: Admission, options: DataPlaneOptions) -> None:
        self._manager = manager
        self._scheduler = scheduler
        self._executor = executor
        self.stats = stats
        self.admission = admission
        self.options = options
        self._observers: tuple[ExchangeObserver, ...] = ()
        self._observers_lock = threading.Lock()

    # ------------------------------------------------------------------ exchanges

    def add_exchange_observer(self, observer: ExchangeObserver) -> None:
        """Have ``observer`` called with every successful online request from now on (the
        service adds the request log and the shadow traffic once, at start)."""
        with self._observers_lock:
            self._observers = (*self._observers, observer)

    def remove_exchange_observer(self, observer: ExchangeObserver) -> None:
        with self._observers_lock:
            self._observers = tuple(o for o in self._observers if o != observer)

    def _report(self, exchange: Exchange) -> None:
        for observer in self._observers:
            try:
                observer(exchange)
            except Exception:  # an observer's bug must never reach a client
                log.exception("jupyter_tfserving: exchange observer %r failed", observer)

    # ------------------------------------------------------------------ requests

    def admit(self) -> Ticket:
        """A request enters: its ticket, released by the front end when the request ends.
        UNAVAILABLE (503) once the service is stopping."""
        return self.admission.admit()

    @contextmanager
    def routed(self, ref: ModelRef) -> Iterator[ServableHandle]:
        """Hold a handle on the version ``ref`` routes to; a ServingError raised while it is
        held is marked with that version (for per-version error counts)."""
        with self._manager.acquire(ref.name, ref.version, ref.label) as handle:
            try:
                yield handle
            except ServingError as exc:
                exc.version = handle.id.version
                raise

    def begin_predict(self, ref: ModelRef, signature_name: str | None,
                      decode: Decoder) -> PredictCall:
        """Route a predict, find its signature and decode its inputs with ``decode``; the
        returned call holds a handle, which :meth:`submit_predict` releases once the model ran
        (a caller that does not submit must release ``call.handle`` itself)."""
        handle = self._manager.acquire(ref.name, ref.version, ref.label)
        try:
            name = signature_name or DEFAULT_SIGNATURE
            signature = _signature(handle, name)
            inputs = decode(signature)
        except BaseException as exc:
            if isinstance(exc, ServingError):
                exc.version = handle.id.version
            handle.release()
            raise
        return PredictCall(handle, name, signature, inputs, ref, time.perf_counter())

    def batching_parameters(self, model: str) -> BatchingParameters | None:
        """The batching parameters of ``model`` (None: it runs unbatched)."""
        if self.options.batching is None:
            return None
        return self.options.model_batching.get(model, self.options.batching)

    def submit_predict(self, call: PredictCall, *, bulk: bool = False,
                       shadow: bool = False) -> RunFuture:
        """Run a begun predict on its version, batched with other callers' rows when the
        model's batching is on and the signature has a batch dimension; else alone on a request
        thread. Returns at once. The call's handle is released, and the work counted for
        ``stop`` until, the future completes (whatever the outcome), so a version unloads, and
        the service stops, only after the model ran. Raises UNAVAILABLE at once when the batch
        queue is full; a failure of the run carries the version. ``bulk`` (a bulk job's rows):
        batched in queues of their own that run only when no online batch is ready or running
        and online work has been idle for ``BULK_QUIET_SECONDS`` (the scheduler's bulk lane),
        with no deadline. ``shadow`` (a shadow traffic copy): the same lane without the quiet
        period, so copies also run between one client's requests. Unbatched calls run on a
        request thread either way. The batch key's last element is the lane: "online",
        "bulk" or "shadow"."""
        handle = call.handle
        servable = handle.servable
        model, version = handle.id.name, handle.id.version
        signature_name = call.signature_name
        stats = self.stats

        def run(inputs: Mapping[str, np.ndarray]) -> Outputs:
            started = time.perf_counter()
            try:
                return servable.run(signature_name, inputs)
            finally:
                stats.record_runtime(model, "predict", time.perf_counter() - started)

        work = self.admission.extend()
        params = self.batching_parameters(model)
        low = bulk or shadow
        lane = "shadow" if shadow else "bulk" if bulk else "online"
        quiet = 0.0 if shadow else BULK_QUIET_SECONDS
        try:
            if params is not None and is_batchable(call.signature, call.inputs):
                # Rows can share a batch when their non-batch shapes match, or, with
                # pad_variable_length_inputs, when only their lengths differ (ranks match).
                pad = params.pad_variable_length_inputs
                key = (model, version, signature_name,
                       tuple((k, a.dtype.str, a.ndim if pad else a.shape[1:])
                             for k, a in sorted(call.inputs.items())), lane)
                timeout = None if low else self.options.request_timeout_seconds
                deadline = time.monotonic() + timeout if timeout else None
                future = self._scheduler.schedule(key, call.inputs, run, params, deadline,
                                                  bulk=low, quiet_seconds=quiet)
            else:
                future = RunFuture()
                self._executor.submit(_run_into, future, run, call.inputs)
        except BaseException as exc:
            handle.release()
            work.release()
            if isinstance(exc, ServingError):
                exc.version = version
            raise

        ref = call.ref

        def done(f: Future[Outputs]) -> None:
            handle.release()
            work.release()
            exc = f.exception() if not f.cancelled() else None
            if isinstance(exc, ServingError):
                exc.version = version
            elif exc is None and ref is not None and not low and self._observers \
                    and not f.cancelled():
                self._report(Exchange(ref, version, "predict", signature_name, call.signature,
                                      call.inputs, None, f.result(),
                                      time.perf_counter() - call.started,
                                      future.run_seconds or 0.0))

        future.add_done_callback(done)
        return future

    def _run_examples(self, ref: ModelRef, signature_name: str | None, batch: ExampleBatch,
                      method: str, what: str, result: Callable[[Outputs], T]) -> tuple[int, T]:
        started = time.perf_counter()
        with self.routed(ref) as handle:
            name = signature_name or DEFAULT_SIGNATURE
            try:
                signature = _signature(handle, name)
            except SignatureNotFound:
                raise SignatureNotFound(
                    name, f"No signature was found with the name: {name}") from None
            if self.options.signature_method_name_check:
                check_method(signature, method, what)
            run_started = time.perf_counter()
            outputs = handle.servable.run_examples(name, batch)
            run_seconds = time.perf_counter() - run_started
            answer = result(outputs)
            version = handle.id.version
        if self._observers:
            self._report(Exchange(ref, version, "classify" if method == CLASSIFY_METHOD
                                  else "regress", name, signature, None, batch, outputs,
                                  time.perf_counter() - started, run_seconds))
        return version, answer

    def classify(self, ref: ModelRef, signature_name: str | None,
                 batch: ExampleBatch) -> tuple[int, Classifications]:
        """Classify: the version that answered and its classes and scores. Blocking."""
        return self._run_examples(ref, signature_name, batch, CLASSIFY_METHOD, "classification",
                                  classifications)

    def regress(self, ref: ModelRef, signature_name: str | None,
                batch: ExampleBatch) -> tuple[int, np.ndarray]:
        """Regress: the version that answered and its values (float32 [N]). Blocking."""
        return self._run_examples(ref, signature_name, batch, REGRESS_METHOD, "regression",
                                  regressions)

    def record_request(self, model: str, version: int | None, api: str, code: Code,
                       seconds: float, entrypoint: str) -> None:
        """Count one finished request (front ends call this once per request)."""
        self.stats.record_request(model, version, api, code.name, seconds, entrypoint)

    # ------------------------------------------------------------------ status, metadata

    def model_status(self, ref: ModelRef) -> list[VersionStatus]:
        """GetModelStatus: every version the manager knows (END ones included), newest first;
        only the one ``ref`` names when it names one."""
        statuses = self._manager.version_statuses(ref.name)
        version = ref.version
        if ref.label is not None:
            labels = self._manager.labels(ref.name)
            if ref.label not in labels:
                raise invalid_argument(f"Unrecognized servable version label: {ref.label}")
            version = labels[ref.label]
        if version is not None:
            statuses = [s for s in statuses if s.version == version]
            if not statuses:
                raise not_found(f"Could not find version {version} of model {ref.name}")
        return statuses

    def model_metadata(self, ref: ModelRef) -> tuple[int, dict[str, Any]]:
        """GetModelMetadata: the version routed to and its ``signature_def`` metadata."""
        with self.routed(ref) as handle:
            return handle.id.version, handle.servable.metadata()

    def list_models(self) -> list[ModelInfo]:
        """Every model the manager knows with its labels and version statuses."""
        models = []
        for name in self._manager.model_names():
            try:
                statuses = self._manager.version_statuses(name)
            except ServingError as exc:  # a model forgotten between the two calls
                if exc.code == Code.NOT_FOUND:
                    continue
                raise
            models.append(ModelInfo(name, self._manager.labels(name), statuses))
        return models
