"""TensorFlow Lite versions: ``model.tflite`` served as TF Serving serves it.

TF Serving's ``--prefer_tflite_model`` makes its ``tensorflow`` platform load a version
directory's ``model.tflite`` (when there is one) instead of its SavedModel, and run it with
TensorFlow Lite's interpreter (``servables/tensorflow/tflite_session.cc``). This module does the
same with TensorFlow's own interpreter (``tf.lite.Interpreter``), and the same signatures:

- the SignatureDefs stored in the model's ``signature_defs_metadata`` metadata (TF Lite's
  ``SetSignatureDefMap``: a FlexBuffer map of signature key -> serialized ``SignatureDef``),
  their tensor names matched to the interpreter's tensors, ``:0`` suffixes dropped where the
  converter dropped them (TF Serving's ``FixTfLiteTensorName``);
- else one ``serving_default`` Predict signature whose inputs and outputs are the model's input
  and output tensors, keyed by their names without the ``:N`` suffix.

Inputs whose shape differs from the tensor's are resized before the run (TF Serving does), so
a batched request runs as one batch. An interpreter is not thread-safe: each run takes one from
a small pool (created as needed, at most :data:`MAX_INTERPRETERS`). Classify and Regress
(TF Lite's ``ParseExample`` custom op) are not served: UNIMPLEMENTED.

:class:`TfLiteLoader` is made by the ``tensorflow`` platform's factory and ``load()``-ed on the
manager's worker thread; TensorFlow is imported only there.
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.servable import DEFAULT_SIGNATURE, PREDICT_METHOD, ExampleBatch, SignatureInfo
from ..core.signature_inputs import check_request_inputs
from ..core.status import Code, ServingError, SignatureNotFound

__all__ = ["TFLITE_MODEL_FILENAME", "TfLiteLoader", "TfLiteServable", "has_tflite_model"]

TFLITE_MODEL_FILENAME = "model.tflite"
SIGNATURE_DEFS_METADATA = b"signature_defs_metadata"
# Interpreters per loaded version: runs beyond this many at once wait for one.
MAX_INTERPRETERS = 4


def has_tflite_model(path: str) -> bool:
    """Whether version directory ``path`` holds a ``model.tflite``."""
    return os.path.isfile(os.path.join(path, TFLITE_MODEL_FILENAME))


def _legacy_name(name: str) -> str:
    """A TF tensor name as early TF Lite converters wrote it: without ``:N``."""
    return name.split(":", 1)[0]


def _stored_signature_defs(model_bytes: bytes) -> dict[str, Any]:
    """The SignatureDefs in the model's ``signature_defs_metadata``, by key ({} if none)."""
    from flatbuffers import flexbuffers  # type: ignore[import-untyped]
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() != SIGNATURE_DEFS_METADATA:
            continue
        raw = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
        root = flexbuffers.GetRoot(raw).AsMap
        return {key.AsKey: meta_graph_pb2.SignatureDef.FromString(
                    value.AsBlob if value.IsBlob else value.AsStringBytes)
                for key, value in zip(root.Keys, root.Values, strict=True)}
    return {}


