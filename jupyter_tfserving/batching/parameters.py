"""Batching parameters, with TF Serving's names, defaults and text format.

The defaults are those of TF Serving's ``BasicBatchScheduler::Options`` (what a field left out of
a ``--batching_parameters_file`` gets). The text is TF Serving's ``BatchingParameters`` text proto
(``tensorflow_serving/servables/tensorflow/session_bundle_config.proto``); the message class is
built here at import time from a descriptor, in a private descriptor pool, because the
``tensorflow-serving-api`` wheel does not ship ``session_bundle_config_pb2``.

One addition of ours: ``batch_timeout_micros="auto"`` with ``batch_latency_target_ms`` (the
adaptive wait, ``batching/adaptive.py``). TF Serving's text format cannot say it (its
``batch_timeout_micros`` is an ``Int64Value``), so the file keeps TF Serving's meaning exactly and
``auto`` comes from the server's configuration (``TFServingApp.batch_timeout_micros = "auto"``,
which applies over the file's value, ``TFServingApp.model_batching_parameters`` per model, or the
model server's ``--batch_latency_target_ms``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

from jupyter_tfserving.core.status import Code, ServingError, invalid_argument

__all__ = [
    "AUTO",
    "DEFAULT_BATCH_LATENCY_TARGET_MS",
    "BatchingParameters",
    "BatchingParametersProto",
    "parse_batching_parameters",
    "read_batching_parameters_file",
]


# ``batch_timeout_micros`` that asks for the adaptive wait.
AUTO: Literal["auto"] = "auto"
# The latency target of an adaptive wait when none is given (milliseconds).
DEFAULT_BATCH_LATENCY_TARGET_MS = 10.0


def _default_num_batch_threads() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class BatchingParameters:
    """The parameters of one batching queue (and, for ``num_batch_threads``, of the scheduler).

    Fields (TF Serving's names; defaults are TF Serving's ``BasicBatchScheduler::Options``):

    - ``max_batch_size`` (1000): the most rows in one batch; without large batch splitting also
      the most rows one request may have.
    - ``batch_timeout_micros`` (0): how long the oldest task of a batch that is not full may wait
      for more tasks. 0: a batch is run as soon as a batch thread is free. ``"auto"`` (ours; not
      in TF Serving's text format): each queue chooses the wait itself, each time a batch opens,
      from its measured run time per batch size and arrival rate: the largest batches whose
      wait plus run keep ``batch_latency_target_ms``, and 0 at low load
      (:class:`~jupyter_tfserving.batching.adaptive.AdaptiveWait`).
    - ``batch_latency_target_ms`` (10.0; ours): with ``batch_timeout_micros="auto"``, the target
      for a task's time in the scheduler (its wait in the queue plus its batch's run), in
      milliseconds. Read only by ``auto`` queues; must be positive.
    - ``max_enqueued_batches`` (10): the most batches waiting in one queue (a batch taken by a
      thread no longer counts). A task that would need more is refused with UNAVAILABLE.
    - ``num_batch_threads`` (the number of CPUs, TF Serving's ``port::MaxParallelism()``): the
      threads shared by all queues. Only the scheduler's constructor reads it; a queue's own
      value is ignored (as in TF Serving, where the shared scheduler owns the threads).
    - ``allowed_batch_sizes`` (empty: any size): a batch is padded up to the smallest entry that
      holds it, with copies of its first row; the padding rows are sliced off the outputs.
      Strictly increasing; the last entry must equal the execution batch size.
    - ``pad_variable_length_inputs`` (False): inputs of one batch whose non-batch dimensions
      differ are padded at the end of each dimension to the batch's largest (zeros, ``b""``).
    - ``enable_large_batch_splitting`` (False): a task that does not fit in the open batch is
      split, filling the open batch first, then batches of ``max_execution_batch_size`` rows.
    - ``max_execution_batch_size`` (None: ``max_batch_size``): the batch size when large batch
      splitting is on; ignored when it is off.
    - ``thread_pool_name`` ("batch_threads"): informational (thread names).
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int | Literal["auto"] = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=_default_num_batch_threads)
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None
    thread_pool_name: str = "batch_threads"
    batch_latency_target_ms: float = DEFAULT_BATCH_LATENCY_TARGET_MS

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise a list given by a caller into the hashable tuple.
        object.__setattr__(
            self, "allowed_batch_sizes", tuple(int(s) for s in self.allowed_batch_sizes)
        )
        timeout = self.batch_timeout_micros
        if isinstance(timeout, str) and timeout.strip().lower() == AUTO:
            object.__setattr__(self, "batch_timeout_micros", AUTO)  # "Auto", " auto"

    @property
    def adaptive(self) -> bool:
        """True when ``batch_timeout_micros`` is ``"auto"``."""
        return self.batch_timeout_micros == AUTO

    @property
    def execution_batch_size(self) -> int:
        """The most rows of one batch: ``max_execution_batch_size`` (default ``max_batch_size``)
        with large batch splitting on, else ``max_batch_size``."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size is not None:
            return self.max_execution_batch_size
        return self.max_batch_size

    def validate(self) -> None:
        """Raise ServingError(INVALID_ARGUMENT) unless the parameters are usable.

        Called by the parsers and by the scheduler when it creates a queue. Sizes, counts and
        threads must be > 0, the timeout >= 0 or ``"auto"``, the latency target a positive
        number of milliseconds; with splitting, ``max_execution_batch_size`` must
        not exceed ``max_batch_size``; ``allowed_batch_sizes`` must be positive, strictly
        increasing, and (TF Serving's rule) end with the execution batch size.
        """
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            value = getattr(self, name)
            if value <= 0:
                raise invalid_argument(f"{name} must be positive; was {value}")
        timeout = self.batch_timeout_micros
        if timeout != AUTO:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise invalid_argument(
                    "batch_timeout_micros must be a non-negative integer (microseconds) or "
                    f"'auto'; was {timeout!r}"
                )
            if timeout < 0:
                raise invalid_argument(
                    f"batch_timeout_micros must be non-negative; was {timeout}")
        target = self.batch_latency_target_ms
        if (isinstance(target, bool) or not isinstance(target, (int, float))
                or not math.isfinite(target) or target <= 0):
            raise invalid_argument(
                f"batch_latency_target_ms must be a positive number of milliseconds; was "
                f"{target!r}"
            )
        if self.max_execution_batch_size is not None:
            if self.max_execution_batch_size <= 0:
                raise invalid_argument(
                    "max_execution_batch_size must be positive; was "
                    f"{self.max_execution_batch_size}"
                )
            if (
                self.enable_large_batch_splitting
                and self.max_execution_batch_size > self.max_batch_size
            ):
                raise invalid_argument(
                    f"max_execution_batch_size ({self.max_execution_batch_size}) must not "
                    f"exceed max_batch_size ({self.max_batch_size})"
                )
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(s <= 0 for s in sizes):
                raise invalid_argument(f"allowed_batch_sizes must be positive; were {list(sizes)}")
            if any(b <= a for a, b in pairwise(sizes)):
                raise invalid_argument(
                    f"allowed_batch_sizes entries must be monotonically increasing; were "
                    f"{list(sizes)}"
                )
            expected = self.execution_batch_size
            if sizes[-1] != expected:
                raise invalid_argument(
                    "The last entry in allowed_batch_sizes must match max_batch_size; last "
                    f"entry was {sizes[-1]}; expected {expected}"
                )

    def merged(self, **overrides: Any) -> BatchingParameters:
        """A copy with ``overrides`` applied (e.g. a model's own parameters over the global ones).

        An override of None leaves the field as it is. Unknown names raise
        ServingError(INVALID_ARGUMENT). The result is not validated: call :meth:`validate` on the
        final parameters.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise invalid_argument(f"Unknown batching parameters: {', '.join(unknown)}")
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes)


def _build_message_class() -> type:
    """Build ``tensorflow.serving.BatchingParameters`` (TF Serving's field names, types and
    numbers) in a private pool, so that it never clashes with a class another package
    registered in the default pool."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    fdp = descriptor_pb2.FileDescriptorProto(
        name="jupyter_tfserving/batching/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    msg = fdp.message_type.add(name="BatchingParameters")
    F = descriptor_pb2.FieldDescriptorProto
    fields: list[tuple[str, int, int, int, str]] = [
        ("max_batch_size", 1, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
        ("batch_timeout_micros", 2, F.TYPE_MESSAGE, F.LABEL_OPTIONAL,
         ".google.protobuf.Int64Value"),
        ("max_enqueued_batches", 3, F.TYPE_MESSAGE, F.LABEL_OPTIONAL,
         ".google.protobuf.Int64Value"),
        ("num_batch_threads", 4, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
        ("thread_pool_name", 5, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".google.protobuf.StringValue"),
        ("allowed_batch_sizes", 6, F.TYPE_INT64, F.LABEL_REPEATED, ""),
        ("pad_variable_length_inputs", 7, F.TYPE_BOOL, F.LABEL_OPTIONAL, ""),
        ("enable_large_batch_splitting", 8, F.TYPE_MESSAGE, F.LABEL_OPTIONAL,
         ".google.protobuf.BoolValue"),
        ("max_execution_batch_size", 9, F.TYPE_MESSAGE, F.LABEL_OPTIONAL,
         ".google.protobuf.Int64Value"),
    ]
    for name, number, type_, label, type_name in fields:
        f = msg.field.add(name=name, number=number, type=type_, label=label)
        if type_name:
            f.type_name = type_name
    pool.Add(fdp)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    )


# TF Serving's BatchingParameters message (text format: ``max_batch_size { value: 128 }``).
BatchingParametersProto: type = _build_message_class()

_WRAPPED_INTS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                 "num_batch_threads", "max_execution_batch_size")


def parse_batching_parameters(text: str) -> BatchingParameters:
    """Parse TF Serving's BatchingParameters text proto into validated parameters.

    Fields left out keep :class:`BatchingParameters`' defaults. Syntax errors, unknown fields and
    invalid values raise ServingError(INVALID_ARGUMENT).
    """
    proto = BatchingParametersProto()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise invalid_argument(f"Invalid batching parameters: {exc}") from None
    values: dict[str, Any] = {}
    for name in _WRAPPED_INTS:
        if proto.HasField(name):
            values[name] = int(getattr(proto, name).value)
    if proto.HasField("thread_pool_name"):
        values["thread_pool_name"] = proto.thread_pool_name.value
    if proto.HasField("enable_large_batch_splitting"):
        values["enable_large_batch_splitting"] = bool(proto.enable_large_batch_splitting.value)
    values["allowed_batch_sizes"] = tuple(int(s) for s in proto.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = bool(proto.pad_variable_length_inputs)
    params = BatchingParameters(**values)
    params.validate()
    return params


def read_batching_parameters_file(path: str) -> BatchingParameters:
    """Read and parse a ``--batching_parameters_file``. A missing file raises
    ServingError(NOT_FOUND); an unreadable or invalid one ServingError(INVALID_ARGUMENT)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ServingError(Code.NOT_FOUND, f"Batching parameters file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid_argument(f"Cannot read batching parameters file {path}: {exc}") from None
    try:
        return parse_batching_parameters(text)
    except ServingError as exc:
        raise invalid_argument(f"{path}: {exc.message}") from None
