"""What a bulk job writes: one output file per shard, whole or not at all, and a manifest.

Each shard's results (the input's key columns it carries through, then one column per output)
are written to ``<output dir>/part-<index>.<ext>`` through a temporary name in the same
directory and renamed when complete, so a cancelled or crashed job leaves only complete shards.
After each shard the manifest (``manifest.json``: the job's source, signature and, per
completed shard, its file and rows) is rewritten the same way; :func:`completed_shards` reads it
back so that a resumed job skips what is done. Formats: Parquet (``pyarrow``) and ``.npz``
(:func:`write_shard`: tables), and ``prediction_log`` (:func:`write_prediction_log`: TFRecord
files of ``tensorflow.serving.PredictionLog``, one record per row, as TF Serving's request
logging and TFX's BulkInferrer write them; TensorFlow is imported where one is written).

Called on worker threads (blocking file I/O). Errors are ServingError naming the file:
RESOURCE_EXHAUSTED for a full disk, FAILED_PRECONDITION for other write failures.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..core.status import Code, ServingError, invalid_argument
from ..dataplane import Classifications
from ..grpc import codec
from ..grpc.codec import LogSpec  # the runners name it sinks.LogSpec

OUTPUT_FORMATS = {"parquet": ".parquet", "npz": ".npz", "prediction_log": ".tfrecord"}
TABLE_FORMATS = ("parquet", "npz")
MANIFEST = "manifest.json"
# The result columns of a classify (TF Serving's ClassificationResult: per row, K labels and
# K scores) and of a regress (its RegressionResult's one value per row).
CLASSES, SCORES, VALUE = "classes", "scores", "value"


def shard_file(directory: str, index: int, fmt: str) -> str:
    """Where shard ``index``'s results go."""
    return os.path.join(directory, f"part-{index:05d}{OUTPUT_FORMATS[fmt]}")