def _tensor_info_proto(detail: Mapping[str, Any]) -> Any:
    """An interpreter's tensor detail -> ``tensorflow.TensorInfo`` (name, dtype, dims)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    info = meta_graph_pb2.TensorInfo(name=detail["name"])
    info.dtype = tf.as_dtype(detail["dtype"]).as_datatype_enum
    for size in detail["shape"]:
        info.tensor_shape.dim.add(size=int(size))
    return info


def _signature_defs(model_bytes: bytes, inputs: Mapping[str, int],
                    outputs: Mapping[str, int], details: Mapping[int, Any]) -> dict[str, Any]:
    """TF Serving's signatures of a TF Lite model (see the module docstring). ``inputs`` and
    ``outputs`` map the interpreter's tensor names to indices. INVALID_ARGUMENT when a stored
    signature names a tensor the model does not have."""
    from tensorflow.core.protobuf import meta_graph_pb2

    try:
        stored = _stored_signature_defs(model_bytes)
    except Exception as exc:  # a malformed FlexBuffer or SignatureDef
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Invalid SignatureDefs found in TfLite model: {exc}") from None
    if not stored:
        sig = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
        for name, index in inputs.items():
            sig.inputs[_legacy_name(name)].CopyFrom(_tensor_info_proto(details[index]))
        for name, index in outputs.items():
            sig.outputs[_legacy_name(name)].CopyFrom(_tensor_info_proto(details[index]))
        return {DEFAULT_SIGNATURE: sig}
    for key, sig in stored.items():
        for kind, infos, known in (("input", sig.inputs, inputs), ("output", sig.outputs,
                                                                   outputs)):
            for alias, info in infos.items():
                if info.name in known:
                    continue
                if _legacy_name(info.name) in known:
                    info.name = _legacy_name(info.name)
                    continue
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    f"Signature {kind} {alias} of signature {key} references an unknown "
                    f"tensor '{info.name}'")
    return stored


class TfLiteServable:
    """One loaded ``model.tflite`` (see the module docstring). ``run`` is thread-safe."""

    def __init__(self, path: str, model_bytes: bytes, num_threads: int | None) -> None:
        from ..platforms.tensorflow import signature_info, signature_metadata

        self.path = path
        self._model_bytes = model_bytes
        self._num_threads = num_threads
        self._closed = False
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._made = 0
        self._made_lock = threading.Lock()
        first = self._new_interpreter()
        details = {d["index"]: d for d in (*first.get_input_details(),
                                           *first.get_output_details())}
        self._inputs = {d["name"]: d["index"] for d in first.get_input_details()}
        self._outputs = {d["name"]: d["index"] for d in first.get_output_details()}
        self._pool.put(first)
        defs = _signature_defs(model_bytes, self._inputs, self._outputs, details)
        self._feeds = {key: {a: self._inputs[i.name] for a, i in sig.inputs.items()}
                       for key, sig in defs.items()}
        self._fetches = {key: {a: self._outputs[i.name] for a, i in sig.outputs.items()}
                         for key, sig in defs.items()}
        self._signatures = {key: signature_info(sig) for key, sig in defs.items()}
        self._metadata = signature_metadata(defs)

    def _new_interpreter(self) -> Any:
        import tensorflow as tf

        with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated" (for LiteRT)
            warnings.simplefilter("ignore")
            try:
                interpreter = tf.lite.Interpreter(model_content=self._model_bytes,
                                                  num_threads=self._num_threads)
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise ServingError(Code.INVALID_ARGUMENT, f"Cannot build an interpreter for "
                                   f"the TfLite model at {self.path}: {exc}") from None
        with self._made_lock:
            self._made += 1
        return interpreter

    def _take(self) -> Any:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._made_lock:
            make = self._made < MAX_INTERPRETERS
        return self._new_interpreter() if make else self._pool.get()

    def signatures(self) -> Mapping[str, SignatureInfo]:
        return self._signatures

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Set each input tensor (resized to the input's shape when it differs), invoke, and
        read every output of the signature. INVALID_ARGUMENT for inputs the model rejects."""
        if self._closed:
            raise ServingError(Code.FAILED_PRECONDITION,
                               f"TfLite model at {self.path} was unloaded")
        feeds = self._feeds.get(signature_name)
        if feeds is None:
            raise SignatureNotFound(signature_name)
        check_request_inputs(inputs.keys(), self._signatures[signature_name])
        interpreter = self._take()
        try:
            return self._invoke(interpreter, signature_name, feeds, inputs)
        finally:
            self._pool.put(interpreter)

    def _invoke(self, interpreter: Any, signature_name: str, feeds: Mapping[str, int],
                inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            resized = False
            for alias, index in feeds.items():
                shape = np.shape(inputs[alias])
                current = tuple(interpreter.get_tensor(index).shape)
                if tuple(shape) != current:
                    interpreter.resize_tensor_input(index, list(shape), strict=False)
                    resized = True
            if resized:
                interpreter.allocate_tensors()
            for alias, index in feeds.items():
                interpreter.set_tensor(index, inputs[alias])
            interpreter.invoke()
            return {alias: np.array(interpreter.get_tensor(index))
                    for alias, index in self._fetches[signature_name].items()}
        except (ValueError, RuntimeError) as exc:
            raise ServingError(Code.INVALID_ARGUMENT, str(exc)) from None

    def run_examples(self, signature_name: str, batch: ExampleBatch) -> dict[str, np.ndarray]:
        raise ServingError(Code.UNIMPLEMENTED,
                           "Classify and Regress are not served for TfLite models here; "
                           "use Predict")

    def metadata(self) -> dict[str, Any]:
        import copy

        return copy.deepcopy(self._metadata)

    def close(self) -> None:
        """Drop the interpreters (the manager calls this once the last handle is gone)."""
        self._closed = True
        while True:
            try:
                self._pool.get_nowait()
            except queue.Empty:
                break


class TfLiteLoader:
    """Loads ``<path>/model.tflite``: NOT_FOUND without one, INVALID_ARGUMENT for a file
    TF Lite cannot build an interpreter from. ``num_threads``: the interpreter's threads
    (None: TF Lite's default)."""

    def __init__(self, path: str, num_threads: int | None = None) -> None:
        self.path = str(path)
        self.num_threads = num_threads

    def load(self) -> TfLiteServable:
        from .tensorflow import configure_tensorflow

        configure_tensorflow()
        model_path = os.path.join(self.path, TFLITE_MODEL_FILENAME)
        try:
            with open(model_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ServingError(Code.NOT_FOUND,
                               f"Could not find a TfLite model at {model_path}") from None
        except OSError as exc:
            raise ServingError(Code.DATA_LOSS,
                               f"Could not read the TfLite model at {model_path}: {exc}") from None
        return TfLiteServable(self.path, data, self.num_threads)
