"""``jupyter-tfserving-model-server``: TF Serving's ``tensorflow_model_server`` command line.

Takes ``tensorflow_model_server``'s flags, with its defaults and meanings, and runs a Jupyter
server whose only job is this extension (:class:`ModelServerApp`, a ``TFServingApp`` built from
the same code): REST at TF Serving's paths at the root of ``--rest_api_port`` (``/v1/models/...``;
Prometheus at the monitoring config's path), gRPC on ``--port`` and/or ``--grpc_socket_path``.

Flags are TF Serving's forms, ``--flag=value`` (also ``--flag value`` here), booleans bare or
``=true``/``=false``. An unknown flag is an error naming it. A token is required (``--token``,
``--token_file``, ``$JUPYTER_TOKEN``, else one is generated and printed) unless ``--no_auth``
serves anonymously, as TF Serving does. Jupyter's own APIs (kernels, contents, terminals ...)
are refused to everyone: the authorizer allows only the ``tfserving`` resource.

``python -m jupyter_tfserving.model_server --help`` lists the flags.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_server.auth.authorizer import Authorizer
from traitlets import Bool, Float, Unicode, default
from traitlets.config import Config

from . import __version__
from .app import TFServingApp
from .rest.routes import api_handlers

PROG = "jupyter-tfserving-model-server"
CONFIG_PARSE_ERROR = "Error parsing text-format tensorflow.serving.ModelServerConfig"
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


class FlagError(Exception):
    """A bad command line (unknown flag, bad value); exits 2 with the message."""


class StartupError(Exception):
    """A command line that parses but cannot be served (broken config file ...); exits 1."""


# --------------------------------------------------------------------------------------------
# Flags


@dataclass(frozen=True)
class Flag:
    name: str
    kind: type  # bool, int, float or str
    default: Any
    help: str
    effect: bool = True  # False: accepted for TF Serving's command lines, no effect here


_TRUE = {"true", "1", "t", "yes", "y"}
_FALSE = {"false", "0", "f", "no", "n"}

FLAGS: tuple[Flag, ...] = (
    Flag("port", int, 8500, "TCP port of the gRPC API (0: no TCP port)."),
    Flag("grpc_socket_path", str, "", "Also serve gRPC on this Unix socket."),
    Flag("rest_api_port", int, 0, "Port of the HTTP/REST API (0: no REST API, as TF Serving; "
         "the Jupyter server then listens on a free port and mounts no REST routes)."),
    Flag("rest_api_timeout_in_ms", int, 30000, "Deadline of a REST request (0: none)."),
    Flag("model_name", str, "default", "Name of the model, with --model_base_path."),
    Flag("model_base_path", str, "", "Path of the one model to serve (versions below it)."),
    Flag("model_config_file", str, "", "A ModelServerConfig text proto (wins over "
         "--model_name/--model_base_path)."),
    Flag("model_config_file_poll_wait_seconds", int, 0,
         "Seconds between re-reads of --model_config_file (0: read once)."),
    Flag("file_system_poll_wait_seconds", int, 1,
         "Seconds between scans of the models' base paths for versions."),
    Flag("enable_batching", bool, False, "Batch concurrent requests."),
    Flag("batching_parameters_file", str, "", "A BatchingParameters text proto."),
    Flag("monitoring_config_file", str, "", "A MonitoringConfig text proto (Prometheus)."),
    Flag("allow_version_labels_for_unavailable_models", bool, False,
         "Allow a label to point at a version that is not AVAILABLE."),
    Flag("max_num_load_retries", int, 5, "Retries of a failed load."),
    Flag("load_retry_interval_micros", int, 60_000_000, "Microseconds between load retries."),
    Flag("ssl_config_file", str, "", "An SSLConfig text proto: TLS for gRPC (and, here, REST)."),
    Flag("grpc_channel_arguments", str, "", "gRPC server channel arguments, key=value,... "
         "(integer values as integers), e.g. grpc.max_connection_age_ms=60000."),
    Flag("enable_model_warmup", bool, True, "Replay a version's assets.extra/"
         "tf_serving_warmup_requests before it becomes AVAILABLE."),
    Flag("num_request_iterations_for_warmup", int, 0, "Times each warmup record is replayed "
         "(0: the default, once)."),
    Flag("prefer_tflite_model", bool, False, "Serve a version's model.tflite, when it has "
         "one, with TensorFlow Lite instead of its SavedModel."),
    Flag("tensorflow_intra_op_parallelism", int, 0, "(accepted)", effect=False),
    Flag("tensorflow_inter_op_parallelism", int, 0, "(accepted)", effect=False),
    Flag("tensorflow_session_parallelism", int, 0, "(accepted)", effect=False),
    Flag("rest_api_num_threads", int, 0, "(accepted)", effect=False),
    Flag("rest_api_enable_cors_support", bool, False, "(accepted)", effect=False),
    Flag("platform_config_file", str, "", "(accepted)", effect=False),
    Flag("saved_model_tags", str, "serve", "(accepted)", effect=False),
    Flag("per_process_gpu_memory_fraction", float, 0.0, "(accepted)", effect=False),
    Flag("flush_filesystem_caches", bool, True, "(accepted)", effect=False),
    Flag("num_load_threads", int, 0, "(accepted)", effect=False),
    Flag("num_unload_threads", int, 0, "(accepted)", effect=False),
    Flag("enable_signature_method_name_check", bool, False,
         "Refuse classify/regress on signatures whose method_name is not classify/regress."),
    Flag("xla_cpu_compilation_enabled", bool, False, "(accepted)", effect=False),
    Flag("enable_profiler", bool, True, "(accepted)", effect=False),
    Flag("use_tflite_model", bool, False, "(accepted)", effect=False),
    # This command's own.
    Flag("batch_latency_target_ms", float, 0.0, "With --enable_batching, > 0 makes the batch "
         "wait adaptive (batch_timeout_micros 'auto', over --batching_parameters_file's): each "
         "queue waits as long as keeps a request's wait plus its batch's run under this many "
         "milliseconds, and not at all at low load. 0: the file's fixed batch_timeout_micros."),
    Flag("no_auth", bool, False, "Serve anonymously (TF Serving's behaviour): no token is "
         "asked, anyone who can reach the ports can predict. Logged."),
    Flag("token", str, "", "The token clients must send ('Authorization: token <t>')."),
    Flag("token_file", str, "", "Read the token from this file."),
    Flag("version", bool, False, "Print the version and exit."),
    Flag("help", bool, False, "Print this help and exit."),
)
_BY_NAME = {flag.name: flag for flag in FLAGS}


def _convert(flag: Flag, raw: str) -> Any:
    try:
        if flag.kind is bool:
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
        return flag.kind(raw)
    except ValueError:
        raise FlagError(f"Illegal value {raw!r} for --{flag.name} "
                        f"(expected {flag.kind.__name__})") from None


def parse_flags(argv: Sequence[str]) -> dict[str, Any]:
    """TF Serving's flags as a dict of every flag (defaults filled in). ``--f=v`` and ``--f v``
    (``-f`` too); a bool is ``--f``, ``--f=true``/``--f=false``; the last of a repeated flag
    wins. Raises :class:`FlagError` naming an unknown flag or a bad value."""
    values = {flag.name: flag.default for flag in FLAGS}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise FlagError(f"Unexpected argument {arg!r} (flags are --name=value)")
        name, eq, raw = arg.lstrip("-").partition("=")
        flag = _BY_NAME.get(name)
        if flag is None:
            raise FlagError(f"Unknown command line flag '{name}'")
        if not eq:
            if flag.kind is bool:
                values[name] = True
                continue
            if i >= len(args):
                raise FlagError(f"Missing value for --{name}")
            raw = args[i]
            i += 1
        values[name] = _convert(flag, raw)
    return values


def usage() -> str:
    lines = [f"usage: {PROG} [--flag=value ...]", "",
             "TensorFlow Serving's tensorflow_model_server flags, served by jupyter_tfserving:"]
    for flag in FLAGS:
        kind = flag.kind.__name__
        lines.append(f"  --{flag.name}={kind} (default {flag.default!r})")
        lines.append(f"      {flag.help}")
    return "\n".join(lines)


def parse_grpc_channel_arguments(text: str) -> dict[str, str | int]:
    """TF Serving's ``--grpc_channel_arguments``: ``key=value,...``; integer values as int."""
    out: dict[str, str | int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise FlagError(f"Illegal value for --grpc_channel_arguments: {item!r} "
                            "(expected key=value)")
        out[key.strip()] = int(value) if re.fullmatch(r"-?\d+", value.strip()) else value
    return out


# --------------------------------------------------------------------------------------------
# Config files


def single_model_config(model_name: str, model_base_path: str) -> str:
    """TF Serving's BuildSingleModelConfig: one model, platform tensorflow, as a text proto."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = os.path.abspath(os.path.expanduser(model_base_path))
    model.model_platform = "tensorflow"
    return str(text_format.MessageToString(config))


def check_model_config_file(path: str) -> None:
    """The config file parses as a ModelServerConfig, or :class:`StartupError` with TF
    Serving's message."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"{CONFIG_PARSE_ERROR}: cannot read {path}: {exc}") from None
    try:
        text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as exc:
        raise StartupError(f"{CONFIG_PARSE_ERROR}: {path}: {exc}") from None


def _parse_text_proto(path: str, message: Any, what: str) -> Any:
    from google.protobuf import text_format

    try:
        with open(path, encoding="utf-8") as f:
            text_format.Parse(f.read(), message)
    except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
        raise StartupError(f"Error parsing text-format {what}: {path}: {exc}") from None
    return message


def _message_classes() -> dict[str, Any]:
    """TF Serving's MonitoringConfig and SSLConfig (tensorflow_serving/config/
    monitoring_config.proto, ssl_config.proto), which tensorflow-serving-api does not ship:
    built from their field lists in a private descriptor pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="jupyter_tfserving/model_server_configs.proto", package="tensorflow.serving",
        syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, str]]) -> None:
        msg = file.message_type.add(name=name)
        for field_name, number, kind, type_name in fields:
            field = msg.field.add(name=field_name, number=number,
                                  type=kind,
                                  label=F.LABEL_OPTIONAL)
            if type_name:
                field.type_name = type_name

    message("PrometheusConfig", [("enable", 1, F.TYPE_BOOL, ""),
                                 ("path", 2, F.TYPE_STRING, "")])
    message("MonitoringConfig", [("prometheus_config", 1, F.TYPE_MESSAGE,
                                  ".tensorflow.serving.PrometheusConfig")])
    message("SSLConfig", [("server_key", 1, F.TYPE_STRING, ""),
                          ("server_cert", 2, F.TYPE_STRING, ""),
                          ("custom_ca", 3, F.TYPE_STRING, ""),
                          ("client_verify", 4, F.TYPE_BOOL, "")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("MonitoringConfig", "SSLConfig")}


def prometheus_path(monitoring_config_file: str) -> str:
    """The Prometheus path a MonitoringConfig enables, else ''."""
    if not monitoring_config_file:
        return ""
    config = _parse_text_proto(monitoring_config_file, _message_classes()["MonitoringConfig"](),
                               "tensorflow.serving.MonitoringConfig")
    if not config.prometheus_config.enable:
        return ""
    path = config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH
    return "/" + path.strip("/")


def write_ssl_files(ssl_config_file: str, workdir: str) -> dict[str, str]:
    """TF Serving's SSLConfig (PEM text inline) as the server's certfile/keyfile/client_ca."""
    config = _parse_text_proto(ssl_config_file, _message_classes()["SSLConfig"](),
                               "tensorflow.serving.SSLConfig")
    if not config.server_cert or not config.server_key:
        raise StartupError(f"{ssl_config_file}: SSLConfig needs server_cert and server_key")
    out = {}
    for field, trait in (("server_cert", "certfile"), ("server_key", "keyfile"),
                         ("custom_ca", "client_ca")):
        pem = getattr(config, field)
        if not pem or (field == "custom_ca" and not config.client_verify):
            continue
        path = os.path.join(workdir, f"{field}.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(pem)
        out[trait] = path
    return out


# --------------------------------------------------------------------------------------------
# The server


class ModelServerAuthorizer(Authorizer):
    """Only the extension's resource: Jupyter's kernels, contents, terminals ... are refused to
    every user (this server runs models, not code or file edits)."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        from .rest.handlers import AUTH_RESOURCE

        return resource == AUTH_RESOURCE


class ModelServerApp(TFServingApp):
    """``TFServingApp`` with TF Serving's URL layout: REST at the root of the port."""

    load_other_extensions = False

    rest_api = Bool(True, config=True,
                    help="Mount the REST routes (TF Serving's --rest_api_port != 0).")
    management_api = Bool(True, config=True,
                          help="Also mount the extension's whole API under {url_prefix}.")
    prometheus_path = Unicode("", config=True,
                              help="Serve Prometheus metrics at this root path ('' none).")

    initial_load_timeout_seconds = Float(
        600.0, config=True,
        help="How long start-up waits for the configured models to load before the ports open.")

    def initialize_settings(self) -> None:
        """As the extension, then wait for the initial models (each version AVAILABLE or
        failed), as TF Serving's server does before it opens its gRPC and HTTP ports: a client
        that connects as soon as the port answers finds the models there."""
        super().initialize_settings()
        assert self.service is not None
        if not self.service.wait_loaded(self.initial_load_timeout_seconds):
            self.log.warning("jupyter_tfserving: models still loading after %.0fs; serving "
                             "anyway", self.initial_load_timeout_seconds)

    def initialize_handlers(self) -> None:
        if not self.rest_api:
            return
        root = api_handlers("/")
        # TF Serving's surface at the root: /v1/... (routes, then its 400 for the rest of
        # /v1/). Not the catch-all 404, which would shadow the server's own pages.
        self.handlers.extend(rule for rule in root if rule[0].startswith("/v1/"))
        if self.prometheus_path:
            metrics = [rule for rule in root
                       if rule[0].startswith("/monitoring/prometheus/metrics")]
            assert len(metrics) == 1, metrics
            self.handlers.append((re.escape(self.prometheus_path) + "/?", metrics[0][1]))
        if self.management_api:
            super().initialize_handlers()

    def rest_url(self, serverapp: Any) -> str:
        """TF Serving's REST API is at the root here (``/v1/models``), or nowhere."""
        if not self.rest_api:
            return "nowhere (--rest_api_port=0)"
        from jupyter_server.utils import url_path_join

        return str(url_path_join(serverapp.connection_url, "v1", "models"))

    @default("default_url")
    def _model_server_default_url(self) -> str:
        return "/v1/models"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "jupyter_tfserving.model_server", "app": ModelServerApp}]


