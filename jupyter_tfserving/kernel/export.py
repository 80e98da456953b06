"""Turn what a notebook has into a packed version directory that the server can publish.

Called by :func:`~jupyter_tfserving.kernel.serving.serve` in the kernel. Accepts:

- a Keras model: ``model.export(dir)`` (a SavedModel whose ``serving_default`` output is
  ``output_0``);
- a ``tf.Module`` (or any trackable) with signatures: ``tf.saved_model.save`` (its
  ``signatures`` attribute if it has one, else TensorFlow picks its one input-signature
  function);
- a path to a SavedModel directory (``saved_model.pb`` at its top);
- a Python callable, or an object with a callable ``predict``: the ``python`` platform
  (cloudpickle; DESIGN §2), with a signature derived from ``example`` when given.

For the first three (TensorFlow versions), an ``example`` becomes the version's warmup
records, ``assets.extra/tf_serving_warmup_requests`` (TF Serving's format, replayed by the
server before the version is AVAILABLE: ``platforms.warmup``), so its first requests are as
fast as later ones: an array or a dict of arrays is one predict request of those rows for the
``serving_default`` signature (checked against the signature's inputs, dtypes cast the way
numpy casts within a kind), a sequence of ``tensorflow.serving.PredictionLog`` messages (logged
requests) is written as it is. A SavedModel directory is copied first: the caller's files are
never changed.

TensorFlow is imported only for TensorFlow versions. Returns gzip tar bytes of the directory's
contents. Raises :class:`ExportError` naming the problem.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.archive import pack_directory
from ..core.dtypes import tf_dtype_name
from ..core.servable import DEFAULT_SIGNATURE, SignatureInfo, TensorInfo
from ..core.signature_inputs import check_request_inputs
from ..core.status import ServingError
from ..platforms.warmup import MAX_RECORDS, WARMUP_FILE

PREDICTION_LOG = "tensorflow.serving.PredictionLog"


class ExportError(ValueError):
    """The object cannot be served as given."""


def _is_keras_model(obj: Any) -> bool:
    return any(c.__module__.startswith("keras") and c.__name__ in ("Model", "Layer")
               for c in type(obj).__mro__)


def _is_trackable(obj: Any) -> bool:
    return any(c.__module__.startswith("tensorflow") and c.__name__ in (
        "Module", "AutoTrackable", "Trackable") for c in type(obj).__mro__)


def _tensor_spec(value: Any) -> dict[str, Any]:
    array = np.asarray(value)
    dtype = tf_dtype_name(array.dtype)
    if dtype is None:
        raise ExportError(f"Cannot serve values of dtype {array.dtype}")
    shape = [-1, *array.shape[1:]] if array.ndim else []
    return {"dtype": dtype, "shape": shape}


def python_signature(obj: Any, example: Any) -> dict[str, Any]:
    """The python platform signature for ``obj`` called on ``example`` (a batch): one input
    ``x`` with the example's dtype and shape (batch dimension unknown), and the outputs the
    call returns (a dict keeps its names, anything else is ``output_0``)."""
    predict = getattr(obj, "predict", None)
    fn = predict if callable(predict) else obj
    try:
        result = fn(np.asarray(example))
    except Exception as exc:
        raise ExportError(f"Calling the model on the example failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    outputs = result if isinstance(result, dict) else {"output_0": result}
    return {
        "inputs": {"x": _tensor_spec(example)},
        "outputs": {str(k): _tensor_spec(v) for k, v in outputs.items()},
    }


def _save_tensorflow(obj: Any, dest: str) -> None:
    if _is_keras_model(obj):
        try:
            obj.export(dest, verbose=False)
        except TypeError:  # Keras versions without the verbose argument
            obj.export(dest)
        return
    import tensorflow as tf

    signatures = getattr(obj, "signatures", None)
    tf.saved_model.save(obj, dest, signatures=dict(signatures) if signatures else None)


def _prediction_logs(example: Any) -> list[Any] | None:
    """``example`` as PredictionLog messages when it is one or a list / tuple of them, else
    None (rows). ExportError for a sequence that mixes them with other things."""
    from google.protobuf.message import Message

    def is_log(item: Any) -> bool:
        return isinstance(item, Message) and item.DESCRIPTOR.full_name == PREDICTION_LOG

    if is_log(example):
        return [example]
    if isinstance(example, (list, tuple)) and not example:
        raise ExportError("The example is empty: give rows or PredictionLog records")
    if not (isinstance(example, (list, tuple)) and isinstance(example[0], Message)):
        return None
    for index, item in enumerate(example):
        if not is_log(item):
            what = (item.DESCRIPTOR.full_name if isinstance(item, Message)
                    else type(item).__name__)
            raise ExportError(f"Example item {index} is a {what}, not a {PREDICTION_LOG}")
    return list(example)


def example_rows(example: Any) -> Any:
    """``example`` when it is rows (an array or nested lists), else None: a dict of inputs or
    PredictionLog records. What :class:`~.serving.ServedModel` may show as a curl line."""
    if example is None or isinstance(example, Mapping) or _prediction_logs(example):
        return None
    return example


def serving_signature(version_dir: str) -> SignatureInfo:
    """The ``serving_default`` signature of the SavedModel in ``version_dir`` (its ``serve``
    meta graph, as the server loads it), read from ``saved_model.pb`` without loading the
    model. ExportError when it has none."""
    from google.protobuf import text_format
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    from ..platforms.tensorflow import SERVE_TAG, signature_info

    saved = saved_model_pb2.SavedModel()
    binary = os.path.join(version_dir, "saved_model.pb")
    try:
        if os.path.isfile(binary):
            with open(binary, "rb") as f:
                saved.ParseFromString(f.read())
        else:
            with open(os.path.join(version_dir, "saved_model.pbtxt"), encoding="utf-8") as f:
                text_format.Parse(f.read(), saved)
    except (OSError, DecodeError, text_format.ParseError) as exc:
        raise ExportError(f"Cannot read the SavedModel in {version_dir}: {exc}") from None
    for meta_graph in saved.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            signatures = meta_graph.signature_def
            if DEFAULT_SIGNATURE not in signatures:
                raise ExportError(
                    f"The SavedModel has no {DEFAULT_SIGNATURE} signature (it has "
                    f"{', '.join(sorted(signatures)) or 'none'}) to warm up with the example; "
                    "give PredictionLog records as example instead")
            return signature_info(signatures[DEFAULT_SIGNATURE])
    raise ExportError(f"The SavedModel has no meta graph tagged {SERVE_TAG!r}")


def _conform(alias: str, value: Any, info: TensorInfo) -> np.ndarray:
    """``value`` as the array input ``alias`` takes: its dtype (cast within a kind), its rank
    and the dimensions the signature fixes. ExportError otherwise."""
    from ..grpc.codec import dtypes

    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ExportError(f"The example's {alias} is not an array: {exc}") from None
    want = next((d for d in dtypes().values() if d.name == info.dtype), None)
    if want is None:
        raise ExportError(f"Input {alias} takes {info.dtype}, which an example cannot give")
    if want.name == "DT_STRING":
        if arr.dtype.kind not in "OSU":
            raise ExportError(f"Input {alias} takes strings (DT_STRING); the example's "
                              f"{alias} is {arr.dtype}")
    elif arr.dtype.kind in "OSUV" or not np.can_cast(arr.dtype, want.numpy, "same_kind"):
        raise ExportError(f"Input {alias} takes {info.dtype}; the example's {alias} is "
                          f"{arr.dtype}")
    else:
        arr = arr.astype(want.numpy, copy=False)
    if info.shape is not None and (
            arr.ndim != len(info.shape)
            or any(w not in (-1, a) for w, a in zip(info.shape, arr.shape, strict=True))):
        wanted = "(" + ", ".join("None" if d == -1 else str(d) for d in info.shape) + ")"
        raise ExportError(f"Input {alias} takes shape {wanted}; the example's {alias} has "
                          f"shape {arr.shape}")
    return arr


def predict_log(example: Any, signature: SignatureInfo, model_name: str = "") -> Any:
    """One ``PredictionLog`` holding a predict request of ``example`` (an array for a
    signature of one input, or a dict of arrays by input name) for the ``serving_default``
    ``signature``, in the codec's tensor form. ExportError when it does not fit the
    signature."""
    from tensorflow_serving.apis import prediction_log_pb2

    from ..grpc.codec import array_into

    if isinstance(example, Mapping):
        inputs = {str(k): v for k, v in example.items()}
    elif len(signature.inputs) == 1:
        inputs = {next(iter(signature.inputs)): example}
    else:
        raise ExportError(
            f"The {DEFAULT_SIGNATURE} signature takes {len(signature.inputs)} inputs "
            f"({', '.join(sorted(signature.inputs))}): give the example as a dict of them")
    try:
        check_request_inputs(inputs.keys(), signature)
    except ServingError as exc:
        raise ExportError(f"The example does not fit the {DEFAULT_SIGNATURE} signature: "
                          f"{exc.message}") from None
    record = prediction_log_pb2.PredictionLog()
    request = record.predict_log.request
    request.model_spec.name = model_name
    request.model_spec.signature_name = DEFAULT_SIGNATURE
    for alias in sorted(inputs):
        arr = _conform(alias, inputs[alias], signature.inputs[alias])
        array_into(request.inputs[alias], arr, tensor_content=True, name=alias)
    return record


def write_warmup_requests(version_dir: str, example: Any, model_name: str = "") -> int:
    """Write ``example`` (see the module docstring) as ``version_dir``'s warmup records,
    replacing any it had; how many records were written."""
    records = _prediction_logs(example)
    if records is None:
        records = [predict_log(example, serving_signature(version_dir), model_name)]
    if len(records) > MAX_RECORDS:
        raise ExportError(f"{len(records)} warmup records; a version may have at most "
                          f"{MAX_RECORDS}")
    import tensorflow as tf

    path = os.path.join(version_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    return len(records)


def export_version(obj: Any, *, example: Any = None, model_name: str = "") -> bytes:
    """Pack ``obj`` (see the module docstring) as a version directory; returns the archive.
    ``model_name`` is written in the warmup requests made from ``example``."""
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if not os.path.isdir(path):
            raise ExportError(f"{path} is not a directory")
        if not any(os.path.isfile(os.path.join(path, f))
                   for f in ("saved_model.pb", "saved_model.pbtxt")):
            raise ExportError(f"{path} is not a SavedModel directory (no saved_model.pb)")
        if example is None:
            return _pack(path)
    with tempfile.TemporaryDirectory(prefix="jupyter-tfserving-export-") as tmp:
        dest = os.path.join(tmp, "version")
        if isinstance(obj, (str, os.PathLike)):
            try:
                shutil.copytree(os.fspath(obj), dest, symlinks=True)
            except OSError as exc:
                raise ExportError(f"Cannot copy {os.fspath(obj)}: {exc}") from None
            write_warmup_requests(dest, example, model_name)
        elif _is_keras_model(obj) or _is_trackable(obj):
            try:
                _save_tensorflow(obj, dest)
            except Exception as exc:
                raise ExportError(f"Cannot export the {type(obj).__name__} as a SavedModel: "
                                  f"{type(exc).__name__}: {exc}") from exc
            if example is not None:
                write_warmup_requests(dest, example, model_name)
        else:
            from ..platforms.python import write_python_version

            if example is not None and example_rows(example) is None:
                raise ExportError(
                    "A Python model's example is one batch (an array), which gives its "
                    "signature; warmup records (a dict of inputs, PredictionLog records) are "
                    "for TensorFlow models")
            signature = python_signature(obj, example) if example is not None else None
            try:
                write_python_version(dest, obj, signature=signature)
            except ServingError as exc:
                raise ExportError(exc.message) from None
        return _pack(dest)


def _pack(path: str) -> bytes:
    try:
        return pack_directory(path)
    except ServingError as exc:
        raise ExportError(exc.message) from None
