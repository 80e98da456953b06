"""Tornado handlers: thin adapters from HTTP to the data plane and the control plane.

Every route is a jupyter_server ``APIHandler``: it needs the Jupyter login (token header,
``?token=`` or cookie with XSRF for browser POSTs) and passes jupyter_server's authorizer on
``auth_resource = "tfserving"`` with the action its row of the route table (``rest.routes``)
names. A handler class answers the methods its table rows give it (``RoutedHandler.routes``); it
takes a request admission ticket for the request's life (503 once the server stops), parses the
URL, hands decoded work to ``service.dataplane`` / ``service.control`` and writes bytes. Work
runs on the service's request threads, except small predict bodies and answers (see
``INLINE_BODY_BYTES``). Every error, authentication ones included, is answered as
``{"error": message}``, mapped from the canonical code in one place (``rest.errors``).

Hostile input meets the service's limits before any parsing: a body larger than
``max_request_bytes`` is 413, JSON nested deeper than ``max_json_depth`` or holding more than
``max_tensor_elements`` values is 400 (the ``json_codec`` parsers, given :func:`json_limits`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from jupyter_server.auth.utils import HTTP_METHOD_TO_AUTH_ACTION
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..control_plane import ControlPlane
from ..core.status import Code, ServingError
from ..core.validation import parse_version
from ..dataplane import DataPlane, ModelRef, PredictCall
from ..service import ModelService
from . import json_codec, v1
from .errors import error_body, http_status
from .request_path import header_token_user, log_request

if TYPE_CHECKING:
    from .routes import Route

R = TypeVar("R")
AUTH_RESOURCE = "tfserving"
SERVICE_SETTING = "jupyter_tfserving.service"
# The gRPC target clients on the server's machine use, while gRPC is served (``/api/stats``).
GRPC_TARGET_SETTING = "jupyter_tfserving.grpc_target"

# Predict bodies and answers at most this large are (de)serialised on the IOLoop: ~0.1 ms of
# JSON, less than handing them to a worker thread and back.
INLINE_BODY_BYTES = 16 * 1024
INLINE_ANSWER_VALUES = 1024


def json_limits(service: ModelService) -> dict[str, int]:
    """The service's JSON request limits, as the keyword arguments of the ``json_codec``
    parsers (``max_json_depth``, ``max_tensor_elements``: 400 past them)."""
    options = service.options
    return {"max_depth": options.max_json_depth, "max_values": options.max_tensor_elements}


class TFServingHandler(APIHandler):
    """Base: service access, error mapping and running work off the IOLoop."""

    auth_resource = AUTH_RESOURCE

    # APIHandler.prepare() drops JupyterHandler's _redirect_to_login keyword (jupyter_server
    # ignores the same error); tornado calls prepare() without arguments.
    async def prepare(self) -> None:  # type: ignore[override]
        """jupyter_server's login and checks, with the per-request cost of a token in the
        Authorization header cut (``request_path.header_token_user``: the identity provider
        then takes the user as authenticated, as ``get_user_token`` would have)."""
        user = header_token_user(self)
        if user is not None:
            self._jupyter_current_user = user
            self._token_authenticated = True
        await super().prepare()

    def _log(self) -> None:
        if not log_request(self):
            super()._log()

    @property
    def service(self) -> ModelService:
        return self.settings[SERVICE_SETTING]

    @property
    def dataplane(self) -> DataPlane:
        return self.service.dataplane

    @property
    def control(self) -> ControlPlane:
        return self.service.control

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

    def send_serving_error(self, exc: ServingError) -> None:
        self.send_error_message(http_status(exc.code), exc.message)

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

    async def settle(self, work: Awaitable[Any], timeout: float | None) -> Any:
        """Await ``work`` for at most ``timeout`` seconds (None: no limit). Raises ServingError:
        the work's own, DEADLINE_EXCEEDED past the timeout, INTERNAL for anything else (logged
        with its traceback, which the client never sees)."""
        try:
            return await asyncio.wait_for(work, timeout)
        except asyncio.TimeoutError:
            raise ServingError(Code.DEADLINE_EXCEEDED,
                               "Request timed out: deadline exceeded") from None
        except ServingError:
            raise
        except Exception:
            self.log.exception("jupyter_tfserving: unexpected error in %s", self.request.path)
            raise ServingError(Code.INTERNAL, "Internal error") from None


    def authorize(self, action: str) -> None:
        """403 unless jupyter_server's authorizer lets the user do ``action`` on the
        ``tfserving`` resource (what its ``@authorized`` decorator checks)."""
        if not self.current_user or not self.authorizer.is_authorized(
                self, self.current_user, action, self.auth_resource):
            raise web.HTTPError(403, log_message=(
                f"User is not authorized to {action} on resource: {self.auth_resource}."))


class RoutedHandler(TFServingHandler):
    """A path of the route table: each method the table gives it runs that row's operation
    (a coroutine method of the family named by the row) after the authorizer allowed the row's
    action, holding an admission ticket until it returns. Other methods: :meth:`unrouted`."""

    routes: ClassVar[dict[str, Route]] = {}

    def body_accepted(self) -> bool:
        """Called once the request is authorized, before its operation: False after answering
        why the body is refused (by default every body is accepted)."""
        return True

    def unrouted(self) -> None:
        """A method the table has no row for on this path: a JSON 404."""
        self.send_error_message(404, f"Not found: {self.request.method} {self.request.path}")

    async def dispatch(self, **kwargs: str) -> None:
        method = self.request.method or ""
        route = self.routes.get(method)
        self.authorize(route.action if route is not None else HTTP_METHOD_TO_AUTH_ACTION[method])
        if route is None:
            return self.unrouted()
        if not self.body_accepted():
            return None
        try:
            ticket = self.dataplane.admit()
        except ServingError as exc:
            return self.send_serving_error(exc)
        try:
            await getattr(self, route.operation)(**kwargs)
        finally:
            ticket.release()

    @web.authenticated
    async def get(self, **kwargs: str) -> None:
        await self.dispatch(**kwargs)

    @web.authenticated
    async def post(self, **kwargs: str) -> None:
        await self.dispatch(**kwargs)

    @web.authenticated
    async def put(self, **kwargs: str) -> None:
        await self.dispatch(**kwargs)

    @web.authenticated
    async def delete(self, **kwargs: str) -> None:
        await self.dispatch(**kwargs)

    async def answer(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None,
                     status: int = 200) -> None:
        """Run ``fn(*args)`` on a worker within ``timeout`` and answer its result as JSON, or
        its error."""
        try:
            data = await self.settle(self.in_worker(fn, *args), timeout)
        except ServingError as exc:
            self.send_serving_error(exc)
        else:
            self.send_json(v1.dumps(data), status)


def model_ref(model: str, version: str | None = None, label: str | None = None) -> ModelRef:
    """The model reference of a ``/models/{model}[/versions/{v} | /labels/{l}]`` URL."""
    return ModelRef(model, parse_version(version) if version is not None else None, label)


class V1Handler(RoutedHandler):
    """``P/v1/...``: TF Serving's REST API. A method the table has no row for on a v1 path is
    TF Serving's ``400 {"error": "Malformed request: METHOD PATH"}``."""

    def unrouted(self) -> None:
        if self.body_within(self.service.options.max_request_bytes, "max_request_bytes"):
            self.send_error_message(400, f"Malformed request: {self.request.method} "
                                         f"{self.request.path}")

    @property
    def timeout(self) -> float | None:
        return self.service.options.request_timeout_seconds

    async def list_models(self) -> None:
        await self.answer(lambda: v1.list_models_json(self.dataplane.list_models()),
                          timeout=self.timeout)

    async def model_status(self, **path: str) -> None:
        try:
            ref = model_ref(**path)
        except ServingError as exc:
            return self.send_serving_error(exc)
        await self.answer(lambda: v1.status_json(self.dataplane.model_status(ref)),
                          timeout=self.timeout)

    async def model_metadata(self, **path: str) -> None:
        try:
            ref = model_ref(**path)
        except ServingError as exc:
            return self.send_serving_error(exc)
        await self.answer(lambda: v1.metadata_json(ref, *self.dataplane.model_metadata(ref)),
                          timeout=self.timeout)

    async def predict(self, **path: str) -> None:
        await self._run("predict", path, self._predict)

    async def classify(self, **path: str) -> None:
        await self._run("classify", path, self._examples(self.dataplane.classify,
                                                          json_codec.encode_classify_response))

    async def regress(self, **path: str) -> None:
        await self._run("regress", path, self._examples(self.dataplane.regress,
                                                         json_codec.encode_regress_response))

    async def _run(self, api: str, path: dict[str, str],
                   run: Callable[[ModelRef, bytes], Awaitable[v1.Answer]]) -> None:
        """A POST verb: body limit, URL, deadline, answer, and the request's statistics."""
        if not self.body_within(self.service.options.max_request_bytes, "max_request_bytes"):
            return
        started = time.perf_counter()
        code, version = Code.OK, None
        try:
            ref = model_ref(**path)
        except ServingError as exc:
            return self.send_serving_error(exc)
        try:
            answer = await self.settle(run(ref, self.request.body), self.timeout)
        except ServingError as exc:
            code, version = exc.code, exc.version
            self.send_serving_error(exc)
        else:
            version = answer.version
            self.set_header("X-Model-Version", str(answer.version))
            self.send_json(answer.body)
        self.dataplane.record_request(ref.name, version, api, code,
                                      time.perf_counter() - started, "REST")

    def _begin_predict(self, ref: ModelRef, body: bytes) -> tuple[PredictCall, bool]:
        request = json_codec.parse_predict_request(body, **json_limits(self.service))
        call = self.dataplane.begin_predict(
            ref, request.signature_name,
            lambda signature: json_codec.decode_inputs(request, signature))
        return call, request.row_format

    async def _predict(self, ref: ModelRef, body: bytes) -> v1.Answer:
        """Decode (within the JSON limits), wait for the (batched) run without holding a
        thread, encode. Decoding and encoding run on a worker, except for small bodies and
        answers (under ``INLINE_BODY_BYTES`` / ``INLINE_ANSWER_VALUES``), whose JSON takes less
        time than two thread hand-offs would. If the deadline cancels this coroutine, the
        version's handle is still released: by the run future's callback, or here once
        decoding returns."""
        if len(body) <= INLINE_BODY_BYTES:
            call, row_format = self._begin_predict(ref, body)
        else:
            begun = self.service.executor.submit(self._begin_predict, ref, body)
            try:
                call, row_format = await asyncio.wrap_future(begun)
            except asyncio.CancelledError:
                begun.add_done_callback(_release_begun)
                raise
        outputs = await asyncio.wrap_future(self.dataplane.submit_predict(call))
        if sum(a.size for a in outputs.values()) <= INLINE_ANSWER_VALUES:
            return v1.predict_answer(call.version, outputs, row_format)
        return await self.in_worker(v1.predict_answer, call.version, outputs, row_format)

    def _examples(self, run: Callable[..., tuple[int, R]], encode: Callable[[R], bytes]
                  ) -> Callable[[ModelRef, bytes], Awaitable[v1.Answer]]:
        limits = json_limits(self.service)

        def work(ref: ModelRef, body: bytes) -> v1.Answer:
            signature_name, batch = json_codec.parse_examples_request(body, **limits)
            version, result = run(ref, signature_name, batch)
            return v1.answer(version, lambda: encode(result))

        return lambda ref, body: self.in_worker(work, ref, body)


def _release_begun(begun: Any) -> None:
    """The request gave up while its predict was being decoded: release the handle it took."""
    if not begun.cancelled() and begun.exception() is None:
        begun.result()[0].handle.release()


class FallbackHandler(TFServingHandler):
    """Paths outside the route table, every method (after the login)."""

    def unrouted(self) -> None:
        raise NotImplementedError

    @web.authenticated
    async def get(self, rest: str = "") -> None:
        self.authorize(HTTP_METHOD_TO_AUTH_ACTION[self.request.method or ""])
        self.unrouted()

    post = put = delete = get


class MalformedHandler(FallbackHandler):
    """Anything else under ``P/v1/``: TF Serving's 400 "Malformed request"."""

    unrouted = V1Handler.unrouted


class NotFoundHandler(FallbackHandler):
    """Everything else under the prefix: a JSON 404 rather than an HTML page."""

    def unrouted(self) -> None:
        self.send_error_message(404, f"Not found: {self.request.path}")