@dataclass
class Plan:
    """What a parsed command line serves: the server's config plus what main prints."""

    config: Config
    token: str | None  # None: Jupyter's (JUPYTER_TOKEN, else generated)
    no_auth: bool
    notes: list[str]


def _read_token_file(path: str) -> str:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise StartupError(f"--token_file: {exc}") from None
    if not token:
        raise StartupError(f"--token_file: {path} is empty")
    return token


def plan(flags: dict[str, Any], workdir: str) -> Plan:
    """Translate parsed flags into the server's config (files it needs go to ``workdir``).
    Raises :class:`StartupError` as TF Serving refuses to start."""
    notes: list[str] = []
    if flags["model_config_file"]:
        config_file = os.path.abspath(os.path.expanduser(flags["model_config_file"]))
        check_model_config_file(config_file)
    elif flags["model_base_path"]:
        config_file = os.path.join(workdir, "models.config")
        with open(config_file, "w", encoding="utf-8") as f:
            f.write(single_model_config(flags["model_name"], flags["model_base_path"]))
    else:
        raise StartupError("Both server_options.model_base_path and "
                           "server_options.model_config_file are empty!")
    port, socket_path = flags["port"], flags["grpc_socket_path"]
    if port < 0 or port > 65535 or not 0 <= flags["rest_api_port"] <= 65535:
        raise StartupError("--port and --rest_api_port must be port numbers")
    if port == 0 and not socket_path:
        raise StartupError("At least one of server_options.grpc_port or "
                           "server_options.grpc_socket_path must be set.")
    if flags["rest_api_port"] and flags["rest_api_port"] == port:
        raise StartupError("--rest_api_port cannot be same as --port. Please use a "
                           "different port for HTTP/REST API.")
    for flag in FLAGS:
        if not flag.effect and flags[flag.name] != flag.default:
            notes.append(f"--{flag.name} is accepted and has no effect here")

    app: dict[str, Any] = {
        "model_root": os.path.join(workdir, "models"),
        "signing_key_file": os.path.join(workdir, "signing_key"),
        "model_config_file": config_file,
        "model_config_file_poll_wait_seconds": float(
            flags["model_config_file_poll_wait_seconds"]),
        "file_system_poll_wait_seconds": float(flags["file_system_poll_wait_seconds"]),
        "enable_batching": flags["enable_batching"],
        "enable_signature_method_name_check": flags["enable_signature_method_name_check"],
        "prefer_tflite_model": flags["prefer_tflite_model"],
        "enable_model_warmup": flags["enable_model_warmup"],
        **({"warmup_iterations": flags["num_request_iterations_for_warmup"]}
           if flags["num_request_iterations_for_warmup"] > 0 else {}),
        "rest_api_timeout_in_ms": flags["rest_api_timeout_in_ms"],
        "max_num_load_retries": flags["max_num_load_retries"],
        "load_retry_interval_seconds": flags["load_retry_interval_micros"] / 1e6,
        "allow_version_labels_for_unavailable_models":
            flags["allow_version_labels_for_unavailable_models"],
        "grpc_port": port if port else -1,
        "grpc_socket_path": flags["grpc_socket_path"],
        "grpc_max_message_bytes": 2**31 - 1,  # TF Serving's SetMaxMessageSize(kint32max)
        "grpc_channel_arguments": parse_grpc_channel_arguments(flags["grpc_channel_arguments"]),
        "rest_api": bool(flags["rest_api_port"]),
        "management_api": not flags["no_auth"],
        "prometheus_path": prometheus_path(flags["monitoring_config_file"]),
    }
    if flags["enable_batching"] and flags["batching_parameters_file"]:
        app["batching_parameters_file"] = os.path.abspath(
            os.path.expanduser(flags["batching_parameters_file"]))
    target = flags["batch_latency_target_ms"]
    if not math.isfinite(target) or target < 0:
        raise StartupError(f"--batch_latency_target_ms must be a non-negative number of "
                           f"milliseconds; was {target}")
    if target > 0:
        if flags["enable_batching"]:
            app["batch_timeout_micros"] = "auto"
            app["batch_latency_target_ms"] = target
        else:
            notes.append("--batch_latency_target_ms has no effect without --enable_batching")
    server: dict[str, Any] = {
        "ip": "0.0.0.0",  # TF Serving listens on every interface
        "port": flags["rest_api_port"],
        "port_retries": 0,  # a taken port is an error, not another port
        "base_url": "/",  # TF Serving's paths at the root, whatever Jupyter config says
        "open_browser": False,
        "allow_root": True,  # TF Serving runs as root in its containers
        "authorizer_class": ModelServerAuthorizer,
        "terminals_enabled": False,
        "jpserver_extensions": {"jupyter_tfserving": False,
                                "jupyter_tfserving.model_server": True},
    }
    if flags["ssl_config_file"]:
        server.update(write_ssl_files(flags["ssl_config_file"], workdir))
    token: str | None = None
    identity: dict[str, Any] = {}
    if flags["no_auth"]:
        identity["token"] = ""
        server["disable_check_xsrf"] = True  # no token, no cookie: plain clients POST
    elif flags["token"]:
        token = identity["token"] = flags["token"]
    elif flags["token_file"]:
        token = identity["token"] = _read_token_file(flags["token_file"])
    config = Config()
    config.ModelServerApp = Config(app)
    config.ServerApp = Config(server)
    if identity:
        config.IdentityProvider = Config(identity)
    return Plan(config=config, token=token, no_auth=flags["no_auth"], notes=notes)


