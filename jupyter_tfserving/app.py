"""``TFServingApp``: the Jupyter server extension, and ``jupyter tfserving`` standalone.

Config lives here as traitlets and becomes plain ``ServiceOptions`` for the data plane. The
extension builds one :class:`~jupyter_tfserving.service.ModelService` when the server loads it,
starts polling the repository once the server's event loop runs, and stops it (letting in-flight
requests finish) when the server shuts down. Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import TYPE_CHECKING, Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Bool, Dict, Float, Int, List, TraitError, Unicode, Union, default, validate

from .batching import BatchingParameters, read_batching_parameters_file
from .core import defaults
from .core.manager import ManagerOptions
from .rest.handlers import GRPC_TARGET_SETTING, SERVICE_SETTING
from .rest.request_path import drop_unwritten_debug
from .rest.routes import api_handlers
from .service import ModelService, ServiceOptions, load_signing_key
from .traffic import request_log, shadow

if TYPE_CHECKING:  # pragma: no cover
    from .grpc.server import GrpcServer

# Set in the server's environment (so kernels it starts inherit them) while the extension runs:
# where the REST API is and the token that opens it. The kernel-side client reads them.
ENV_URL = "JUPYTER_TFSERVING_URL"
ENV_TOKEN = "JUPYTER_TFSERVING_TOKEN"
# Where the gRPC services are (``host:port`` or ``unix:path``), when they run; with TLS,
# ENV_GRPC_ROOT_CERTS names the server's certificate file (for clients' channel credentials).
ENV_GRPC_TARGET = "JUPYTER_TFSERVING_GRPC_TARGET"
ENV_GRPC_ROOT_CERTS = "JUPYTER_TFSERVING_GRPC_ROOT_CERTS"
# ``<jupyter runtime dir>/tfserving-grpc-<pid>.json``: the gRPC target of the server with that
# pid (beside its ``jpserver-<pid>.json``), for kernels that did not inherit the environment.
GRPC_RUNTIME_FILE = "tfserving-grpc-{pid}.json"


class TFServingApp(ExtensionApp):
    """TensorFlow Serving's model manager and REST API inside the Jupyter server."""

    name = "jupyter_tfserving"
    description = "Serve TensorFlow models with TF Serving's REST API from the Jupyter server."
    load_other_extensions = True

    model_root = Unicode(
        config=True,
        help="The model repository, in TF Serving's layout: <model_root>/<name>/<version>/. "
        "Created if missing. Default: <jupyter data dir>/tfserving/models.",
    )
    model_config_file = Unicode(
        "",
        config=True,
        help="A ModelServerConfig text proto (TF Serving's --model_config_file). Default: "
        "<model_root>/models.config when that file exists; otherwise every directory of "
        "model_root is served with the latest(1) version policy.",
    )
    file_system_poll_wait_seconds = Float(
        defaults.FILE_SYSTEM_POLL_WAIT_SECONDS,
        config=True,
        help="Seconds between scans of the repository for new or removed versions "
        "(TF Serving's --file_system_poll_wait_seconds). 0 scans once at start.",
    )
    model_config_file_poll_wait_seconds = Float(
        defaults.MODEL_CONFIG_FILE_POLL_WAIT_SECONDS,
        config=True,
        help="Seconds between checks of the config file for changes "
        "(TF Serving's --model_config_file_poll_wait_seconds, whose default 0 means read once; "
        "here the default re-reads it, because notebooks edit it). 0 reads it once.",
    )
    url_prefix = Unicode(
        defaults.URL_PREFIX,
        config=True,
        help="Where the REST API is mounted, under the server's base_url: "
        "{base_url}{url_prefix}/v1/models/...",
    )
    allow_version_labels_for_unavailable_models = Bool(
        False,
        config=True,
        help="Allow a version label to point at a version that is not AVAILABLE "
        "(TF Serving's flag of the same name).",
    )
    max_num_load_retries = Int(
        defaults.MAX_NUM_LOAD_RETRIES,
        config=True,
        help="How many times a failed load is retried before the version goes to END with "
        "its error (TF Serving's --max_num_load_retries).",
    )
    load_retry_interval_seconds = Float(
        defaults.LOAD_RETRY_INTERVAL_SECONDS,
        config=True,
        help="Seconds between load retries (TF Serving's --load_retry_interval_micros, "
        "whose default is one minute; shorter here so a broken version shows its error soon).",
    )
    rest_api_timeout_in_ms = Int(
        defaults.REST_API_TIMEOUT_IN_MS,
        config=True,
        help="Deadline of one REST request in milliseconds (TF Serving's "
        "--rest_api_timeout_in_ms); a request past it answers 504. 0 means no deadline.",
    )
    num_load_threads = Int(
        defaults.NUM_LOAD_THREADS, config=True, help="Threads that load and unload models."
    )
    num_request_threads = Int(
        defaults.NUM_REQUEST_THREADS,
        config=True,
        help="Threads that decode requests, run models and encode answers, off the IOLoop.",
    )

    enable_batching = Bool(
        True,
        config=True,
        help="Group concurrent predict requests to the same model version and signature into "
        "batches (TF Serving's --enable_batching; on by default here, with "
        "batch_timeout_micros=0: no added latency when idle, large batches under load). "
        "Signatures without a batch dimension always run unbatched.",
    )
    batching_parameters_file = Unicode(
        "",
        config=True,
        help="A BatchingParameters text proto (TF Serving's --batching_parameters_file). When "
        "set, it replaces the individual batching traits below, except batch_timeout_micros="
        "'auto' and batch_latency_target_ms, which its format cannot say: they apply over it.",
    )
    max_batch_size = Int(
        BatchingParameters().max_batch_size, config=True,
        help="Largest batch, in rows (TF Serving's max_batch_size).",
    )
    batch_timeout_micros = Union(
        [Int(), Unicode()], default_value=BatchingParameters().batch_timeout_micros,
        config=True,
        help="How long a batch that is not full may wait for more rows, in microseconds; 0 runs "
        "it as soon as a batch thread is free (TF Serving's batch_timeout_micros). 'auto' "
        "(ours): each queue chooses the wait from its measured run time per batch size and "
        "arrival rate, the largest batches that keep batch_latency_target_ms, 0 at low load; "
        "it applies over a batching_parameters_file's value. The wait in use is the gauge "
        ":tensorflow:serving:batching_session:batch_timeout_micros.",
    )
    batch_latency_target_ms = Float(
        BatchingParameters().batch_latency_target_ms, config=True,
        help="With batch_timeout_micros='auto': the target, in milliseconds, for a request's "
        "time in the batch scheduler (its wait plus its batch's run). Also with a "
        "batching_parameters_file.",
    )
    max_enqueued_batches = Int(
        BatchingParameters().max_enqueued_batches, config=True,
        help="Batches a queue may hold before new requests get 503 (TF Serving's "
        "max_enqueued_batches).",
    )
    num_batch_threads = Int(
        BatchingParameters().num_batch_threads, config=True,
        help="Threads that run batches, shared round-robin by all queues (TF Serving's "
        "num_batch_threads; default: the number of CPU cores).",
    )
    allowed_batch_sizes = List(
        Int(), default_value=list(BatchingParameters().allowed_batch_sizes), config=True,
        help="If set, batches are padded up to the next of these sizes (strictly increasing, "
        "the last equal to max_batch_size) and the padding is sliced off the answers.",
    )
    pad_variable_length_inputs = Bool(
        BatchingParameters().pad_variable_length_inputs, config=True,
        help="Pad inputs whose non-batch dimensions differ so they can share a batch "
        "(TF Serving's pad_variable_length_inputs).",
    )
    enable_large_batch_splitting = Bool(
        BatchingParameters().enable_large_batch_splitting, config=True,
        help="Split a request larger than max_batch_size across batches instead of refusing "
        "it (TF Serving's enable_large_batch_splitting).",
    )
    model_batching_parameters = Dict(
        per_key_traits=None, config=True,
        help='Per-model overrides of the batching parameters, by TF Serving name, e.g. '
        '{"demo": {"max_batch_size": 8, "batch_timeout_micros": 1000}} or {"demo": '
        '{"batch_timeout_micros": "auto", "batch_latency_target_ms": 20}}.',
    )

    signing_key_file = Unicode(
        config=True,
        help="The secret that signs pickled (platform 'python') versions published through "
        "this server; only versions it signed are ever unpickled. Created if missing. Keep it "
        "outside model_root. Default: <jupyter data dir>/tfserving/signing_key.",
    )
    max_upload_bytes = Int(
        defaults.MAX_UPLOAD_BYTES,
        config=True,
        help="Largest published version (unpacked size of the uploaded archive), in bytes. An "
        "upload body larger than this is answered 413 before it is unpacked. Uploads larger "
        "than ServerApp.max_body_size (512 MiB by default) never reach the extension: raise "
        "that too to publish bigger versions.",
    )
    max_request_bytes = Int(
        defaults.MAX_REQUEST_BYTES,
        config=True,
        help="Largest body, in bytes, of a v1 or management JSON request (uploads of versions "
        "are limited by max_upload_bytes instead); a larger one is answered 413 before it is "
        "parsed. Tornado reads a body whole before the extension sees it, and refuses one "
        "larger than ServerApp.max_body_size (512 MiB by default) itself, with a bare 400 and "
        "a closed connection: a limit above ServerApp.max_body_size has no effect.",
    )
    max_json_depth = Int(
        defaults.MAX_JSON_DEPTH,
        config=True,
        help="Deepest nesting of arrays and objects in a JSON request body (the top-level "
        "object is level 1: {\"instances\": [[1.0]]} reaches level 3); deeper is answered 400 "
        "before the body is parsed.",
    )
    max_tensor_elements = Int(
        defaults.MAX_TENSOR_ELEMENTS,
        config=True,
        help="Most values (numbers, strings, booleans, nulls) in one JSON request body: for "
        "predict, the elements of all its input tensors; for classify and regress, the feature "
        "values. More is answered 400 before the body is parsed, so no request makes the "
        "server allocate larger arrays. A predict body of max_request_bytes holds at most "
        "about max_request_bytes / 2 values.",
    )

    enable_signature_method_name_check = Bool(
        True,
        config=True,
        help="Refuse classify and regress on a signature whose method_name is not classify / "
        "regress (TF Serving's flag of the same name, off there by default so that native TF2 "
        "signatures, all 'predict', can classify and regress; the command line follows TF "
        "Serving).",
    )

    grpc_port = Int(
        defaults.GRPC_PORT,
        config=True,
        help="TCP port of TF Serving's gRPC services (PredictionService, ModelService, plus "
        "health and reflection) on the server's IP: 0 picks a free port (logged, and given "
        "to kernels as JUPYTER_TFSERVING_GRPC_TARGET), -1 serves none. Calls need the Jupyter "
        "token in the metadata 'authorization: token <token>'. TLS when the server has a "
        "certfile and keyfile.",
    )
    grpc_socket_path = Unicode(
        "",
        config=True,
        help="Also (or, with grpc_port=-1, only) serve gRPC on this Unix socket "
        "(TF Serving's --grpc_socket_path).",
    )
    grpc_max_message_bytes = Int(
        defaults.GRPC_MAX_MESSAGE_BYTES,
        config=True,
        help="Largest gRPC message, received or sent, in bytes; larger ones fail with "
        "RESOURCE_EXHAUSTED (TF Serving allows 2 GiB).",
    )
    prefer_tflite_model = Bool(
        False,
        config=True,
        help="Serve a version directory's model.tflite, when it has one, with TensorFlow "
        "Lite's interpreter instead of its SavedModel (TF Serving's --prefer_tflite_model).",
    )
    enable_model_warmup = Bool(
        True,
        config=True,
        help="Replay a version's assets.extra/tf_serving_warmup_requests (PredictionLog "
        "records) before it becomes AVAILABLE; a failing record fails the load (TF Serving's "
        "--enable_model_warmup).",
    )
    warmup_iterations = Int(
        1,
        config=True,
        help="How many times each warmup record is replayed (TF Serving's "
        "num_request_iterations).",
    )
    request_log_max_file_bytes = Int(
        request_log.MAX_FILE_BYTES,
        config=True,
        help="Request logging (a model's logging_config in models.config): a log file is "
        "closed, and the next begun, before it would grow past this many bytes.",
    )
    request_log_max_total_bytes = Int(
        request_log.MAX_TOTAL_BYTES,
        config=True,
        help="Request logging: once a model's log files hold more than this many bytes, its "
        "oldest files are deleted.",
    )
    shadow_max_pending = Int(
        shadow.MAX_PENDING,
        config=True,
        help="Shadow traffic: copies of requests pending at once (sampled, not yet compared), "
        "over all models; past that a sampled request is dropped and counted.",
    )
    shadow_max_cpu_share = Float(
        shadow.MAX_CPU_SHARE,
        config=True,
        help="Shadow traffic: the share of one core's time the shadow's thread may spend "
        "(starting copies, comparing answers); past it, over about a second, copies are "
        "dropped and counted, so a shadow costs a busy server a bounded part of its "
        "throughput. In (0, 1].",
    )
    grpc_profiler = Bool(
        True,
        config=True,
        help="Serve TensorFlow's profiler service (tensorflow.ProfilerService, what "
        "TensorBoard's 'Capture profile' calls) on the gRPC port, as TF Serving does; behind "
        "the login like every method (it writes the profile where the caller asks).",
    )
    grpc_channel_arguments = Dict(
        value_trait=Union([Int(), Unicode()]),
        config=True,
        help="gRPC server channel arguments, e.g. {'grpc.max_connection_age_ms': 60000} "
        "(TF Serving's --grpc_channel_arguments). They are applied after this server's own "
        "(so they override the message size limits); gRPC ignores names it does not know.",
    )
    grpc_tensor_content = Bool(
        False,
        config=True,
        help="Write gRPC answers' tensors in TensorProto.tensor_content (raw bytes) instead "
        "of the typed value fields (TF Serving's enable_serialization_as_tensor_content). "
        "DT_STRING tensors always use string_val.",
    )

    @default("signing_key_file")
    def _default_signing_key_file(self) -> str:
        return defaults.default_signing_key_file()

    @default("model_root")
    def _default_model_root(self) -> str:
        return defaults.default_model_root()

    @validate("url_prefix")
    def _validate_url_prefix(self, proposal: dict[str, Any]) -> str:
        prefix = proposal["value"].strip("/")
        if not prefix:
            raise ValueError("url_prefix must not be empty")
        return prefix

    @validate("max_upload_bytes", "max_request_bytes", "max_json_depth", "max_tensor_elements",
              "request_log_max_file_bytes", "request_log_max_total_bytes",
              "shadow_max_pending")
    def _validate_positive(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"{proposal['trait'].name} must be at least 1")
        return proposal["value"]

    @validate("shadow_max_cpu_share")
    def _validate_share(self, proposal: dict[str, Any]) -> float:
        if not 0 < proposal["value"] <= 1:
            raise TraitError("shadow_max_cpu_share must be in (0, 1]")
        return proposal["value"]

    @validate("grpc_port")
    def _validate_grpc_port(self, proposal: dict[str, Any]) -> int:
        if not -1 <= proposal["value"] <= 65535:
            raise TraitError("grpc_port must be a port number, 0 (any free port) or -1 (off)")
        return proposal["value"]

    @validate("grpc_max_message_bytes")
    def _validate_grpc_max_message_bytes(self, proposal: dict[str, Any]) -> int:
        if not 1 <= proposal["value"] <= 2**31 - 1:
            raise TraitError("grpc_max_message_bytes must be between 1 and 2**31 - 1")
        return proposal["value"]

    @default("default_url")
    def _default_default_url(self) -> str:
        return f"/{self.url_prefix}/v1/models"

    service: ModelService | None = None

    def service_options(self) -> ServiceOptions:
        """The traitlets as plain options for the data plane."""
        model_root = os.path.abspath(os.path.expanduser(self.model_root))
        config_file = self.model_config_file
        if config_file:
            config_file = os.path.abspath(os.path.expanduser(config_file))
        return ServiceOptions(
            model_root=model_root,
            model_config_file=config_file or None,
            file_system_poll_wait_seconds=self.file_system_poll_wait_seconds,
            model_config_file_poll_wait_seconds=self.model_config_file_poll_wait_seconds,
            num_request_threads=self.num_request_threads,
            request_timeout_seconds=defaults.request_timeout_seconds(
                self.rest_api_timeout_in_ms),
            batching=self.batching_options(),
            signing_key=load_signing_key(os.path.abspath(os.path.expanduser(
                self.signing_key_file))),
            max_upload_bytes=self.max_upload_bytes,
            max_request_bytes=self.max_request_bytes,
            max_json_depth=self.max_json_depth,
            max_tensor_elements=self.max_tensor_elements,
            signature_method_name_check=self.enable_signature_method_name_check,
            prefer_tflite_model=self.prefer_tflite_model,
            enable_model_warmup=self.enable_model_warmup,
            warmup_iterations=max(1, self.warmup_iterations),
            request_log_max_file_bytes=self.request_log_max_file_bytes,
            request_log_max_total_bytes=self.request_log_max_total_bytes,
            shadow_max_pending=self.shadow_max_pending,
            shadow_max_cpu_share=self.shadow_max_cpu_share,
            job_roots=self.job_roots(),
            model_batching=self.model_batching_options(),
            manager=ManagerOptions(
                max_num_load_retries=self.max_num_load_retries,
                load_retry_interval_seconds=self.load_retry_interval_seconds,
                allow_version_labels_for_unavailable_models=(
                    self.allow_version_labels_for_unavailable_models
                ),
                num_load_threads=self.num_load_threads,
            ),
        )

    def job_roots(self) -> tuple[str, ...]:
        """Where bulk jobs may read and write besides the repository: the Jupyter server's
        ``root_dir`` (what its file browser shows), when there is a server."""
        root = getattr(self.serverapp, "root_dir", None) if self.serverapp is not None else None
        return (os.path.abspath(os.path.expanduser(root)),) if root else ()

    def batching_options(self) -> BatchingParameters | None:
        """The server-wide batching parameters (None when batching is off)."""
        if not self.enable_batching:
            return None
        if self.batching_parameters_file:
            from_file = read_batching_parameters_file(
                os.path.abspath(os.path.expanduser(self.batching_parameters_file)))
            # TF Serving's format cannot say "auto" nor a latency target: those apply over it
            # (a number of microseconds is the file's to say).
            timeout = self.batch_timeout_micros
            file_params = from_file.merged(
                batch_timeout_micros=timeout if isinstance(timeout, str) else None,
                batch_latency_target_ms=self.batch_latency_target_ms)
            file_params.validate()
            return file_params
        params = BatchingParameters(
            max_batch_size=self.max_batch_size,
            batch_timeout_micros=self.batch_timeout_micros,
            batch_latency_target_ms=self.batch_latency_target_ms,
            max_enqueued_batches=self.max_enqueued_batches,
            num_batch_threads=self.num_batch_threads,
            allowed_batch_sizes=tuple(self.allowed_batch_sizes),
            pad_variable_length_inputs=self.pad_variable_length_inputs,
            enable_large_batch_splitting=self.enable_large_batch_splitting,
        )
        params.validate()
        return params

    def model_batching_options(self) -> dict[str, BatchingParameters]:
        base = self.batching_options()
        if base is None:
            return {}
        out = {}
        for model, overrides in self.model_batching_parameters.items():
            params = base.merged(**dict(overrides))
            params.validate()
            out[model] = params
        return out

    @property
    def api_prefix(self) -> str:
        """The REST prefix P, relative to the server's base_url."""
        return f"/{self.url_prefix}"

    def initialize_settings(self) -> None:
        """Build the service and start polling the repository. Starting is non-blocking (one
        poller thread; loads run on worker threads), so it is safe while the server loads."""
        self.service = ModelService(self.service_options())
        self.settings[SERVICE_SETTING] = self.service
        self.service.start()
        # DEBUG records that no handler writes are not built (rest.request_path)
        drop_unwritten_debug(self.log)
        if self.serverapp is not None:
            drop_unwritten_debug(self.serverapp.log)

    def initialize_handlers(self) -> None:
        self.handlers.extend(api_handlers(self.api_prefix))

    _saved_env: dict[str, str | None] | None = None
    grpc_server: GrpcServer | None = None
    _grpc_runtime_file: str | None = None

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        assert self.service is not None
        await self._start_grpc(serverapp)
        self._publish_environment(serverapp)
        self.log.info(
            "jupyter_tfserving: REST API at %s (models from %s%s)",
            self.rest_url(serverapp),
            self.service.model_root,
            f", config {self.service.control.config_path}" if self.service.control.config_path
            else "",
        )

    def rest_url(self, serverapp: Any) -> str:
        """Where TF Serving's REST API is served (the start-up log says it)."""
        return str(url_path_join(serverapp.connection_url, self.api_prefix, "v1", "models"))

    async def _start_grpc(self, serverapp: Any) -> None:
        """Start the gRPC services on the running loop (unless grpc_port is -1 and there is
        no socket). A failure to listen is logged; REST keeps serving."""
        if self.grpc_port < 0 and not self.grpc_socket_path:
            return
        assert self.service is not None
        from .grpc import protos

        # TF Serving's messages (~0.1 s to load; a model load may be importing TensorFlow).
        await asyncio.get_running_loop().run_in_executor(None, protos.load)
        from .grpc.auth import GrpcAuth
        from .grpc.server import GrpcServer, GrpcServerOptions
        from .rest.handlers import AUTH_RESOURCE

        # TLS as the server has it (a certfile without a keyfile holds the key too).
        certfile = getattr(serverapp, "certfile", "") or ""
        keyfile = (getattr(serverapp, "keyfile", "") or certfile) if certfile else ""
        options = GrpcServerOptions(
            host=serverapp.ip,
            port=self.grpc_port,
            socket_path=self.grpc_socket_path,
            max_message_bytes=self.grpc_max_message_bytes,
            tensor_content=self.grpc_tensor_content,
            channel_arguments=tuple(self.grpc_channel_arguments.items()),
            profiler=self.grpc_profiler,
            certfile=certfile,
            keyfile=keyfile,
            client_ca=(getattr(serverapp, "client_ca", "") or "") if certfile else "",
        )
        auth = GrpcAuth(serverapp.web_app, AUTH_RESOURCE, secure=bool(options.certfile),
                        host=f"{serverapp.ip or 'localhost'}:{serverapp.port}")
        server = GrpcServer(self.service, auth, options)
        try:
            await server.start()
        except (OSError, ValueError) as exc:
            self.log.error("jupyter_tfserving: gRPC is not served: %s", exc)
            await server.stop(0)
            return
        self.grpc_server = server
        serverapp.web_app.settings[GRPC_TARGET_SETTING] = server.target
        self.log.info("jupyter_tfserving: gRPC (tensorflow.serving.PredictionService, "
                      "ModelService) at %s%s", server.target, " with TLS" if server.secure
                      else "")
        self._write_grpc_runtime_file(serverapp, server)

    def _write_grpc_runtime_file(self, serverapp: Any, server: GrpcServer) -> None:
        runtime_dir = getattr(serverapp, "runtime_dir", "")
        if not runtime_dir:
            return
        path = os.path.join(runtime_dir, GRPC_RUNTIME_FILE.format(pid=os.getpid()))
        info = {"pid": os.getpid(), "url": serverapp.connection_url,
                "grpc_target": server.target,
                "grpc_root_certs": server.options.certfile or None}
        try:
            os.makedirs(runtime_dir, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(info, f)
        except OSError as exc:
            self.log.warning("jupyter_tfserving: could not write %s: %s", path, exc)
            return
        self._grpc_runtime_file = path

    async def _stop_grpc(self) -> None:
        server, self.grpc_server = self.grpc_server, None
        if self.serverapp is not None:
            self.serverapp.web_app.settings.pop(GRPC_TARGET_SETTING, None)
        if server is not None:
            await server.stop()
        path, self._grpc_runtime_file = self._grpc_runtime_file, None
        if path:
            with contextlib.suppress(OSError):
                os.remove(path)

    def _publish_environment(self, serverapp: Any) -> None:
        """Tell kernels this server starts where the API is (DESIGN §1): environment variables
        of this process, inherited by kernels; restored when the extension stops."""
        env = {
            ENV_URL: url_path_join(serverapp.connection_url, self.api_prefix),
            ENV_TOKEN: getattr(serverapp.identity_provider, "token", "") or "",
        }
        server = self.grpc_server
        if server is not None and server.target:
            env[ENV_GRPC_TARGET] = server.target
            if server.secure:
                env[ENV_GRPC_ROOT_CERTS] = server.options.certfile
        self._saved_env = {k: os.environ.get(k) for k in (*env, ENV_GRPC_TARGET,
                                                          ENV_GRPC_ROOT_CERTS)}
        for key in (ENV_GRPC_TARGET, ENV_GRPC_ROOT_CERTS):
            os.environ.pop(key, None)
        os.environ.update(env)

    def _restore_environment(self) -> None:
        for key, value in (self._saved_env or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = None

    async def stop_extension(self) -> None:
        self._restore_environment()
        await self._stop_grpc()
        if self.service is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.service.stop)


def main(argv: list[str] | None = None) -> None:
    """``jupyter tfserving``: a Jupyter server whose default app is this extension."""
    TFServingApp.launch_instance(argv)


__all__ = ["TFServingApp", "main"]
