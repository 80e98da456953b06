"""What a bulk job reads: a data set cut into shards of rows, each read as named columns.

A source is one file or many (a directory, a glob, a list), of one format: ``.npy`` (one
array: its column is named by the caller), ``.npz`` (named arrays), Parquet and CSV (read with
``pyarrow``), or TFRecord files of serialized ``tf.Example`` (``.tfrecord``, ``.tfrecords``;
GZIP-compressed with ``.gz`` after either; read with TensorFlow). A TFRecord shard's columns are
the records themselves, as they are in the file, under :data:`EXAMPLES_COLUMN`, and one column
per key feature the caller names (a scalar feature of every record). Every path must lie
inside one of the allowed roots (the server's ``root_dir`` and the repository), after symlinks
are resolved: anything else is PERMISSION_DENIED, as every path the server is given. Arrays are
loaded without pickle (``allow_pickle=False``): nothing from a data set is ever unpickled.

:func:`open_source` lists the shards (cheap: file metadata only, but a scan of each TFRecord
file to count its records) in a fixed order, so a resumed job finds the same shards;
:meth:`Source.read` reads one shard's rows. Called on worker threads (never the event loop):
reading is blocking file I/O. ``pyarrow`` is imported where a Parquet or CSV file is read,
TensorFlow where a TFRecord file is.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.status import Code, ServingError, invalid_argument

FORMATS = {".npy": "npy", ".npz": "npz", ".parquet": "parquet", ".pq": "parquet",
           ".csv": "csv", ".tfrecord": "tfrecord", ".tfrecords": "tfrecord"}
# TFRecord files that TensorFlow reads GZIP-compressed.
GZIP_FORMATS = {".tfrecord.gz": "tfrecord", ".tfrecords.gz": "tfrecord"}
DEFAULT_ROWS_PER_SHARD = 65_536
# The column of a TFRecord shard that holds its serialized tf.Examples (object array of bytes).
EXAMPLES_COLUMN = "__tf_example__"

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Shard:
    """Rows ``[start, stop)`` of one file; ``index`` is the shard's place in the job."""

    index: int
    path: str
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def confine(path: str, roots: Sequence[str]) -> str:
    """``path`` resolved (symlinks followed), if it lies inside one of ``roots``; else
    PERMISSION_DENIED naming it."""
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return real
    raise ServingError(Code.PERMISSION_DENIED,
                       f"{path} is outside the directories jobs may read and write")


def _fixed_part(entry: str) -> str:
    """The part of a path before its first glob component (the whole path without one)."""
    parts = entry.split(os.sep)
    for i, part in enumerate(parts):
        if glob.has_magic(part):
            return os.sep.join(parts[:i]) or os.sep
    return entry


def _expand(paths: str | Sequence[str]) -> list[str]:
    """Files named by ``paths``: each a file, a directory (its files, not hidden ones) or a
    glob; sorted within each entry, entries in the given order."""
    out: list[str] = []
    for entry in [paths] if isinstance(paths, str) else list(paths):
        if os.path.isdir(entry):
            found = sorted(os.path.join(entry, n) for n in os.listdir(entry)
                           if not n.startswith(".") and os.path.isfile(os.path.join(entry, n)))
        elif glob.has_magic(entry):
            found = sorted(p for p in glob.glob(entry) if os.path.isfile(p))
        else:
            found = [entry]
        if not found:
            raise ServingError(Code.NOT_FOUND, f"No data file matches {entry}")
        out.extend(found)
    return out


def format_of(path: str) -> str:
    """The format a file's extension names (INVALID_ARGUMENT for another)."""
    name = path.lower()
    for ext, fmt in GZIP_FORMATS.items():
        if name.endswith(ext):
            return fmt
    ext = os.path.splitext(name)[1]
    if ext not in FORMATS:
        raise invalid_argument(f"Cannot read {path}: the extension {ext or '(none)'} is not one "
                               f"of {', '.join(sorted({*FORMATS, *GZIP_FORMATS}))}")
    return FORMATS[ext]


def _records(path: str) -> Any:
    """A ``tf.data`` dataset of the TFRecord file's records (GZIP for the ``.gz`` ones). The
    process's TensorFlow is configured first (GPU memory growth), as before a model loads."""
    from ..platforms.tensorflow import configure_tensorflow

    configure_tensorflow()
    import tensorflow as tf

    gzip = any(path.lower().endswith(ext) for ext in GZIP_FORMATS)
    return tf.data.TFRecordDataset(path, compression_type="GZIP" if gzip else "")


def _count_records(path: str) -> int:
    import tensorflow as tf

    # Counted in batches: a reduce step per record costs tens of microseconds.
    batches = _records(path).batch(1024)
    return int(batches.reduce(np.int64(0),
                              lambda n, batch: n + tf.shape(batch, out_type=tf.int64)[0]))