def write_then_rename(path: str, write: Callable[[str], None]) -> None:
    """``write(temporary path)`` then rename it to ``path``; nothing at ``path`` on failure."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        code = Code.RESOURCE_EXHAUSTED if exc.errno == errno.ENOSPC else Code.FAILED_PRECONDITION
        raise ServingError(code, f"Cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _parquet_column(values: np.ndarray) -> Any:
    """A numpy column as a pyarrow array: one value per row, a row's vector as a list."""
    import pyarrow as pa

    if values.ndim <= 1:
        if values.dtype == object:
            return pa.array(list(values))
        return pa.array(values)
    flat = values.reshape(values.shape[0], -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def _unpickled(values: np.ndarray) -> np.ndarray:
    """Strings as fixed-width bytes (``S``): an object array would be pickled into the
    ``.npz``, which nothing here reads back (trailing NUL bytes do not survive ``S``)."""
    if values.dtype != object:
        return values
    return np.array([v.encode("utf-8") if isinstance(v, str) else bytes(v)
                     for v in values.reshape(-1)], dtype=np.bytes_).reshape(values.shape)


def write_shard(path: str, columns: Mapping[str, np.ndarray], fmt: str) -> int:
    """Write ``columns`` (all with the same number of rows) to ``path`` in ``fmt``, whole or
    not at all; the number of rows. Rows of more than one dimension are flattened in Parquet
    (their shape is in the npz form)."""
    if fmt not in TABLE_FORMATS:
        raise invalid_argument(f"Unknown table format {fmt!r} (one of "
                               f"{', '.join(TABLE_FORMATS)})")
    lengths = {int(np.shape(v)[0]) for v in columns.values()}
    if len(lengths) != 1:
        raise invalid_argument(f"The columns of {path} have different row counts: {lengths}")
    (rows,) = lengths

    def write(tmp: str) -> None:
        if fmt == "npz":
            arrays: dict[str, Any] = {name: _unpickled(np.asarray(v))
                                      for name, v in columns.items()}
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({name: _parquet_column(np.asarray(v)) for name, v in columns.items()})
        pq.write_table(table, tmp)

    write_then_rename(path, write)
    return rows


def _prediction_logs(log: LogSpec, inputs: Mapping[str, np.ndarray],
                     results: Mapping[str, np.ndarray], rows: int) -> list[bytes]:
    """One serialized PredictionLog per row (see :func:`write_prediction_log`)."""
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    made = [codec.prediction_log(log) for _ in range(rows)]
    entries, calls = [entry for entry, _ in made], [call for _, call in made]
    if log.method == "predict":
        for i, call in enumerate(calls):
            for name, values in inputs.items():
                codec.array_into(call.request.inputs[name], values[i:i + 1], name=name)
            for name, values in results.items():
                codec.array_into(call.response.outputs[name], values[i:i + 1], name=name)
    else:
        # The shard's result as one ClassificationResult / RegressionResult, cut into rows.
        if log.method == "classify":
            classified = classification_pb2.ClassificationResult()
            scores = np.asarray(results[SCORES])
            codec.classification_result_into(classified, Classifications(
                np.asarray(results[CLASSES]).tolist(), scores, rows, scores.shape[1]), rows)
            per_row = [(call.response.result.classifications, c)
                       for call, c in zip(calls, classified.classifications, strict=True)]
        else:
            regressed = regression_pb2.RegressionResult()
            codec.regression_result_into(regressed, np.asarray(results[VALUE]), rows)
            per_row = [(call.response.result.regressions, r)
                       for call, r in zip(calls, regressed.regressions, strict=True)]
        (examples,) = inputs.values()
        for call, example, (into, result) in zip(calls, examples, per_row, strict=True):
            call.request.input.example_list.examples.add().MergeFromString(example)
            into.add().CopyFrom(result)
    return [entry.SerializeToString() for entry in entries]


def write_prediction_log(path: str, log: LogSpec, inputs: Mapping[str, np.ndarray],
                         results: Mapping[str, np.ndarray]) -> int:
    """Write one ``PredictionLog`` per row to the TFRecord file ``path``, whole or not at all;
    the number of rows. ``inputs``: the rows as the signature took them (classify and regress:
    its one input, the serialized tf.Examples); ``results``: the signature's outputs (predict),
    :data:`CLASSES` and :data:`SCORES` [rows, K] (classify), :data:`VALUE` (regress). Each log
    holds its row alone: predict, a ``predict_log`` whose request and response hold the row's
    inputs and outputs as tensors with a batch dimension of 1; classify and regress, a
    ``classify_log`` or ``regress_log`` whose request's example list holds the row's
    tf.Example and whose response holds its result. Request and response name the model,
    version and signature of ``log``."""
    lengths = {int(np.shape(v)[0]) for v in (*inputs.values(), *results.values())}
    if len(lengths) != 1:
        raise invalid_argument(f"The columns of {path} have different row counts: {lengths}")
    from ..platforms.tensorflow import configure_tensorflow

    configure_tensorflow()  # GPU memory growth, as before a model loads
    import tensorflow as tf

    records = _prediction_logs(log, inputs, results, lengths.pop())

    def write(tmp: str) -> None:
        try:
            with tf.io.TFRecordWriter(tmp) as writer:
                for record in records:
                    writer.write(record)
        except tf.errors.OpError as exc:  # as OSError: write_then_rename maps it to a code
            full = exc.error_code == tf.errors.RESOURCE_EXHAUSTED
            raise OSError(errno.ENOSPC if full else errno.EIO, exc.message) from None

    write_then_rename(path, write)
    return len(records)


def write_manifest(directory: str, manifest: Mapping[str, Any]) -> None:
    """Replace ``<directory>/manifest.json`` with ``manifest`` (JSON), atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)

    write_then_rename(os.path.join(directory, MANIFEST), write)


def read_manifest(directory: str) -> dict[str, Any] | None:
    """The manifest in ``directory``, or None when there is none (INVALID_ARGUMENT when it
    is not JSON)."""
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise invalid_argument(f"Cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict):
        raise invalid_argument(f"{path} is not a job manifest")
    return manifest


def completed_shards(directory: str, manifest: Mapping[str, Any] | None) -> dict[int, int]:
    """The shards a manifest lists as complete whose files are still there: index -> rows.
    A shard whose file is gone is done again."""
    done: dict[int, int] = {}
    for key, entry in ((manifest or {}).get("shards") or {}).items():
        try:
            index, rows, name = int(key), int(entry["rows"]), str(entry["file"])
        except (KeyError, TypeError, ValueError):
            continue
        if os.path.basename(name) == name and os.path.isfile(os.path.join(directory, name)):
            done[index] = rows
    return done
