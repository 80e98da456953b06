"""TF Serving's gRPC services on the data plane: thin, like the REST handlers.

:class:`PredictionServiceServicer` (Predict with ``output_filter``, Classify, Regress,
MultiInference, GetModelMetadata) and :class:`ModelServiceServicer` (GetModelStatus,
HandleReloadConfigRequest) subclass ``tensorflow-serving-api``'s generated servicers and run
on the Jupyter server's asyncio loop (``grpc.aio``). Each call:

1. passes the Jupyter login and authorizer (:mod:`.auth`; ``read`` or ``write`` on
   ``tfserving``): UNAUTHENTICATED / PERMISSION_DENIED otherwise;
2. takes a request admission ticket for its life (UNAVAILABLE once the server stops);
3. runs within the client's deadline (``context.time_remaining()``; without one, the
   service's ``rest_api_timeout_in_ms``): DEADLINE_EXCEEDED past it;
4. hands decoded work to ``service.dataplane`` / ``service.control``, as REST does: predict's
   tensors are decoded, and answers encoded, on the event loop when small and on the service's
   request threads when large; classify, regress, multi-inference, status, metadata and reload
   run on the request threads;
5. answers, or aborts with the data plane's canonical code and message (cut at 1,024
   characters, :mod:`.status`); a bug is INTERNAL "Internal error", logged with its traceback.

Predict, Classify, Regress and MultiInference are counted in the metrics and per-version
statistics with ``entrypoint="GRPC"``. The server (:mod:`.server`) registers
:meth:`PredictionServiceServicer.method_handlers` / :meth:`ModelServiceServicer.method_handlers`,
which take and return the raw message bytes so that large messages are parsed and serialised
off the loop too; the generated ``add_*Servicer_to_server`` functions work as well.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]
import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from ..core.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD
from ..core.status import Code, ServingError, SignatureNotFound, invalid_argument, unimplemented
from ..dataplane import ModelRef, PredictCall
from ..service import ModelService
from . import codec, protos
from .auth import READ, WRITE, GrpcAuth
from .status import grpc_code, grpc_message, predict_error

log = logging.getLogger(__name__)

_p = protos.load()
# The generated servicer classes (untyped, as all of tensorflow-serving-api).
_PredictionServiceBase: Any = _p.prediction_service_pb2_grpc.PredictionServiceServicer
_ModelServiceBase: Any = _p.model_service_pb2_grpc.ModelServiceServicer

T = TypeVar("T")

# Messages at most this large are parsed and serialised on the event loop (a few microseconds
# of protobuf), larger ones on a request thread; answers of at most INLINE_ANSWER_VALUES
# elements are encoded on the loop. As the REST handlers' thresholds.
INLINE_MESSAGE_BYTES = 16 * 1024
INLINE_ANSWER_VALUES = 1024

ENTRYPOINT = "GRPC"
# asyncio.timeout (Python 3.11+) bounds an await without wait_for's extra task per call.
_timeout_context: Any = getattr(asyncio, "timeout", None)
# The size of the request message being served, set by the raw-bytes method handlers.
_message_size: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "jupyter_tfserving_grpc_message_size", default=None)
DEADLINE_MESSAGE = "Request timed out: deadline exceeded"


@dataclass(frozen=True)
class GrpcOptions:
    """What the servicers need beyond the service: whether answers carry tensors in
    ``tensor_content`` (TF Serving's ``enable_serialization_as_tensor_content``)."""

    tensor_content: bool = False


@dataclass
class Answer:
    """A servicer's result: the response, the version that answered (for the statistics),
    and whether the response is large (serialised off the loop)."""

    message: Any
    version: int | None = None
    large: bool = False


def model_ref(request: Any) -> ModelRef:
    """The model a request's ``model_spec`` names (INVALID_ARGUMENT "Missing ModelSpec"
    without one, as TF Serving)."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    spec = request.model_spec
    choice = spec.WhichOneof("version_choice")
    return ModelRef(spec.name,
                    spec.version.value if choice == "version" else None,
                    spec.version_label if choice == "version_label" else None)


class _Servicer:
    """What both services share: auth, admission, deadline, errors, statistics."""

    def __init__(self, service: ModelService, auth: GrpcAuth | None,
                 options: GrpcOptions | None = None) -> None:
        self.service = service
        self.auth = auth
        self.options = options or GrpcOptions()

    @property
    def dataplane(self) -> Any:
        return self.service.dataplane

    @property
    def max_elements(self) -> int:
        return self.service.options.max_tensor_elements

    async def in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the service's request threads."""
        return await asyncio.get_running_loop().run_in_executor(self.service.executor, fn,
                                                                  *args)

    def _timeout(self, context: Any) -> float | None:
        remaining = context.time_remaining()
        if remaining is None:
            return self.service.options.request_timeout_seconds
        if remaining <= 0:
            raise ServingError(Code.DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
        return float(remaining)

    async def _settle(self, work: Awaitable[T], timeout: float | None, method: str) -> T:
        try:
            if _timeout_context is not None:  # no task per call, as wait_for makes
                async with _timeout_context(timeout):
                    return await work
            return await asyncio.wait_for(work, timeout)
        except asyncio.TimeoutError:
            raise ServingError(Code.DEADLINE_EXCEEDED, DEADLINE_MESSAGE) from None
        except ServingError:
            raise
        except Exception:
            log.exception("jupyter_tfserving: unexpected error in gRPC %s", method)
            raise ServingError(Code.INTERNAL, "Internal error") from None

    async def serve(self, context: Any, method: str, action: str, api: str | None,
                    model: Callable[[], str], work: Callable[[], Awaitable[Answer]]) -> Answer:
        """One call, steps 1-5 of the module docstring; ``api`` names it in the statistics
        (None: not counted), ``model()`` the model it addressed."""
        error: ServingError | None = None
        answer: Answer | None = None
        if self.auth is not None:
            try:
                await self.auth.check(context.invocation_metadata() or (), context.peer(),
                                      method, action)
            except ServingError as exc:
                error = exc
        if error is None:
            started = time.perf_counter()
            code, version = Code.OK, None
            try:
                ticket = self.dataplane.admit()
            except ServingError as exc:
                error = exc
            else:
                try:
                    timeout = self._timeout(context)
                    answer = await self._settle(work(), timeout, method)
                    version = answer.version
                except ServingError as exc:
                    error = exc
                    code, version = exc.code, exc.version
                except asyncio.CancelledError:
                    code = Code.CANCELLED
                    raise
                finally:
                    ticket.release()
                    if api is not None:
                        self.dataplane.record_request(model(), version, api, code,
                                                      time.perf_counter() - started, ENTRYPOINT)
        if error is not None:
            await context.abort(grpc_code(error.code), grpc_message(error.message))
        assert answer is not None
        return answer

    # ------------------------------------------------------------- raw-bytes method handlers

    def _handler(self, method: str, request_class: Any,
                 run: Callable[[Any, Any], Awaitable[Answer]]) -> grpc.RpcMethodHandler:
        """A unary method handler taking and returning bytes: small messages are parsed and
        serialised on the loop, large ones on a request thread."""

        async def behaviour(raw: bytes, context: Any) -> bytes:
            try:
                if len(raw) <= INLINE_MESSAGE_BYTES:
                    request = request_class.FromString(raw)
                else:
                    request = await self.in_worker(request_class.FromString, raw)
            except (DecodeError, RuntimeError, ValueError) as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, grpc_message(
                    f"Could not parse the {request_class.DESCRIPTOR.full_name}: {exc}"))
            _message_size.set(len(raw))
            answer = await run(request, context)
            if answer.large:
                return await self.in_worker(answer.message.SerializeToString)
            return bytes(answer.message.SerializeToString())

        return grpc.unary_unary_rpc_method_handler(behaviour)


def _outputs_size(outputs: dict[str, np.ndarray]) -> int:
    return sum(int(np.asarray(a).size) for a in outputs.values())


class PredictionServiceServicer(_PredictionServiceBase, _Servicer):
    """``tensorflow.serving.PredictionService``."""

    SERVICE = protos.PREDICTION_SERVICE

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "Predict": self._handler("Predict", _p.predict_pb2.PredictRequest, self.predict),
            "Classify": self._handler("Classify", _p.classification_pb2.ClassificationRequest,
                                      self.classify),
            "Regress": self._handler("Regress", _p.regression_pb2.RegressionRequest,
                                     self.regress),
            "MultiInference": self._handler(
                "MultiInference", _p.inference_pb2.MultiInferenceRequest, self.multi_inference),
            "GetModelMetadata": self._handler(
                "GetModelMetadata", _p.get_model_metadata_pb2.GetModelMetadataRequest,
                self.get_model_metadata),
        }

    # The generated servicer's methods (message in, message out).

    async def Predict(self, request: Any, context: Any) -> Any:
        return (await self.predict(request, context)).message

    async def Classify(self, request: Any, context: Any) -> Any:
        return (await self.classify(request, context)).message

    async def Regress(self, request: Any, context: Any) -> Any:
        return (await self.regress(request, context)).message

    async def MultiInference(self, request: Any, context: Any) -> Any:
        return (await self.multi_inference(request, context)).message

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:
        return (await self.get_model_metadata(request, context)).message

    # ------------------------------------------------------------- Predict

    async def predict(self, request: Any, context: Any) -> Answer:
        return await self.serve(context, "/tensorflow.serving.PredictionService/Predict", WRITE,
                                "predict", lambda: str(request.model_spec.name),
                                lambda: self._predict(request))

    def _begin_predict(self, ref: ModelRef, request: Any) -> tuple[PredictCall, list[str]]:
        aliases: list[str] = []
        output_filter = list(request.output_filter)
        max_elements = self.max_elements

        def decode(signature: Any) -> dict[str, np.ndarray]:
            aliases.extend(codec.check_output_filter(output_filter, signature))
            return codec.decode_inputs(request.inputs, signature, max_elements)

        try:
            call = self.dataplane.begin_predict(ref, request.model_spec.signature_name or None,
                                                decode)
        except ServingError as exc:
            raise predict_error(exc) from None
        return call, aliases

    async def _predict(self, request: Any) -> Answer:
        ref = model_ref(request)
        size = _message_size.get()
        if size is None:
            size = request.ByteSize()
        if size <= INLINE_MESSAGE_BYTES:
            call, aliases = self._begin_predict(ref, request)
        else:
            begun = self.service.executor.submit(self._begin_predict, ref, request)
            try:
                call, aliases = await asyncio.wrap_future(begun)
            except asyncio.CancelledError:
                begun.add_done_callback(_release_begun)
                raise
        try:
            outputs = await asyncio.wrap_future(self.dataplane.submit_predict(call))
        except ServingError as exc:
            raise predict_error(exc) from None
        version = call.version

        def encode() -> Any:
            return codec.predict_response(ref.name, version, call.signature_name, outputs,
                                          aliases, tensor_content=self.options.tensor_content)

        large = _outputs_size(outputs) > INLINE_ANSWER_VALUES
        try:
            message = await self.in_worker(encode) if large else encode()
        except ServingError as exc:
            exc.version = version
            raise
        return Answer(message, version, large)

    # ------------------------------------------------------------- Classify, Regress

    async def classify(self, request: Any, context: Any) -> Answer:
        return await self.serve(context, "/tensorflow.serving.PredictionService/Classify",
                                WRITE, "classify", lambda: str(request.model_spec.name),
                                lambda: self.in_worker(self._examples, request, CLASSIFY_METHOD))

    async def regress(self, request: Any, context: Any) -> Answer:
        return await self.serve(context, "/tensorflow.serving.PredictionService/Regress",
                                WRITE, "regress", lambda: str(request.model_spec.name),
                                lambda: self.in_worker(self._examples, request, REGRESS_METHOD))

    def _examples(self, request: Any, method: str) -> Answer:
        """Classify or regress, blocking (a request thread)."""
        ref = model_ref(request)
        signature_name = request.model_spec.signature_name
        batch = codec.input_to_batch(request.input, self.max_elements)
        run = self.dataplane.classify if method == CLASSIFY_METHOD else self.dataplane.regress
        version, outputs = run(ref, signature_name or None, batch)
        encode = codec.classify_response if method == CLASSIFY_METHOD else codec.regress_response
        try:
            message = encode(ref.name, version, signature_name, outputs, len(batch.examples))
        except ServingError as exc:
            exc.version = version
            raise
        return Answer(message, version, large=True)

    # ------------------------------------------------------------- MultiInference

    async def multi_inference(self, request: Any, context: Any) -> Answer:
        tasks = request.tasks
        return await self.serve(
            context, "/tensorflow.serving.PredictionService/MultiInference", WRITE,
            "multi_inference", lambda: str(tasks[0].model_spec.name) if tasks else "",
            lambda: self.in_worker(self._multi_inference, request))

    def _multi_inference(self, request: Any) -> Answer:
        """TF Serving's MultiInference: classify and regress tasks of one model on the same
        examples, every task on the version the first one routed to. Blocking."""
        tasks = list(request.tasks)
        if not tasks:
            raise invalid_argument("Expected at least one task")
        first = model_ref(tasks[0])
        seen: set[str] = set()
        for task in tasks:
            if model_ref(task).name != first.name:
                raise invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
            signature = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if signature in seen:
                raise invalid_argument(f"Duplicate evaluation of signature: {signature}")
            seen.add(signature)
            if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
                raise unimplemented(f"Unsupported signature method_name: {task.method_name}")
        batch = codec.input_to_batch(request.input, self.max_elements)
        response = _p.inference_pb2.MultiInferenceResponse()
        ref = first
        version: int | None = None
        for task in tasks:
            signature_name = task.model_spec.signature_name
            classify = task.method_name == CLASSIFY_METHOD
            run = self.dataplane.classify if classify else self.dataplane.regress
            try:
                version, outputs = run(ref, signature_name or None, batch)
            except SignatureNotFound as exc:
                error = invalid_argument("Requested signature not found in model graph: "
                                         f"{exc.signature_name}")
                error.version = exc.version
                raise error from None
            ref = ModelRef(first.name, version)
            result = response.results.add()
            codec.fill_model_spec(result.model_spec, first.name, version, signature_name)
            try:
                if classify:
                    codec.classification_result_into(result.classification_result, outputs,
                                                     len(batch.examples))
                else:
                    codec.regression_result_into(result.regression_result, outputs,
                                                 len(batch.examples))
            except ServingError as exc:
                exc.version = version
                raise
        return Answer(response, version, large=True)

    # ------------------------------------------------------------- GetModelMetadata

    async def get_model_metadata(self, request: Any, context: Any) -> Answer:
        return await self.serve(
            context, "/tensorflow.serving.PredictionService/GetModelMetadata", READ, None,
            lambda: str(request.model_spec.name),
            lambda: self.in_worker(self._metadata, request))

    def _metadata(self, request: Any) -> Answer:
        ref = model_ref(request)
        codec.check_metadata_fields(list(request.metadata_field))
        version, metadata = self.dataplane.model_metadata(ref)
        return Answer(codec.metadata_response(ref.name, version, metadata), version, large=True)