def _read_records(path: str, start: int, stop: int, where: str) -> np.ndarray:
    """Records ``[start, stop)`` of a TFRecord file, as they are in it (object array of
    bytes); DATA_LOSS naming ``where`` when the file holds fewer."""
    import tensorflow as tf

    records = _records(path).skip(start).take(stop - start).batch(stop - start)
    try:
        values = records.get_single_element().numpy()
    except tf.errors.InvalidArgumentError:  # an empty dataset: the file holds no such records
        values = np.empty(0, dtype=object)
    if len(values) != stop - start:
        raise ServingError(Code.DATA_LOSS, f"{where}: only {len(values)} of these records are "
                           "in the file now")
    return np.asarray(values, dtype=object)


def _parse_examples(records: np.ndarray, start: int, where: str) -> list[Any]:
    """Each record as a ``tf.train.Example`` (INVALID_ARGUMENT naming ``where`` and the first
    record that is not one; record ``i`` of ``records`` is record ``start + i`` of the file)."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    examples: list[Any] = []
    for i, record in enumerate(records):
        try:
            examples.append(tf.train.Example.FromString(record))
        except DecodeError:
            raise invalid_argument(f"{where}: record {start + i} is not a tf.Example") from None
    return examples


# A key feature's kind -> its column's dtype (bytes in an object array, as the other formats').
_KEY_DTYPES: dict[str, np.dtype[Any]] = {
    "float_list": np.dtype(np.float32), "int64_list": np.dtype(np.int64),
    "bytes_list": np.dtype(object)}


def _key_column(examples: Sequence[Any], name: str, start: int, where: str) -> np.ndarray:
    """The scalar feature ``name`` of every example (float32, int64, or bytes in an object
    array); INVALID_ARGUMENT naming ``where`` and the record where it is missing, is not one
    value, or is of another kind than in the first record."""
    kind: str | None = None
    values: list[Any] = []
    for i, example in enumerate(examples):
        features = example.features.feature
        found = features[name].WhichOneof("kind") if name in features else None
        if found is None:
            raise invalid_argument(f"{where}: record {start + i} has no feature {name}")
        if kind is not None and found != kind:
            raise invalid_argument(f"{where}: feature {name} is a {found} in record {start + i}"
                                   f" but a {kind} in record {start}")
        kind = found
        value = getattr(features[name], found).value
        if len(value) != 1:
            raise invalid_argument(f"{where}: feature {name} of record {start + i} holds "
                                   f"{len(value)} values; a key is one value")
        values.append(value[0])
    out = np.empty(len(values), dtype=_KEY_DTYPES[kind or "bytes_list"])
    out[:] = values
    return out


def _file_rows(path: str, fmt: str) -> int:
    """How many rows a file holds (metadata only where the format has it)."""
    if fmt == "npy":
        return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as arrays:
            lengths = {name: int(arrays[name].shape[0]) if arrays[name].ndim else -1
                       for name in arrays.files}
        counts = set(lengths.values())
        if len(counts) != 1 or -1 in counts:
            raise invalid_argument(f"{path}: the arrays must all have the same number of rows "
                                   f"(scalars have none); they have {lengths}")
        return counts.pop()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if fmt == "tfrecord":
        return _count_records(path)
    return len(_read_csv(path))


def _read_csv(path: str) -> Any:
    import pyarrow.csv as pv

    return pv.read_csv(path)


def _parquet_rows(path: str, start: int, stop: int) -> Any:
    """Rows ``[start, stop)`` of a Parquet file, reading only the row groups that hold them."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    groups: list[int] = []
    first_row = offset = 0
    for i in range(parquet.metadata.num_row_groups):
        n = parquet.metadata.row_group(i).num_rows
        if offset < stop and offset + n > start:
            if not groups:
                first_row = offset
            groups.append(i)
        offset += n
    table = parquet.read_row_groups(groups)
    return table.slice(start - first_row, stop - start)


def _vectors(array: Any, name: str, path: str) -> np.ndarray:
    """A list column whose rows are vectors of one length as [rows, length], in the values'
    own dtype (INVALID_ARGUMENT for missing values, ragged or nested lists)."""
    import pyarrow as pa

    if array.null_count:
        raise invalid_argument(f"{path}: column {name} has missing values")
    rows = len(array)
    if pa.types.is_fixed_size_list(array.type):
        width = array.type.list_size
    else:
        lengths = set(np.diff(np.asarray(array.offsets)).tolist())
        if len(lengths) > 1:
            raise invalid_argument(f"{path}: column {name} holds lists of different lengths")
        width = lengths.pop() if lengths else 0
    values = array.flatten()
    if pa.types.is_nested(values.type) or values.null_count:
        raise invalid_argument(f"{path}: column {name} holds nested lists or missing values")
    return np.asarray(values.to_numpy(zero_copy_only=False)).reshape(rows, width)


def _table_columns(table: Any, path: str) -> Columns:
    """A pyarrow table's columns as numpy arrays: numbers as they are, strings as ``object``
    arrays of ``bytes``, fixed-length list columns (a row's vector) stacked to [rows, n]."""
    import pyarrow as pa

    out: Columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) \
                or pa.types.is_fixed_size_list(kind):
            out[name] = _vectors(column.combine_chunks(), name, path)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) \
                or pa.types.is_binary(kind):
            values = column.to_pylist()
            array = np.empty(len(values), dtype=object)
            array[:] = [v.encode("utf-8") if isinstance(v, str) else v for v in values]
            out[name] = array
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


