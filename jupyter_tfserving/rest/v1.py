"""TF Serving's v1 REST semantics, free of any web framework.

Each function takes the :class:`~jupyter_tfserving.service.ModelService`, the model reference
parsed from the URL and (for POSTs) the raw body, and returns JSON-ready data or bytes. They run
on request worker threads, because they parse JSON, convert tensors and run models; the tornado
handlers only await them. Errors are raised as ``ServingError`` with TF Serving's messages.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import numpy as np

from ..core.servable import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    Servable,
    SignatureInfo,
)
from ..core.handle import ServableHandle
from ..core.state import VersionStatus
from ..core.status import Code, ServingError, invalid_argument, not_found
from . import json_codec

if TYPE_CHECKING:
    from ..service import ModelService


@dataclass(frozen=True)
class ModelRef:
    """``/v1/models/{name}[/versions/{version} | /labels/{label}]``."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclass(frozen=True)
class Answer:
    """A successful answer: the JSON body and the version that produced it."""

    body: bytes
    version: int


def _signature(servable: Servable, name: str) -> SignatureInfo:
    signatures = servable.signatures()
    if name not in signatures:
        raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')
    return signatures[name]


def _check_method(signature: SignatureInfo, expected: str, what: str) -> None:
    if signature.method_name != expected:
        raise invalid_argument(
            f"Expected {what} signature method_name to be {expected}. "
            f"Was: {signature.method_name}"
        )


def json_limits(service: "ModelService") -> dict[str, int]:
    """The service's JSON request limits, as the keyword arguments of the ``json_codec``
    parsers (``max_json_depth``, ``max_tensor_elements``: 400 past them)."""
    options = service.options
    return {"max_depth": options.max_json_depth, "max_values": options.max_tensor_elements}


@contextmanager
def _routed(service: "ModelService", ref: ModelRef) -> Iterator[ServableHandle]:
    """Hold a handle on the version ``ref`` routes to; a ServingError raised while it is held
    is marked with that version (for per-version error counts)."""
    with service.manager.acquire(ref.name, ref.version, ref.label) as handle:
        try:
            yield handle
        except ServingError as exc:
            exc.version = handle.id.version
            raise


@dataclass
class PredictCall:
    """A decoded predict request holding a handle on its version until :meth:`release`."""

    handle: ServableHandle
    signature_name: str
    signature: SignatureInfo
    inputs: dict[str, np.ndarray]
    row_format: bool

    @property
    def version(self) -> int:
        return self.handle.id.version

    def release(self) -> None:
        self.handle.release()


def begin_predict(service: "ModelService", ref: ModelRef, body: bytes) -> PredictCall:
    """Parse and decode a predict request and route it; the returned call holds a handle, which
    the caller must release once the model has run (``ModelService.submit_predict`` arranges
    it). Runs on a request worker thread."""
    service.check_serving()
    request = json_codec.parse_predict_request(body, **json_limits(service))
    handle = service.manager.acquire(ref.name, ref.version, ref.label)
    try:
        name = request.signature_name or DEFAULT_SIGNATURE
        signature = _signature(handle.servable, name)
        inputs = json_codec.decode_inputs(request, signature)
    except BaseException as exc:
        if isinstance(exc, ServingError):
            exc.version = handle.id.version
        handle.release()
        raise
    return PredictCall(handle, name, signature, inputs, request.row_format)


def finish_predict(call: PredictCall, outputs: Mapping[str, np.ndarray]) -> Answer:
    """Encode the model's outputs as TF Serving's JSON. Runs on a request worker thread."""
    try:
        return Answer(json_codec.encode_predict_response(outputs, call.row_format), call.version)
    except ServingError as exc:
        exc.version = call.version
        raise


def predict(service: "ModelService", ref: ModelRef, body: bytes) -> Answer:
    """The whole predict, blocking (for callers without an event loop); the REST handler runs
    :func:`begin_predict`, ``submit_predict`` and :func:`finish_predict` without holding a
    thread while the request waits for its batch."""
    call = begin_predict(service, ref, body)
    future = service.submit_predict(call)
    try:
        outputs = future.result()
    except ServingError as exc:
        exc.version = call.version
        raise
    return finish_predict(call, outputs)


