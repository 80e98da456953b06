"""``P/api/...``: the management API (thin tornado adapters over ``jupyter_tfserving.admin``).

| method | path | operation |
|---|---|---|
| GET | ``P/api/models`` | every model: versions, states, labels, handle counts, traffic split |
| GET | ``P/api/models/{m}`` | one model |
| POST | ``P/api/models/{m}/versions[?version=N]`` | publish a packed version directory (tar/tgz body, streamed to disk: ``UploadHandler``) |
| POST | ``P/api/models/{m}/versions/{v}:unload`` / ``:load`` | stop / resume serving a version |
| PUT | ``P/api/models/{m}/labels/{l}`` | ``{"version": N}``: set or move a label |
| DELETE | ``P/api/models/{m}/labels/{l}`` | remove a label |
| POST | ``P/api/models/{m}:canary`` | ``{"weight": w, "version"?: N}`` |
| POST | ``P/api/models/{m}:promote`` / ``:rollback`` | |
| POST | ``P/api/config:reload`` | re-read models.config and scan the repository now |
| GET | ``P/api/config/tfserving`` | a config for ``tensorflow_model_server`` serving what is served now |
| GET | ``P/api/openapi.json`` | the OpenAPI document of every route |

Same login, authorizer (``tfserving`` resource) and ``{"error": ...}`` bodies as the v1 routes
(``handlers.TFServingHandler``). Operations run on the service's worker threads without the
request deadline (an upload may take a while to unpack). A body larger than
``max_request_bytes`` (an upload: ``max_upload_bytes``) is answered 413 before anything else;
JSON bodies are parsed on a worker within ``max_json_depth`` and ``max_tensor_elements``.
"""

from __future__ import annotations

import asyncio
import functools
import re
import tempfile
from http import HTTPStatus
from importlib import resources
from typing import Any, Callable

from jupyter_server.auth.decorator import authorized
from tornado import web

from .. import admin
from ..core.status import ServingError, invalid_argument
from . import v1
from .handlers import TFServingHandler
from .json_codec import parse_json_body

_NAME = r"(?P<name>[^/:]+)"
_GET = re.compile(rf"^models(?:/{_NAME})?/?$")
_UPLOAD = re.compile(rf"^models/{_NAME}/versions/?$")
_VERSION_VERB = re.compile(
    rf"^models/{_NAME}/versions/(?P<version>[0-9]{{1,19}}):(?P<verb>unload|load)$")
_MODEL_VERB = re.compile(rf"^models/{_NAME}:(?P<verb>canary|promote|rollback)$")
_LABEL = re.compile(rf"^models/{_NAME}/labels/(?P<label>[^/:]+)$")

_VERSION_VERBS: dict[str, Callable[..., dict[str, Any]]] = {
    "unload": admin.unload_version,
    "load": admin.load_version,
}


def _is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes other scripts' digits ("٣"), which int()
    would read as another version's number."""
    return text.isascii() and text.isdigit()


def _int_field(doc: dict[str, Any], key: str, required: bool) -> int | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if isinstance(value, str) and _is_decimal(value):  # TF Serving writes versions as strings
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_argument(f"'{key}' must be a version number, got {value!r}")
    return value


def openapi_document() -> bytes:
    """The packaged OpenAPI document (``jupyter_tfserving/rest/openapi.json``)."""
    return resources.files(__package__).joinpath("openapi.json").read_bytes()


class AdminHandler(TFServingHandler):
    """Base of the management handlers: runs an ``admin`` operation and answers it."""

    async def run_admin(self, fn: Callable[..., Any], *args: Any, status: int = 200) -> None:
        """Run ``fn(service, *args)`` on a worker, with no deadline (an upload may take a while
        to unpack), and answer its JSON, or its error."""
        try:
            data = await self.settle(self.in_worker(fn, self.service, *args), None)
        except ServingError as exc:
            self.send_serving_error(exc)
        else:
            self.send_json(v1.dumps(data), status)