def _run(the_plan: Plan, echo: Callable[[str], None]) -> int:
    from jupyter_server.serverapp import ServerApp

    serverapp = ServerApp.instance(config=the_plan.config)
    serverapp.initialize(argv=[], find_extensions=False,
                         starter_extension=ModelServerApp.name)
    log = serverapp.log
    for note in the_plan.notes:
        log.warning("%s: %s", PROG, note)
    provider = serverapp.identity_provider
    if the_plan.no_auth:
        log.warning("%s: --no_auth: serving anonymously; anyone who can reach the REST and "
                    "gRPC ports can call the models (Jupyter's own APIs stay refused)", PROG)
    else:
        if getattr(provider, "token_generated", False):
            echo(f"{PROG}: generated token: {provider.token}")
        log.info("%s: a token is required: send 'Authorization: token <token>' (REST header "
                 "or gRPC metadata)", PROG)
    serverapp.start()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 after a clean stop, e.g. SIGTERM)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        flags = parse_flags(args)
    except FlagError as exc:
        print(f"{PROG}: {exc}\n\nRun '{PROG} --help' for the flags.", file=sys.stderr)
        return 2
    if flags["help"]:
        print(usage())
        return 0
    if flags["version"]:
        print(f"TensorFlow ModelServer: {__version__}-jupyter_tfserving")
        print(f"jupyter_tfserving: {__version__}")
        return 0
    workdir = tempfile.mkdtemp(prefix="tfserving-model-server-")
    atexit.register(shutil.rmtree, workdir, True)
    try:
        the_plan = plan(flags, workdir)
    except (StartupError, FlagError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    try:
        return _run(the_plan, lambda line: print(line, file=sys.stderr, flush=True))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