def _release_begun(begun: Future[tuple[PredictCall, list[str]]]) -> None:
    """The call gave up while its predict was being decoded: release the handle it took."""
    if not begun.cancelled() and begun.exception() is None:
        begun.result()[0].handle.release()


class ModelServiceServicer(_ModelServiceBase, _Servicer):
    """``tensorflow.serving.ModelService``."""

    SERVICE = protos.MODEL_SERVICE

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "GetModelStatus": self._handler(
                "GetModelStatus", _p.get_model_status_pb2.GetModelStatusRequest,
                self.get_model_status),
            "HandleReloadConfigRequest": self._handler(
                "HandleReloadConfigRequest", _p.model_management_pb2.ReloadConfigRequest,
                self.handle_reload_config_request),
        }

    async def GetModelStatus(self, request: Any, context: Any) -> Any:
        return (await self.get_model_status(request, context)).message

    async def HandleReloadConfigRequest(self, request: Any, context: Any) -> Any:
        return (await self.handle_reload_config_request(request, context)).message

    async def get_model_status(self, request: Any, context: Any) -> Answer:
        return await self.serve(
            context, "/tensorflow.serving.ModelService/GetModelStatus", READ, None,
            lambda: str(request.model_spec.name), lambda: self.in_worker(self._status, request))

    def _status(self, request: Any) -> Answer:
        statuses = self.dataplane.model_status(model_ref(request))
        return Answer(codec.status_response(statuses))

    async def handle_reload_config_request(self, request: Any, context: Any) -> Answer:
        return await self.serve(
            context, "/tensorflow.serving.ModelService/HandleReloadConfigRequest", WRITE, None,
            lambda: "", lambda: self.in_worker(self._reload, request, self._timeout(context)))

    def _reload(self, request: Any, timeout: float | None) -> Answer:
        """An empty ``config``: re-read the server's config file and rescan the repository
        (this server's ``POST P/api/config:reload``). A ``model_config_list``: serve exactly
        those models from now on (:meth:`ControlPlane.replace_model_config`: the config file
        is rewritten, and the call returns once the models have loaded, or with the error of
        one that failed). Any other config: INVALID_ARGUMENT, as TF Serving."""
        kind = request.config.WhichOneof("config")
        if kind == "model_config_list":
            text = text_format.MessageToString(request.config)
            self.service.control.replace_model_config(text, timeout)
            return Answer(_p.model_management_pb2.ReloadConfigResponse())
        if kind is not None:
            raise invalid_argument(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                "ModelConfigList is currently supported")
        result = self.service.control.reload_config()
        if result["config_error"]:
            raise invalid_argument(str(result["config_error"]))
        return Answer(_p.model_management_pb2.ReloadConfigResponse())
