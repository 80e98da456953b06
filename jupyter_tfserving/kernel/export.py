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

TensorFlow is imported only for the first two. Returns gzip tar bytes of the directory's
contents. Raises :class:`ExportError` naming the problem.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from ..core.archive import pack_directory
from ..core.dtypes import tf_dtype_name
from ..core.status import ServingError


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


def export_version(obj: Any, *, example: Any = None) -> bytes:
    """Pack ``obj`` (see the module docstring) as a version directory; returns the archive."""
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if not os.path.isdir(path):
            raise ExportError(f"{path} is not a directory")
        if not any(os.path.isfile(os.path.join(path, f))
                   for f in ("saved_model.pb", "saved_model.pbtxt")):
            raise ExportError(f"{path} is not a SavedModel directory (no saved_model.pb)")
        return _pack(path)
    with tempfile.TemporaryDirectory(prefix="jupyter-tfserving-export-") as tmp:
        dest = os.path.join(tmp, "version")
        if _is_keras_model(obj) or _is_trackable(obj):
            try:
                _save_tensorflow(obj, dest)
            except Exception as exc:
                raise ExportError(f"Cannot export the {type(obj).__name__} as a SavedModel: "
                                  f"{type(exc).__name__}: {exc}") from exc
        else:
            from ..platforms.python import write_python_version

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
