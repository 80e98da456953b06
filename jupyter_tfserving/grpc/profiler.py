"""TensorFlow's profiler service on the gRPC port, as TF Serving serves it beside its own.

``tensorflow.ProfilerService`` is what TensorBoard's "Capture profile" and
``tf.profiler.experimental.client.trace(address, logdir, duration_ms)`` talk to. Its ``Profile``
call profiles this process for ``duration_ms`` with TensorFlow's own profiler
(``ProfilerSession``: the host tracer sees every TensorFlow op the served models run), then, as
TSL's ``ProfilerServiceImpl`` does, writes the collected ``XSpace`` to
``<repository_root>/<session_id>/<host_name>.xplane.pb`` and answers ``empty_trace`` (true when
nothing ran: the client then retries or gives up), with the ``XSpace`` itself when the request
asks ``emit_xspace``. ``Terminate`` ends a running ``Profile`` early; the other methods are
UNIMPLEMENTED.

TensorFlow ships no Python module for ``profiler_service.proto``, so the two requests and the
response are described here with ``descriptor_pb2`` in a private descriptor pool, with TSL's
field numbers: the fields this service reads or writes, the ``XSpace`` and ``ProfileOptions``
messages as their wire bytes (the same encoding as an embedded message); unknown fields are
kept. TensorFlow is imported on the first ``Profile`` call, off the event loop.

Auth: as every TF Serving method here (the ``write`` action on ``tfserving``: the call makes the
server write files). ``session_id`` and ``host_name`` must be plain names and
``repository_root`` an absolute path. One profile runs at a time in a process (TensorFlow's
rule): another is ABORTED.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from ..core.status import Code, ServingError
from .auth import WRITE, GrpcAuth
from .status import grpc_code, grpc_message

log = logging.getLogger(__name__)

SERVICE = "tensorflow.ProfilerService"
# Longest profile accepted, as a bound on a call that holds TensorFlow's one profiler.
MAX_DURATION_MS = 10 * 60 * 1000

_F = descriptor_pb2.FieldDescriptorProto


def _message_classes() -> dict[str, Any]:
    """ProfileRequest, ProfileResponse, TerminateRequest and TerminateResponse (TSL's
    ``profiler_service.proto``, the fields used here), and the event-bearing skeleton of
    ``XSpace`` (``xplane.proto``: planes = 1, lines = 3, events = 4; none of its strings, whose
    contents TSL does not keep to UTF-8) in a private pool."""
    file = descriptor_pb2.FileDescriptorProto(
        name="jupyter_tfserving/profiler_service.proto", package="tensorflow", syntax="proto3")

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        proto = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = proto.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name

    one, many = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message("ProfileRequest",
            ("duration_ms", 1, _F.TYPE_UINT64, one, ""),
            ("max_events", 2, _F.TYPE_UINT64, one, ""),
            ("tools", 3, _F.TYPE_STRING, many, ""), ("opts", 4, _F.TYPE_BYTES, one, ""),
            ("repository_root", 5, _F.TYPE_STRING, one, ""),
            ("session_id", 6, _F.TYPE_STRING, one, ""),
            ("host_name", 7, _F.TYPE_STRING, one, ""),
            ("emit_xspace", 9, _F.TYPE_BOOL, one, ""))
    message("ProfileResponse", ("empty_trace", 7, _F.TYPE_BOOL, one, ""),
            ("xspace", 8, _F.TYPE_BYTES, one, ""))
    message("TerminateRequest", ("session_id", 1, _F.TYPE_STRING, one, ""))
    message("TerminateResponse")
    message("XEventSkeleton")
    message("XLineSkeleton",
            ("events", 4, _F.TYPE_MESSAGE, many, ".tensorflow.XEventSkeleton"))
    message("XPlaneSkeleton", ("lines", 3, _F.TYPE_MESSAGE, many, ".tensorflow.XLineSkeleton"))
    message("XSpaceSkeleton",
            ("planes", 1, _F.TYPE_MESSAGE, many, ".tensorflow.XPlaneSkeleton"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.{name}"))
            for name in ("ProfileRequest", "ProfileResponse", "TerminateRequest",
                         "TerminateResponse", "XSpaceSkeleton")}


_MESSAGES = _message_classes()
ProfileRequest = _MESSAGES["ProfileRequest"]
ProfileResponse = _MESSAGES["ProfileResponse"]
TerminateRequest = _MESSAGES["TerminateRequest"]
TerminateResponse = _MESSAGES["TerminateResponse"]
_XSpaceSkeleton = _MESSAGES["XSpaceSkeleton"]


def _plain_name(value: str, what: str) -> str:
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
        raise ServingError(Code.INVALID_ARGUMENT, f"Invalid {what}: {value!r}")
    return value


def trace_options(opts: bytes) -> dict[str, int]:
    """The ``ProfileOptions`` levels ``ProfilerSession.start`` takes ({}: TensorFlow's
    defaults, as for options of version 0)."""
    if not opts:
        return {}
    from tensorflow.tsl.profiler.protobuf import profiler_options_pb2

    options = profiler_options_pb2.ProfileOptions.FromString(opts)
    if not options.version:
        return {}
    return {"host_tracer_level": options.host_tracer_level,
            "device_tracer_level": options.device_tracer_level,
            "python_tracer_level": options.python_tracer_level}


def xspace_is_empty(xspace: bytes) -> bool:
    """Whether a serialized ``XSpace`` holds no event (TSL's ``IsEmpty``)."""
    space = _XSpaceSkeleton.FromString(xspace)
    return not any(line.events for plane in space.planes for line in plane.lines)


class ProfilerServicer:
    """``tensorflow.ProfilerService``'s Profile and Terminate (see the module docstring)."""

    def __init__(self, auth: GrpcAuth | None) -> None:
        self.auth = auth
        self._lock = threading.Lock()
        self._active = False
        self._stops: dict[str, asyncio.Event] = {}

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {"Profile": self._handler("Profile", ProfileRequest, self.profile),
                "Terminate": self._handler("Terminate", TerminateRequest, self.terminate)}

    def _handler(self, method: str, request_class: Any, run: Any) -> grpc.RpcMethodHandler:
        full_name = f"/{SERVICE}/{method}"

        async def behaviour(raw: bytes, context: Any) -> bytes:
            try:
                if self.auth is not None:
                    await self.auth.check(context.invocation_metadata() or (), context.peer(),
                                          full_name, WRITE)
                try:
                    request = request_class.FromString(raw)
                except DecodeError as exc:
                    raise ServingError(Code.INVALID_ARGUMENT, f"Could not parse the "
                                       f"{request_class.DESCRIPTOR.full_name}: {exc}") from None
                response = await run(request, context)
            except ServingError as exc:
                await context.abort(grpc_code(exc.code), grpc_message(exc.message))
            return bytes(response.SerializeToString())

        return grpc.unary_unary_rpc_method_handler(behaviour)

    async def profile(self, request: Any, context: Any) -> Any:
        if request.duration_ms > MAX_DURATION_MS:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"duration_ms must be at most {MAX_DURATION_MS}")
        if not os.path.isabs(request.repository_root):
            raise ServingError(Code.INVALID_ARGUMENT,
                               "repository_root must be an absolute path")
        session_id = _plain_name(request.session_id, "session_id")
        file_name = _plain_name(request.host_name, "host_name").replace(":", "_") + ".xplane.pb"
        with self._lock:
            if self._active:
                raise ServingError(Code.ABORTED, "Another profiling session is active")
            self._active = True
        stop = self._stops.setdefault(session_id, asyncio.Event())
        loop = asyncio.get_running_loop()
        scratch = tempfile.mkdtemp(prefix="tfserving-profile-")
        try:
            session = await loop.run_in_executor(None, _start, request.opts, scratch)
            try:
                await asyncio.wait_for(stop.wait(), request.duration_ms / 1000)
            except asyncio.TimeoutError:
                pass
            finally:
                xspace = await loop.run_in_executor(None, _collect, session, scratch)
            out_dir = os.path.join(request.repository_root, session_id)
            empty = await loop.run_in_executor(None, _save, xspace, out_dir, file_name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            self._stops.pop(session_id, None)
            with self._lock:
                self._active = False
        log.info("jupyter_tfserving: profiled %d ms into %s", request.duration_ms,
                 os.path.join(out_dir, file_name))
        return ProfileResponse(empty_trace=empty,
                               xspace=xspace if request.emit_xspace else b"")

    async def terminate(self, request: Any, context: Any) -> Any:
        stop = self._stops.get(request.session_id)
        if stop is not None:
            stop.set()
        return TerminateResponse()


def _start(opts: bytes, scratch: str) -> Any:
    """A started TensorFlow ``ProfilerSession`` with the request's ``ProfileOptions``, that
    will write into directory ``scratch`` (ABORTED if another one runs)."""
    from tensorflow.python.framework import errors
    from tensorflow.python.profiler.internal import _pywrap_profiler

    session = _pywrap_profiler.ProfilerSession()
    try:
        session.start(scratch, trace_options(opts))
    except errors.AlreadyExistsError:
        raise ServingError(Code.ABORTED, "Another profiling session is active") from None
    return session


def _collect(session: Any, scratch: str) -> bytes:
    """Stop ``session`` and return its serialized ``XSpace``. (The session's ``stop()`` gives
    trace events, not the XSpace; ``export_to_tb`` writes the XSpace under ``scratch``.)"""
    session.export_to_tb()
    for directory, _, files in os.walk(scratch):
        for name in files:
            if name.endswith(".xplane.pb"):
                with open(os.path.join(directory, name), "rb") as f:
                    return f.read()
    raise ServingError(Code.INTERNAL, "The profiler wrote no profile")


def _save(xspace: bytes, out_dir: str, file_name: str) -> bool:
    """Write the ``XSpace`` as TSL does; whether it is empty."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, file_name), "wb") as f:
            f.write(xspace)
    except OSError as exc:
        raise ServingError(Code.FAILED_PRECONDITION,
                           f"Cannot write the profile to {out_dir}: {exc}") from None
    return xspace_is_empty(xspace)
