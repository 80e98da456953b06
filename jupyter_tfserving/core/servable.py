"""What a platform hands the manager: a :class:`Loader` that makes a :class:`Servable`.

Contract (after tensorflow_serving/core/loader.h):

- The manager calls ``Loader.load()`` exactly once per attempt, on a worker thread, never on the
  IOLoop. It returns a ready :class:`Servable` or raises (a :class:`~.status.ServingError` with a
  meaningful code, or any exception, which the manager records as UNKNOWN).
- The manager calls ``Servable.close()`` once, on a worker thread, after the last handle on it has
  been released. No method is called after ``close()``.
- ``Servable.run`` is called from many worker threads at once and must be thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature.

    ``dtype`` is TensorFlow's DataType enum name (``"DT_FLOAT"``, ``"DT_STRING"``, ...).
    ``shape`` is None for unknown rank, else a tuple with -1 for unknown dimensions.
    ``name`` is the graph tensor name (``"x:0"``), informational only.
    """

    dtype: str
    shape: tuple[int, ...] | None
    name: str = ""


@dataclass(frozen=True)
class SignatureInfo:
    """A signature: named inputs and outputs, TF Serving's method name, and the inputs that
    have a default value (TF2 signatures' ``defaults``: a request may leave them out)."""

    inputs: Mapping[str, TensorInfo]
    outputs: Mapping[str, TensorInfo]
    method_name: str = PREDICT_METHOD
    defaults: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Feature:
    """One feature of a tf.Example, as decoded from JSON: ``kind`` is ``"float"``, ``"int64"`` or
    ``"bytes"``; ``values`` is a list of floats, ints or bytes."""

    kind: str
    values: Sequence[Any]


# One example: feature name -> Feature.
Example = Mapping[str, Feature]


@dataclass
class ExampleBatch:
    """The ``examples`` (+ optional ``context``) of a classify/regress request."""

    examples: list[Example]
    context: Example | None = None


class Servable(Protocol):
    """A loaded model version."""

    def signatures(self) -> Mapping[str, SignatureInfo]:
        """All signatures by name. Must be cheap (cached at load)."""
        ...

    def run(
        self, signature_name: str, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Run one signature on numpy inputs (keys exactly the signature's input names, dtypes
        already those the signature declares; strings as ``object`` arrays of ``bytes``). Returns
        every output of the signature as a numpy array. Raises ServingError (INVALID_ARGUMENT for
        inputs the model rejects)."""
        ...

    def run_examples(self, signature_name: str, batch: ExampleBatch) -> dict[str, np.ndarray]:
        """Serialize ``batch`` into tf.Example protos (context features merged into every
        example) and run the signature, whose single input takes the serialized examples."""
        ...

    def metadata(self) -> dict[str, Any]:
        """The ``metadata`` member of TF Serving's GetModelMetadata JSON answer, i.e.
        ``{"signature_def": {"signature_def": {...}}}`` exactly as TF Serving writes it."""
        ...

    def close(self) -> None:
        """Release the model's resources."""
        ...


@dataclass(frozen=True)
class WarmupReport:
    """What a version's warmup ran before it became AVAILABLE: ``records`` read, ``requests``
    replayed (records x iterations), ``seconds`` the replay took."""

    records: int
    requests: int
    seconds: float


class Loader(Protocol):
    """Loads one servable version; made by a platform from (path, platform name).

    A loader that warms its servable up may also have a ``warmup_report`` attribute (a
    :class:`WarmupReport`, or None when nothing was replayed), set by the time ``load()``
    returns; the manager reads it after a successful load and keeps it in the version's
    status (``VersionStatus.warmup``).
    """

    def load(self) -> Servable:
        ...


@dataclass(frozen=True)
class LoadSpec:
    """Where and how to load one version: what a source aspires, what the manager hands to its
    loader factory."""

    path: str
    platform: str = "tensorflow"
    extra: Mapping[str, Any] = field(default_factory=dict)
