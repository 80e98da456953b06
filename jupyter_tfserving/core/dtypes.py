"""TensorFlow's DataType names for the tensors that TF Serving's JSON can carry, and their
numpy dtypes: one table for the REST codecs (which convert JSON to these), the ``python``
platform (whose signatures may declare only these) and the kernel's exporter (which names the
dtype of an example batch). Plain values: stdlib and numpy only."""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT_DTYPES: dict[str, type[np.floating[Any]]] = {
    "DT_HALF": np.float16,
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
}
INT_DTYPES: dict[str, type[np.integer[Any]]] = {
    "DT_INT8": np.int8,
    "DT_INT16": np.int16,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_UINT8": np.uint8,
    "DT_UINT16": np.uint16,
    "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64,
}
# Strings are ``object`` arrays of ``bytes``: they have no numpy dtype of their own here.
JSON_DTYPES = frozenset({*FLOAT_DTYPES, *INT_DTYPES, "DT_BOOL", "DT_STRING"})


def tf_dtype_name(dtype: np.dtype[Any]) -> str | None:
    """The DataType name of a numpy dtype (text and ``object`` are DT_STRING), or None when
    TF Serving's JSON cannot carry it."""
    if dtype.kind in "USO":
        return "DT_STRING"
    if dtype == np.bool_:
        return "DT_BOOL"
    for name, np_type in (*FLOAT_DTYPES.items(), *INT_DTYPES.items()):
        if dtype == np_type:
            return name
    return None

# The most dimensions a request's tensor may have, on every front end. TensorFlow's conversion
# of a numpy string array (its Python extension, built against numpy 1's 32-dimension limit)
# crashes the process past 32; numbers would go further, one limit keeps the rule simple.
MAX_TENSOR_RANK = 32
