"""``models.config``: TF Serving's ModelServerConfig text proto, read with its own messages.

Parsed with ``google.protobuf.text_format`` into
``tensorflow_serving.config.model_server_config_pb2.ModelServerConfig`` (which does not import
TensorFlow) and turned into plain :class:`~jupyter_tfserving.core.model_spec.ModelSpec` objects
for the core. Called on the source's poller thread.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TypeAlias

from google.protobuf import text_format
from tensorflow_serving.config import file_system_storage_path_source_pb2, model_server_config_pb2

from .core.model_spec import ModelSpec, RequestLogging
from .core.serving_state import write_atomically
from .core.status import ServingError, invalid_argument
from .core.validation import check_model_name
from .core.version_policy import All, Latest, Specific, VersionPolicy

log = logging.getLogger(__name__)


# tensorflow_serving ships no type information: for mypy these aliases are Any.
ModelServerConfig: TypeAlias = model_server_config_pb2.ModelServerConfig
_ModelConfigProto: TypeAlias = model_server_config_pb2.ModelConfig
# One model's entry of the config's model_config_list.
ModelConfigEntry: TypeAlias = _ModelConfigProto


def parse_model_config(text: str, config_dir: str) -> list[ModelSpec]:
    """Parse a ModelServerConfig text proto.

    ``base_path`` may use ``${VAR}`` environment references (TF Serving's own test configs do);
    a relative ``base_path`` is taken relative to ``config_dir``, so a repository can be moved
    as a whole. Raises INVALID_ARGUMENT with the parser's message for anything malformed,
    including ``custom_model_config`` (which only TF Serving's C++ build can interpret).
    """
    config = parse_config_proto(text)
    which = config.WhichOneof("config")
    if which is None:
        return []
    if which != "model_config_list":
        raise invalid_argument(f"Invalid model config: {which} is not supported")
    specs: list[ModelSpec] = []
    for model in config.model_config_list.config:
        name = check_model_name(model.name)
        if not model.base_path:
            raise invalid_argument(f"Invalid model config: model {name!r} has no base_path")
        base_path = os.path.expandvars(model.base_path)
        if not os.path.isabs(base_path):
            base_path = os.path.join(config_dir, base_path)
        platform = model.model_platform or "tensorflow"
        specs.append(
            ModelSpec(
                name=name,
                base_path=os.path.abspath(base_path),
                platform=platform,
                version_policy=_policy(model.model_version_policy),
                labels=dict(model.version_labels),
                logging=_logging(model),
            )
        )
    return specs


def _logging(model: _ModelConfigProto) -> RequestLogging | None:
    """The model's ``logging_config`` as read (None without one, or with a rate of 0)."""
    if not model.HasField("logging_config"):
        return None
    config = model.logging_config
    rate = config.sampling_config.sampling_rate
    if not rate > 0:
        return None
    collector = config.log_collector_config
    return RequestLogging(float(rate), collector.filename_prefix, collector.type)


def set_logging_config(entry: _ModelConfigProto, logging: RequestLogging | None) -> None:
    """Write ``logging`` as the model config ``entry``'s ``logging_config`` (None: remove
    it): ``sampling_config.sampling_rate`` and ``log_collector_config`` (``type``,
    ``filename_prefix``: left out when empty)."""
    entry.ClearField("logging_config")
    if logging is None:
        return
    config = entry.logging_config
    config.sampling_config.sampling_rate = logging.sampling_rate
    config.log_collector_config.type = logging.collector
    config.log_collector_config.filename_prefix = logging.filename_prefix


def parse_config_proto(text: str) -> ModelServerConfig:
    """The ModelServerConfig message of ``text`` (INVALID_ARGUMENT with the parser's
    message if it does not parse)."""
    config = ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise invalid_argument(f"Invalid model config: {exc}") from None
    return config


_VersionPolicyProto: TypeAlias = (
    file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy
)


def _policy(policy: _VersionPolicyProto) -> VersionPolicy:
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return All()
    if which == "specific":
        return Specific(list(policy.specific.versions))
    if which == "latest" and policy.latest.num_versions > 0:
        return Latest(policy.latest.num_versions)
    return Latest(1)


def read_model_config(path: str) -> list[ModelSpec]:
    """Read and parse the config file at ``path`` (see :func:`parse_model_config`)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid_argument(f"Cannot read model config {path}: {exc}") from None
    return parse_model_config(text, os.path.dirname(os.path.abspath(path)))


class ModelConfigFile:
    """A config file that is re-read when it changes.

    ``specs()`` is the source's spec provider: it re-reads the file when its modification time
    or size changed and at least ``poll_wait_seconds`` passed since the last read
    (``poll_wait_seconds <= 0``: read once). A file that fails to parse is logged and the last
    good configuration stays in force, as TF Serving does on a bad reload; ``error`` says why.
    """

    def __init__(self, path: str, poll_wait_seconds: float = 1.0) -> None:
        self.path = path
        self.poll_wait_seconds = poll_wait_seconds
        self.error: str | None = None
        self._stamp: tuple[float, int] | None = None
        self._specs: list[ModelSpec] = []
        self._loaded = False
        self._checked_at = 0.0

    def specs(self) -> Sequence[ModelSpec]:
        now = time.monotonic()
        if self._loaded and (
            self.poll_wait_seconds <= 0 or now - self._checked_at < self.poll_wait_seconds
        ):
            return self._specs
        self._checked_at = now
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime, st.st_size)
        except OSError as exc:
            if not self._loaded:
                self.error = f"Cannot read model config {self.path}: {exc}"
                log.error("%s", self.error)
                self._loaded = True
            return self._specs
        if self._loaded and stamp == self._stamp:
            return self._specs
        try:
            specs = read_model_config(self.path)
        except ServingError as exc:
            self.error = exc.message
            log.error("%s; keeping the previous configuration", exc.message)
        else:
            self._specs = specs
            self.error = None
        self._stamp = stamp
        self._loaded = True
        return self._specs

    def edit(self, edit: Callable[[ModelServerConfig], None]) -> Sequence[ModelSpec]:
        """Change the file with :func:`edit_model_config` and take the result as the
        configuration in force at once (no waiting for the next poll)."""
        specs = edit_model_config(self.path, edit)
        st = os.stat(self.path)
        self._specs, self._stamp = specs, (st.st_mtime, st.st_size)
        self._loaded, self.error = True, None
        self._checked_at = time.monotonic()
        return self._specs

    def invalidate(self) -> None:
        """Re-read the file on the next :meth:`specs` call, whatever its time stamp."""
        self._stamp = None
        self._checked_at = 0.0


def config_entry(config: ModelServerConfig, name: str) -> _ModelConfigProto | None:
    """The ``model_config_list`` entry of model ``name`` in ``config``, or None."""
    for model in config.model_config_list.config:
        if model.name == name:
            return model
    return None


def add_model(config: ModelServerConfig, name: str, base_path: str, platform: str) -> None:
    """Add model ``name`` (latest(1) policy, TF Serving's default) to ``config``."""
    entry = config.model_config_list.config.add()
    entry.name = check_model_name(name)
    entry.base_path = base_path
    entry.model_platform = platform


def edit_model_config(path: str, edit: Callable[[ModelServerConfig], None]) -> list[ModelSpec]:
    """Read the config at ``path`` (an empty one if the file is missing), apply ``edit`` to
    the message, and replace the file atomically with the result in TF Serving's text format
    (``text_format``), so ``tensorflow_model_server --model_config_file`` reads it unchanged.
    Returns the new specs. Raises INVALID_ARGUMENT if the file on disk does not parse (nothing is
    written then) and OSError if it cannot be written. Blocking: worker threads only."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid_argument(f"Cannot read model config {path}: {exc}") from None
    config = parse_config_proto(text)
    if config.WhichOneof("config") not in (None, "model_config_list"):
        raise invalid_argument(
            f"Invalid model config: {config.WhichOneof('config')} is not supported")
    edit(config)
    new_text = text_format.MessageToString(config)
    specs = parse_model_config(new_text, os.path.dirname(os.path.abspath(path)))
    write_atomically(path, new_text)
    return specs
