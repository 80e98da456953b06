"""What a bulk job reads: a data set cut into shards of rows, each read as named columns.

A source is one file or many (a directory, a glob, a list), of one format: ``.npy`` (one
array: its column is named by the caller), ``.npz`` (named arrays), Parquet and CSV (read with
``pyarrow``). Every path must lie inside one of the allowed roots (the server's ``root_dir``
and the repository), after symlinks are resolved: anything else is PERMISSION_DENIED, as every
path the server is given. Arrays are loaded without pickle (``allow_pickle=False``): nothing
from a data set is ever unpickled.

:func:`open_source` lists the shards (cheap: file metadata only) in a fixed order, so a
resumed job finds the same shards; :meth:`Source.read` reads one shard's rows. Called on worker
threads (never the event loop): reading is blocking file I/O. ``pyarrow`` is imported where a
Parquet or CSV file is read.
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
           ".csv": "csv"}
DEFAULT_ROWS_PER_SHARD = 65_536

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
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise invalid_argument(f"Cannot read {path}: the extension {ext or '(none)'} is not one "
                               f"of {', '.join(sorted(FORMATS))}")
    return FORMATS[ext]


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
    """A listed data set: its files' format, its shards, and the column an ``.npy`` file's
    array is named."""

    format: str
    shards: tuple[Shard, ...]
    npy_column: str = "x"

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def read(self, shard: Shard) -> Columns:
        """The shard's rows, by column. DATA_LOSS naming the file and rows when it cannot be
        read (a file changed or truncated since it was listed)."""
        try:
            return self._read(shard)
        except ServingError:
            raise
        except Exception as exc:  # numpy's and pyarrow's many error types
            raise ServingError(Code.DATA_LOSS, f"Cannot read rows {shard.start}-{shard.stop} of "
                               f"{shard.path}: {type(exc).__name__}: {exc}") from None

    def _read(self, shard: Shard) -> Columns:
        rows = slice(shard.start, shard.stop)
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
                rows_per_shard: int = DEFAULT_ROWS_PER_SHARD, npy_column: str = "x") -> Source:
    """List the data set ``paths`` (files, directories, globs) inside ``roots`` and cut it
    into shards of at most ``rows_per_shard`` rows (a shard never spans two files). All files
    must have one format. Raises ServingError: PERMISSION_DENIED outside the roots, NOT_FOUND
    for nothing matching, INVALID_ARGUMENT for an unknown or mixed format or a malformed file.
    Blocking."""
    if rows_per_shard <= 0:
        raise invalid_argument(f"rows_per_shard must be positive; was {rows_per_shard}")
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
    return Source(fmt, tuple(shards), npy_column)


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
