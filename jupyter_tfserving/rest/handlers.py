"""Tornado handlers: thin adapters from HTTP to ``rest.v1`` functions.

Every route is a jupyter_server ``APIHandler``: it needs the Jupyter login (token header,
``?token=`` or cookie with XSRF for browser POSTs) and passes jupyter_server's authorizer with
``auth_resource = "tfserving"`` (GET is ``read``, POST is ``write``). Work runs on the service's
request threads; the IOLoop only parses the URL and writes bytes. All errors, including
authentication ones, are answered as ``{"error": message}``.

Hostile input meets the service's limits before any parsing: a body larger than
``max_request_bytes`` is 413, JSON nested deeper than ``max_json_depth`` or holding more than
``max_tensor_elements`` values is 400 (the ``json_codec`` parsers, given ``v1.json_limits``).
"""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import Future
from http import HTTPStatus
from typing import Any, Awaitable, Callable

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..core.status import Code, ServingError, invalid_argument
from ..service import ModelService
from . import v1
from .errors import error_body, http_status

AUTH_RESOURCE = "tfserving"
SERVICE_SETTING = "jupyter_tfserving.service"

_MAX_VERSION = 2**63 - 1
# Predict bodies and answers at most this large are (de)serialised on the IOLoop: ~0.1 ms of
# JSON, less than handing them to a worker thread and back.
INLINE_BODY_BYTES = 16 * 1024
INLINE_ANSWER_VALUES = 1024
# [0-9], not \d: a str pattern's \d takes any script's digits, which int() reads as numbers.
_MODEL = r"models/(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
_GET_ROUTE = re.compile(rf"^{_MODEL}(?P<metadata>/metadata)?$")
_POST_ROUTE = re.compile(rf"^{_MODEL}:(?P<verb>predict|classify|regress)$")
_EXAMPLE_VERBS: dict[str, Callable[[ModelService, v1.ModelRef, bytes], v1.Answer]] = {
    "classify": v1.classify,
    "regress": v1.regress,
}


def _release_when_done(begun: "Future[v1.PredictCall]") -> None:
    """The request gave up while ``begin_predict`` ran: release the handle it took, if any."""

    def release(f: "Future[v1.PredictCall]") -> None:
        if not f.cancelled() and f.exception() is None:
            f.result().release()

    begun.add_done_callback(release)