@dataclass(frozen=True)
class Source:
    """A listed data set: its files' format, its shards, the column an ``.npy`` file's array
    is named, and the features of a TFRecord file's records read as key columns."""

    format: str
    shards: tuple[Shard, ...]
    npy_column: str = "x"
    keys: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def where(self, shard: Shard) -> str:
        """The shard as errors name it: its file and rows (records, for TFRecord)."""
        unit = "records" if self.format == "tfrecord" else "rows"
        return f"{shard.path} {unit} {shard.start}-{shard.stop}"

    def read(self, shard: Shard) -> Columns:
        """The shard's rows, by column: a TFRecord shard's records under
        :data:`EXAMPLES_COLUMN` and its key features (INVALID_ARGUMENT naming the file and the
        record that is not a tf.Example or lacks one as a single value). DATA_LOSS naming the
        file and rows when it cannot be read (a file changed or truncated since it was
        listed, a corrupt record)."""
        try:
            return self._read(shard)
        except ServingError:
            raise
        except Exception as exc:  # numpy's, pyarrow's and TensorFlow's many error types
            raise ServingError(Code.DATA_LOSS, f"Cannot read rows {shard.start}-{shard.stop} of "
                               f"{shard.path}: {type(exc).__name__}: {exc}") from None

    def _read(self, shard: Shard) -> Columns:
        rows = slice(shard.start, shard.stop)
        if self.format == "tfrecord":
            where = self.where(shard)
            records = _read_records(shard.path, shard.start, shard.stop, where)
            examples = _parse_examples(records, shard.start, where)
            return {EXAMPLES_COLUMN: records,
                    **{name: _key_column(examples, name, shard.start, where)
                       for name in self.keys}}
        if self.format == "npy":
            array = np.load(shard.path, mmap_mode="r", allow_pickle=False)
            return {self.npy_column: np.array(array[rows])}
        if self.format == "npz":
            with np.load(shard.path, allow_pickle=False) as arrays:
                return {name: np.array(arrays[name][rows]) for name in arrays.files}
        if self.format == "parquet":
            return _table_columns(_parquet_rows(shard.path, shard.start, shard.stop),
                                  shard.path)
        table = _read_csv(shard.path).slice(shard.start, shard.rows)
        return _table_columns(table, shard.path)


def open_source(paths: str | Sequence[str], roots: Sequence[str], *,
                rows_per_shard: int = DEFAULT_ROWS_PER_SHARD, npy_column: str = "x",
                keys: Sequence[str] = ()) -> Source:
    """List the data set ``paths`` (files, directories, globs) inside ``roots`` and cut it
    into shards of at most ``rows_per_shard`` rows (a shard never spans two files). All files
    must have one format. ``keys``: the features a TFRecord file's records are read with as
    columns (ignored for the other formats, whose every column is read). Raises ServingError:
    PERMISSION_DENIED outside the roots, NOT_FOUND for nothing matching, INVALID_ARGUMENT for
    an unknown or mixed format, a malformed file or the key :data:`EXAMPLES_COLUMN`.
    Blocking."""
    if rows_per_shard <= 0:
        raise invalid_argument(f"rows_per_shard must be positive; was {rows_per_shard}")
    if EXAMPLES_COLUMN in keys:
        raise invalid_argument(f"{EXAMPLES_COLUMN} is not a key: it names a TFRecord file's "
                               "records")
    for entry in [paths] if isinstance(paths, str) else paths:
        confine(_fixed_part(entry), roots)  # before listing: nothing is looked at outside
    files = [confine(p, roots) for p in _expand(paths)]
    formats = {format_of(f) for f in files}
    if len(formats) != 1:
        raise invalid_argument(f"A data set has one format; these files have {sorted(formats)}")
    (fmt,) = formats
    shards: list[Shard] = []
    for path in files:
        try:
            rows = _file_rows(path, fmt)
        except ServingError:
            raise
        except Exception as exc:
            raise invalid_argument(f"Cannot read {path}: {type(exc).__name__}: {exc}") from None
        for start in range(0, rows, rows_per_shard):
            shards.append(Shard(len(shards), path, start, min(rows, start + rows_per_shard)))
    return Source(fmt, tuple(shards), npy_column, tuple(keys))


def select_inputs(columns: Columns, inputs: Iterable[str], where: str) -> Columns:
    """The columns a signature's ``inputs`` name (INVALID_ARGUMENT naming ``where`` (the
    file, and the rows) and the missing ones); the other columns are the caller's keys to
    carry through."""
    wanted = list(inputs)
    missing = [name for name in wanted if name not in columns]
    if missing:
        raise invalid_argument(f"{where}: no column {', '.join(missing)} (the signature's "
                               f"inputs: {', '.join(wanted)}; the data's: "
                               f"{', '.join(columns)})")
    return {name: columns[name] for name in wanted}