class ManagementHandler(AdminHandler):
    """Every ``P/api/models...`` and ``P/api/config:reload`` route."""

    def _not_a_route(self) -> None:
        self.send_error_message(404, f"Not found: {self.request.method} {self.request.path}")

    async def _json_body(self) -> dict[str, Any] | None:
        """The body as a JSON object, parsed on a worker within the service's limits; or None
        after answering why it is not one."""
        parse = functools.partial(parse_json_body, self.request.body,
                                  **v1.json_limits(self.service))
        try:
            return await self.in_worker(parse)
        except ServingError as exc:
            self.send_serving_error(exc)
            return None

    def _body_within_request_limit(self) -> bool:
        return self.body_within(self.service.options.max_request_bytes, "max_request_bytes")

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        if path == "config/tfserving":
            return await self.run_admin(admin.tfserving_config)
        match = _GET.match(path)
        if match is None:
            return self._not_a_route()
        if match.group("name") is None:
            await self.run_admin(admin.list_models)
        else:
            await self.run_admin(admin.describe_model, match.group("name"))

    @web.authenticated
    @authorized
    async def post(self, path: str) -> None:
        if not self._body_within_request_limit():
            return None
        if path == "config:reload":
            return await self.run_admin(admin.reload_config)
        if match := _VERSION_VERB.match(path):
            return await self.run_admin(_VERSION_VERBS[match.group("verb")], match.group("name"),
                                        int(match.group("version")))
        if match := _MODEL_VERB.match(path):
            verb, name = match.group("verb"), match.group("name")
            if verb == "canary":
                doc = await self._json_body()
                if doc is None:
                    return None
                try:
                    version = _int_field(doc, "version", required=False)
                except ServingError as exc:
                    return self.send_serving_error(exc)
                if "weight" not in doc:
                    return self.send_serving_error(invalid_argument("'weight' is required"))
                return await self.run_admin(admin.set_canary, name, doc["weight"], version)
            return await self.run_admin(admin.promote if verb == "promote" else admin.rollback,
                                        name)
        return self._not_a_route()

    @web.authenticated
    @authorized
    async def put(self, path: str) -> None:
        if not self._body_within_request_limit():
            return None
        match = _LABEL.match(path)
        if match is None:
            return self._not_a_route()
        doc = await self._json_body()
        if doc is None:
            return None
        try:
            version = _int_field(doc, "version", required=True)
        except ServingError as exc:
            return self.send_serving_error(exc)
        await self.run_admin(admin.set_label, match.group("name"), match.group("label"), version)

    @web.authenticated
    @authorized
    async def delete(self, path: str) -> None:
        if not self._body_within_request_limit():
            return None
        match = _LABEL.match(path)
        if match is None:
            return self._not_a_route()
        await self.run_admin(admin.remove_label, match.group("name"), match.group("label"))


@web.stream_request_body
class UploadHandler(AdminHandler):
    """``POST P/api/models/{m}/versions[?version=N]``: publish a packed version directory.

    The body is not held in memory: it streams, chunk by chunk (each written on a request
    thread), into an unnamed temporary file in the repository's file system, which
    ``admin.publish_version`` unpacks. The login and the authorizer are checked in
    :meth:`prepare`, when the headers arrive and before any of the body is read; so is the
    declared size against ``max_upload_bytes`` (413). A body that turns out larger stops being
    written and is answered 413 too. The file disappears when the request ends, however it ends.
    Other methods on this path are 405, with TF Serving's error body.
    """

    _spool: Any = None
    _size = 0
    _too_large = False

    async def prepare(self) -> None:
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
        self.request.connection.set_max_body_size(limit)
        self._spool = await asyncio.get_running_loop().run_in_executor(
            self.service.executor, lambda: tempfile.TemporaryFile(dir=self.service.model_root))

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

    @web.authenticated
    @authorized
    async def post(self, path: str) -> None:
        name = path
        if self._too_large:
            return self._answer_too_large(self._size)
        version_arg = self.get_query_argument("version", None)
        version = None
        if version_arg is not None:
            if not _is_decimal(version_arg) or len(version_arg) > 19:
                return self.send_serving_error(invalid_argument(
                    f"Invalid version {version_arg!r}: an integer >= 0 is required"))
            version = int(version_arg)
        if not self._size or self._spool is None:
            return self.send_serving_error(invalid_argument(
                "The request body must be a tar archive (gzip or not) of a version directory"))
        self._spool.seek(0)
        await self.run_admin(admin.publish_version, name, self._spool, version, status=201)

    def on_finish(self) -> None:
        self._close_spool()

    def on_connection_close(self) -> None:
        self._close_spool()
        super().on_connection_close()

    def _close_spool(self) -> None:
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()


class OpenAPIHandler(TFServingHandler):
    """``P/api/openapi.json``: the OpenAPI 3.1 document of every route of the extension."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send_json(openapi_document())