class TFServingHandler(APIHandler):
    """Base: service access, error mapping and running work off the IOLoop."""

    auth_resource = AUTH_RESOURCE

    @property
    def service(self) -> ModelService:
        return self.settings[SERVICE_SETTING]

    async def in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the service's request threads."""
        return await asyncio.get_running_loop().run_in_executor(
            self.service.executor, fn, *args
        )

    def send_json(self, body: bytes, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    def send_error_message(self, status: int, message: str) -> None:
        self.clear_header("X-Model-Version")
        self.send_json(error_body(message), status)

    def body_within(self, limit: int, setting: str) -> bool:
        """True when the request body is at most ``limit`` bytes; else answer 413 naming the
        TFServingApp ``setting`` that sets the limit, and return False. Tornado has read the
        body already (up to ServerApp.max_body_size); this keeps it from being parsed."""
        size = len(self.request.body)
        if size <= limit:
            return True
        self.send_error_message(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"The request body ({size} bytes) is larger than this server accepts "
            f"({limit} bytes, TFServingApp.{setting})")
        return False

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors that escape a handler (authentication, authorization, XSRF, bugs) get TF
        Serving's body too; a bug is logged with its traceback, the client sees none."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError):
            message = exc.log_message or exc.reason or self._reason
        else:
            message = "Internal error"
        self.set_header("Content-Type", "application/json")
        self.finish(error_body(message))

    async def call_api(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run an API function in a worker within the request deadline. Raises ServingError:
        the function's own, DEADLINE_EXCEEDED past the deadline (the work still finishes in its
        worker and releases its handle there), INTERNAL for a bug (logged with its traceback,
        which the client never sees)."""
        return await self.within_deadline(self.in_worker(fn, *args))

    async def within_deadline(self, work: Awaitable[Any]) -> Any:
        """Await ``work`` within the request deadline, mapping failures as :meth:`call_api`."""
        return await self.settle(work, self.service.options.request_timeout_seconds)

    async def settle(self, work: Awaitable[Any], timeout: float | None) -> Any:
        """Await ``work`` for at most ``timeout`` seconds (None: no limit). Raises ServingError:
        the work's own, DEADLINE_EXCEEDED past the timeout, INTERNAL for anything else (logged
        with its traceback, which the client never sees)."""
        try:
            return await asyncio.wait_for(work, timeout)
        except asyncio.TimeoutError:
            raise ServingError(Code.DEADLINE_EXCEEDED, "Request timed out: deadline exceeded") from None
        except ServingError:
            raise
        except Exception:
            self.log.exception("jupyter_tfserving: unexpected error in %s", self.request.path)
            raise ServingError(Code.INTERNAL, "Internal error") from None

    def send_serving_error(self, exc: ServingError) -> None:
        self.send_error_message(http_status(exc.code), exc.message)

    async def run_api(self, fn: Callable[..., Any], *args: Any) -> Any:
        """:meth:`call_api`, answering its ServingError itself (and returning None then)."""
        try:
            return await self.call_api(fn, *args)
        except ServingError as exc:
            self.send_serving_error(exc)
        return None


def _model_ref(match: re.Match[str]) -> v1.ModelRef:
    version = match.group("version")
    if version is not None and int(version) > _MAX_VERSION:
        raise invalid_argument(f"Version {version} is out of range")
    return v1.ModelRef(
        name=match.group("name"),
        version=int(version) if version is not None else None,
        label=match.group("label"),
    )


class V1Handler(TFServingHandler):
    """``P/v1/...``: TF Serving's REST API, dispatched like TF Serving's HttpRestApiHandler.

    Anything under ``P/v1/`` that is not one of its routes is answered
    ``400 {"error": "Malformed request: METHOD PATH"}``, as TF Serving does.
    """

    def _malformed(self) -> None:
        self.send_error_message(400, f"Malformed request: {self.request.method} {self.request.path}")

    def _route(self, pattern: re.Pattern[str], path: str) -> tuple[re.Match[str], v1.ModelRef] | None:
        """Match ``path`` and parse its model reference, or answer the error and return None."""
        match = pattern.match(path)
        if match is None:
            self._malformed()
            return None
        try:
            return match, _model_ref(match)
        except ServingError as exc:
            self.send_serving_error(exc)
            return None

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        if path in ("models", "models/"):
            data = await self.run_api(v1.list_models, self.service)
        else:
            routed = self._route(_GET_ROUTE, path)
            if routed is None:
                return
            match, ref = routed
            fn = v1.model_metadata if match.group("metadata") else v1.model_status
            data = await self.run_api(fn, self.service, ref)
        if data is not None:
            self.send_json(v1.dumps(data))

    @web.authenticated
    @authorized
    async def post(self, path: str) -> None:
        if not self.body_within(self.service.options.max_request_bytes, "max_request_bytes"):
            return
        routed = self._route(_POST_ROUTE, path)
        if routed is None:
            return
        match, ref = routed
        verb = match.group("verb")
        started = time.perf_counter()
        status, version = Code.OK.name, None
        try:
            if verb == "predict":
                answer = await self.within_deadline(self._predict(ref))
            else:
                answer = await self.call_api(_EXAMPLE_VERBS[verb], self.service, ref,
                                             self.request.body)
        except ServingError as exc:
            status, version = exc.code.name, exc.version
            self.send_serving_error(exc)
        else:
            version = answer.version
            self.set_header("X-Model-Version", str(answer.version))
            self.send_json(answer.body)
        finally:
            self.service.stats.record_request(ref.name, version, verb, status,
                                              time.perf_counter() - started)

    async def _predict(self, ref: v1.ModelRef) -> v1.Answer:
        """Decode (within the JSON limits), wait for the (batched) run without holding a
        thread, encode. Decoding and encoding run on a worker, except for small bodies and
        answers (under ``INLINE_BODY_BYTES`` / ``INLINE_ANSWER_VALUES``), whose JSON takes less
        time than two thread hand-offs would. If the deadline cancels this coroutine, the
        version's handle is still released: by the run future's callback, or here once
        ``begin_predict`` returns."""
        service = self.service
        body = self.request.body
        if len(body) <= INLINE_BODY_BYTES:
            call = v1.begin_predict(service, ref, body)
        else:
            begun = service.executor.submit(v1.begin_predict, service, ref, body)
            try:
                call = await asyncio.wrap_future(begun)
            except asyncio.CancelledError:
                _release_when_done(begun)
                raise
        try:
            outputs = await asyncio.wrap_future(service.submit_predict(call))
        except ServingError as exc:
            exc.version = call.version
            raise
        if sum(a.size for a in outputs.values()) <= INLINE_ANSWER_VALUES:
            return v1.finish_predict(call, outputs)
        return await self.in_worker(v1.finish_predict, call, outputs)

    @web.authenticated
    @authorized
    async def put(self, path: str) -> None:
        self._malformed()

    @web.authenticated
    @authorized
    async def delete(self, path: str) -> None:
        self._malformed()


class PrometheusHandler(TFServingHandler):
    """``P/monitoring/prometheus/metrics``: Prometheus text, TF Serving's metric names."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST

        body = await self.run_api(v1.prometheus_text, self.service)
        if body is not None:
            self.finish(body, set_content_type=CONTENT_TYPE_LATEST)


class StatsHandler(TFServingHandler):
    """``P/api/stats``: per-version state, labels, in-flight handles, requests, errors and
    latency histograms, as JSON (the dashboard's source)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        data = await self.run_api(v1.stats, self.service)
        if data is not None:
            self.send_json(v1.dumps(data))


class NotFoundHandler(TFServingHandler):
    """Everything else under the prefix: a JSON 404 rather than an HTML page."""

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        self.send_error_message(404, f"Not found: {self.request.path}")

    post = put = delete = get
