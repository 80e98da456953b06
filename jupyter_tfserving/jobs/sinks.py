"""What a bulk job writes: one output file per shard, whole or not at all, and a manifest.

Each shard's results (the input's key columns it carries through, then one column per output)
are written to ``<output dir>/part-<index>.<ext>`` through a temporary name in the same
directory and renamed when complete, so a cancelled or crashed job leaves only complete shards.
After each shard the manifest (``manifest.json``: the job's source, signature and, per
completed shard, its file and rows) is rewritten the same way; :func:`completed_shards` reads it
back so that a resumed job skips what is done. Formats: Parquet (``pyarrow``) and ``.npz``.

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

OUTPUT_FORMATS = {"parquet": ".parquet", "npz": ".npz"}
MANIFEST = "manifest.json"


def shard_file(directory: str, index: int, fmt: str) -> str:
    """Where shard ``index``'s results go."""
    return os.path.join(directory, f"part-{index:05d}{OUTPUT_FORMATS[fmt]}")


def _write_atomically(path: str, write: Callable[[str], None]) -> None:
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


def write_shard(path: str, columns: Mapping[str, np.ndarray], fmt: str) -> int:
    """Write ``columns`` (all with the same number of rows) to ``path`` in ``fmt``, whole or
    not at all; the number of rows. Rows of more than one dimension are flattened in Parquet
    (their shape is in the npz form)."""
    if fmt not in OUTPUT_FORMATS:
        raise invalid_argument(f"Unknown output format {fmt!r} (one of "
                               f"{', '.join(sorted(OUTPUT_FORMATS))})")
    lengths = {int(np.shape(v)[0]) for v in columns.values()}
    if len(lengths) != 1:
        raise invalid_argument(f"The columns of {path} have different row counts: {lengths}")
    (rows,) = lengths

    def write(tmp: str) -> None:
        if fmt == "npz":
            arrays: dict[str, Any] = {name: np.asarray(v) for name, v in columns.items()}
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({name: _parquet_column(np.asarray(v)) for name, v in columns.items()})
        pq.write_table(table, tmp)

    _write_atomically(path, write)
    return rows


def write_manifest(directory: str, manifest: Mapping[str, Any]) -> None:
    """Replace ``<directory>/manifest.json`` with ``manifest`` (JSON), atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)

    _write_atomically(os.path.join(directory, MANIFEST), write)


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
