"""``P/api/...`` and the metrics route: thin tornado adapters over ``ControlPlane``.

The routes are rows of ``rest.routes.ROUTES`` (documented, with the v1 routes, in
``openapi.json``); the operations are ``service.control``'s. Same login, authorizer
(``tfserving`` resource), admission and ``{"error": ...}`` bodies as the v1 routes
(``handlers.RoutedHandler``). Operations run on the service's worker threads without the request
deadline (an upload may take a while to unpack, a rollout waits for its version to load). A body
larger than ``max_request_bytes`` (an upload: ``max_upload_bytes``) is answered 413 before
anything else; JSON bodies are parsed on a worker within ``max_json_depth`` and
``max_tensor_elements``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import tempfile
from collections.abc import Mapping
from http import HTTPStatus
from importlib import resources
from typing import Any

from tornado import web

from ..core.servable import Example, ExampleBatch
from ..core.status import ServingError, invalid_argument
from ..core.validation import check_canary_weight, parse_version
from ..traffic.request_log import LoggedRequest, check_count
from ..traffic.shadow import ShadowRequest
from . import v1
from .handlers import GRPC_TARGET_SETTING, RoutedHandler, json_limits
from .json_codec import encode_predict_response, parse_json_body


def openapi_document() -> bytes:
    """The packaged OpenAPI document (``jupyter_tfserving/rest/openapi.json``)."""
    return resources.files(__package__).joinpath("openapi.json").read_bytes()


def request_json(request: ShadowRequest) -> dict[str, Any]:
    """A request the traffic tools kept, as JSON: a predict's inputs by name (TF Serving's JSON
    values, the REST codec's: bytes that are not UTF-8 as ``{"b64": ...}``), or a classify's or
    regress's ``{"examples": [...], "context": {...}}`` (features as lists of values)."""
    if isinstance(request, ExampleBatch):
        doc: dict[str, Any] = {"examples": [_example_json(e) for e in request.examples]}
        if request.context is not None:
            doc["context"] = _example_json(request.context)
        return doc
    return _tensors_json(request)


def _tensors_json(tensors: Mapping[str, Any]) -> dict[str, Any]:
    if not tensors:
        return {}
    encoded = json.loads(encode_predict_response(dict(tensors), row_format=False))["outputs"]
    return encoded if len(tensors) > 1 else {next(iter(tensors)): encoded}


def _example_json(example: Example) -> dict[str, Any]:
    return {name: [_bytes_json(v) for v in feature.values] if feature.kind == "bytes"
            else list(feature.values) for name, feature in example.items()}


def _bytes_json(value: bytes) -> Any:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def logged_json(record: LoggedRequest) -> dict[str, Any]:
    """A logged request read back, as ``GET P/api/models/{m}/requests`` answers it: its
    inputs as :func:`request_json` writes them, its outputs as TF Serving's JSON values."""
    request = record.examples if record.examples is not None else record.inputs or {}
    return {"time": record.time, "version": record.version, "method": record.method,
            "signature_name": record.signature_name, "inputs": request_json(request),
            "outputs": _tensors_json(record.outputs)}


DEFAULT_LOGGED_REQUESTS = 20


def _optional_version(doc: dict[str, Any]) -> int | None:
    """The body's ``version`` member, if it has one."""
    return parse_version(doc["version"]) if doc.get("version") is not None else None