def _run_examples(service: "ModelService", ref: ModelRef, body: bytes, method: str,
                  what: str, encode: Callable[[Mapping[str, np.ndarray]], bytes]) -> Answer:
    service.check_serving()
    signature_name, batch = json_codec.parse_examples_request(body, **json_limits(service))
    with _routed(service, ref) as handle:
        name = signature_name or DEFAULT_SIGNATURE
        _check_method(_signature(handle.servable, name), method, what)
        outputs = handle.servable.run_examples(name, batch)
        return Answer(encode(outputs), handle.id.version)


def classify(service: "ModelService", ref: ModelRef, body: bytes) -> Answer:
    return _run_examples(service, ref, body, CLASSIFY_METHOD, "classification",
                         json_codec.encode_classify_response)


def regress(service: "ModelService", ref: ModelRef, body: bytes) -> Answer:
    return _run_examples(service, ref, body, REGRESS_METHOD, "regression",
                         json_codec.encode_regress_response)


def _status_json(status: VersionStatus) -> dict[str, Any]:
    error = status.error
    return {
        "version": str(status.version),
        "state": status.state.value,
        "status": {
            "error_code": error.code.name if error is not None else Code.OK.name,
            "error_message": error.message if error is not None else "",
        },
    }


def model_status(service: "ModelService", ref: ModelRef) -> dict[str, Any]:
    """GetModelStatus: every version the manager knows (END ones included), newest first."""
    statuses = service.manager.version_statuses(ref.name)
    version = ref.version
    if ref.label is not None:
        labels = service.manager.labels(ref.name)
        if ref.label not in labels:
            raise invalid_argument(f"Unrecognized servable version label: {ref.label}")
        version = labels[ref.label]
    if version is not None:
        statuses = [s for s in statuses if s.version == version]
        if not statuses:
            raise not_found(f"Could not find version {version} of model {ref.name}")
    return {"model_version_status": [_status_json(s) for s in statuses]}


def model_metadata(service: "ModelService", ref: ModelRef) -> dict[str, Any]:
    """GetModelMetadata with ``signature_def``, as TF Serving writes it."""
    with service.manager.acquire(ref.name, ref.version, ref.label) as handle:
        return {
            "model_spec": {
                "name": ref.name,
                "signature_name": "",
                "version": str(handle.id.version),
            },
            "metadata": handle.servable.metadata(),
        }


def list_models(service: "ModelService") -> dict[str, Any]:
    """``GET /v1/models`` (not in TF Serving): every model with its versions and labels."""
    models = []
    for name in sorted(service.manager.model_names()):
        try:
            statuses = service.manager.version_statuses(name)
        except ServingError as exc:  # a model forgotten between the two calls
            if exc.code == Code.NOT_FOUND:
                continue
            raise
        models.append(
            {
                "name": name,
                "labels": {k: str(v) for k, v in sorted(service.manager.labels(name).items())},
                "model_version_status": [_status_json(s) for s in statuses],
            }
        )
    return {"models": models}


def stats(service: "ModelService") -> dict[str, Any]:
    """``GET P/api/stats``: per model and version, state, labels, in-flight handles, requests,
    errors and latency (p50/p99 and buckets, microseconds), for the dashboard."""
    snapshot = service.stats.snapshot()
    in_flight = service.in_flight()
    models = []
    for name in sorted(service.manager.model_names()):
        try:
            statuses = service.manager.version_statuses(name)
        except ServingError:
            continue
        versions = []
        for status in statuses:
            entry = _status_json(status)
            entry["in_flight"] = in_flight.get((name, status.version), 0)
            entry.update(snapshot.version_json(name, status.version))
            versions.append(entry)
        models.append({
            "name": name,
            "labels": {k: str(v) for k, v in sorted(service.manager.labels(name).items())},
            "versions": versions,
        })
    return {"models": models}


def prometheus_text(service: "ModelService") -> bytes:
    from ..metrics.prometheus import exposition

    return exposition(service.prometheus_registry)


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()