class ManagementHandler(RoutedHandler):
    """The management operations, the stats, the OpenAPI document and Prometheus metrics."""

    def body_accepted(self) -> bool:
        return self.body_within(self.service.options.max_request_bytes, "max_request_bytes")

    async def _json_body(self) -> dict[str, Any] | None:
        """The body as a JSON object, parsed on a worker within the service's limits; or None
        after answering why it is not one."""
        parse = functools.partial(parse_json_body, self.request.body,
                                  **json_limits(self.service))
        try:
            return await self.in_worker(parse)
        except ServingError as exc:
            self.send_serving_error(exc)
            return None

    async def prometheus(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST

        from ..metrics.prometheus import exposition

        try:
            body = await self.settle(
                self.in_worker(exposition, self.service.prometheus_registry), None)
        except ServingError as exc:
            return self.send_serving_error(exc)
        self.finish(body, set_content_type=CONTENT_TYPE_LATEST)

    async def stats(self) -> None:
        await self.answer(self.service.stats_report, self.settings.get(GRPC_TARGET_SETTING),
                          request_json)

    async def openapi(self) -> None:
        self.send_json(openapi_document())

    async def list_models(self) -> None:
        await self.answer(self.control.list_models)

    async def describe_model(self, model: str) -> None:
        await self.answer(self.control.describe_model, model)

    async def unload_version(self, model: str, version: str) -> None:
        await self._version_op(self.control.unload_version, model, version)

    async def load_version(self, model: str, version: str) -> None:
        await self._version_op(self.control.load_version, model, version)

    async def _version_op(self, op: Any, model: str, version: str) -> None:
        try:
            number = parse_version(version)
        except ServingError as exc:
            return self.send_serving_error(exc)
        await self.answer(op, model, number)

    async def set_label(self, model: str, label: str) -> None:
        doc = await self._json_body()
        if doc is None:
            return
        try:
            if doc.get("version") is None:
                raise invalid_argument("'version' is required")
            version = parse_version(doc["version"])
        except ServingError as exc:
            return self.send_serving_error(exc)
        await self.answer(self.control.set_label, model, label, version)

    async def remove_label(self, model: str, label: str) -> None:
        await self.answer(self.control.remove_label, model, label)

    async def canary(self, model: str) -> None:
        doc = await self._json_body()
        if doc is None:
            return
        try:
            version = _optional_version(doc)
            if "weight" not in doc:
                raise invalid_argument("'weight' is required")
        except ServingError as exc:
            return self.send_serving_error(exc)
        await self.answer(self.control.set_canary, model, doc["weight"], version)

    async def promote(self, model: str) -> None:
        doc = await self._json_body() if self.request.body.strip() else {}
        if doc is None:
            return
        try:
            version = _optional_version(doc)
        except ServingError as exc:
            return self.send_serving_error(exc)
        await self.answer(self.control.promote, model, version)

    async def rollback(self, model: str) -> None:
        await self.answer(self.control.rollback, model)

    async def set_shadow(self, model: str) -> None:
        doc = await self._json_body()
        if doc is None:
            return
        try:
            version = _optional_version(doc)
            if "fraction" not in doc:
                raise invalid_argument("'fraction' is required")
        except ServingError as exc:
            return self.send_serving_error(exc)
        await self.answer(self.service.shadow.set, model, version, doc["fraction"],
                          request_json)

    async def shadow_report(self, model: str) -> None:
        await self.answer(self.service.shadow.report, model, request_json)

    async def set_logging(self, model: str) -> None:
        doc = await self._json_body()
        if doc is None:
            return
        if "sampling_rate" not in doc:
            return self.send_serving_error(invalid_argument("'sampling_rate' is required"))
        await self.answer(self.service.set_request_logging, model, doc["sampling_rate"],
                          doc.get("filename_prefix"))

    async def logged_requests(self, model: str) -> None:
        """``?n=20`` newest logged requests, as JSON or (``format=tfrecord``) the bytes of a
        TFRecord file of their PredictionLogs; read, and encoded, on a worker."""
        try:
            n = check_count(self.get_query_argument("n", str(DEFAULT_LOGGED_REQUESTS)))
            fmt = self.get_query_argument("format", "json")
            if fmt not in ("json", "tfrecord"):
                raise invalid_argument(f"Unknown format {fmt!r} (json or tfrecord)")
        except ServingError as exc:
            return self.send_serving_error(exc)
        service = self.service

        def read() -> bytes:
            if fmt == "tfrecord":
                return service.logged_tfrecord(model, n)
            records = service.logged_requests(model, n)
            return v1.dumps({"model": model, "requests": [logged_json(r) for r in records]})

        try:
            body = await self.settle(self.in_worker(read), None)
        except ServingError as exc:
            return self.send_serving_error(exc)
        if fmt == "tfrecord":
            self.finish(body, set_content_type="application/octet-stream")
        else:
            self.send_json(body)

    async def reload_config(self) -> None:
        await self.answer(self.control.reload_config)

    async def tfserving_config(self) -> None:
        await self.answer(self.control.tfserving_config)

    async def list_jobs(self) -> None:
        await self.answer(self.service.jobs.list)

    async def start_job(self) -> None:
        doc = await self._json_body()
        if doc is None:
            return
        await self.answer(self.service.jobs.start, doc, status=201)

    async def get_job(self, job: str) -> None:
        await self.answer(self.service.jobs.get, job)

    async def cancel_job(self, job: str) -> None:
        await self.answer(self.service.jobs.cancel, job)

    async def resume_job(self, job: str) -> None:
        await self.answer(self.service.jobs.resume, job)


@web.stream_request_body
class UploadHandler(RoutedHandler):
    """``POST P/api/models/{m}/versions[?version=N][&rollout=stable|canary[&weight=W]]``:
    publish a packed version directory, and roll it out (``ControlPlane.publish_version``);
    ``POST P/api/datasets?format=npy|npz|parquet``: keep a data set for bulk jobs
    (``JobOperations.store_dataset``).

    The body is not held in memory: it streams, chunk by chunk (each written on a request
    thread), into an unnamed temporary file in the repository's file system, which the control
    plane unpacks. The login and the authorizer are checked in :meth:`prepare`, when the headers
    arrive and before any of the body is read; so is the declared size against
    ``max_upload_bytes`` (413). A body that turns out larger stops being written and is
    answered 413 too. The file disappears when the request ends, however it ends.
    """

    _spool: Any = None
    _size = 0
    _too_large = False

    async def prepare(self) -> None:  # type: ignore[override]  # as TFServingHandler.prepare
        await super().prepare()
        if self._finished or self.request.method != "POST":
            return
        if self.current_user is None:
            raise web.HTTPError(403)
        if not self.authorizer.is_authorized(self, self.current_user, "write",
                                             self.auth_resource):
            raise web.HTTPError(403, f"Not authorized to write {self.auth_resource}")
        limit = self.service.options.max_upload_bytes
        declared = self.request.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            self._answer_too_large(int(declared))
            return
        # a chunked body that passes the limit is cut off by tornado (400, connection closed)
        self.request.connection.set_max_body_size(limit)  # type: ignore[union-attr]
        # Kept open across data_received calls; closed by the handler when the request ends.
        self._spool = await asyncio.get_running_loop().run_in_executor(
            self.service.executor,
            lambda: tempfile.TemporaryFile(dir=self.service.model_root),  # noqa: SIM115
        )

    def _answer_too_large(self, size: int) -> None:
        limit = self.service.options.max_upload_bytes
        self.send_error_message(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"The request body ({size} bytes) is larger than this server accepts "
            f"({limit} bytes, TFServingApp.max_upload_bytes)")

    async def data_received(self, chunk: bytes) -> None:
        if self._spool is None or self._too_large:
            return
        self._size += len(chunk)
        if self._size > self.service.options.max_upload_bytes:
            self._too_large = True
            return
        await asyncio.get_running_loop().run_in_executor(
            self.service.executor, self._spool.write, chunk)

    async def publish(self, model: str) -> None:
        if self._too_large:
            return self._answer_too_large(self._size)
        try:
            version = self.get_query_argument("version", None)
            number = parse_version(version) if version is not None else None
            rollout = self.get_query_argument("rollout", None)
            weight = self._weight()
        except ServingError as exc:
            return self.send_serving_error(exc)
        if not self._size or self._spool is None:
            return self.send_serving_error(invalid_argument(
                "The request body must be a tar archive (gzip or not) of a version directory"))
        self._spool.seek(0)
        await self.answer(self.control.publish_version, model, self._spool, number, rollout,
                          weight, status=201)

    async def store_dataset(self) -> None:
        """``POST P/api/datasets?format=npy|npz|parquet``: keep a small data set for jobs."""
        if self._too_large:
            return self._answer_too_large(self._size)
        fmt = self.get_query_argument("format", "parquet")
        if not self._size or self._spool is None:
            return self.send_serving_error(invalid_argument(
                "The request body must be the data set: an .npz or a Parquet file"))
        self._spool.seek(0)
        await self.answer(self.service.jobs.store_dataset, self._spool, fmt, status=201)

    def _weight(self) -> float | None:
        text = self.get_query_argument("weight", None)
        if text is None:
            return None
        try:
            return float(text)
        except ValueError:
            return check_canary_weight(text)  # not a number: raises its error

    def on_finish(self) -> None:
        self._close_spool()

    def on_connection_close(self) -> None:
        self._close_spool()
        super().on_connection_close()

    def _close_spool(self) -> None:
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()
