"""A bulk job's data side: sources listed into shards in a fixed order and read back exactly
(npy, npz, Parquet with row groups and vector columns, CSV), paths confined to the allowed
roots, malformed files refused naming them; shard files written whole or not at all, and the
manifest a resumed job reads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from jupyter_tfserving.core.status import Code, ServingError
from jupyter_tfserving.jobs.sinks import (
    completed_shards,
    read_manifest,
    shard_file,
    write_manifest,
    write_shard,
)
from jupyter_tfserving.jobs.sources import confine, format_of, open_source, select_inputs


def _all_rows(source) -> dict[str, np.ndarray]:
    parts = [source.read(s) for s in source.shards]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_npy_and_npz_shards_read_back_exactly(tmp_path: Path) -> None:
    x = np.arange(50, dtype=np.float32).reshape(25, 2)
    np.save(tmp_path / "a.npy", x[:10])
    np.save(tmp_path / "b.npy", x[10:])
    source = open_source(str(tmp_path / "*.npy"), [str(tmp_path)], rows_per_shard=4,
                         npy_column="x")
    assert source.format == "npy" and source.rows == 25
    assert [(os.path.basename(s.path), s.start, s.stop) for s in source.shards][:4] == [
        ("a.npy", 0, 4), ("a.npy", 4, 8), ("a.npy", 8, 10), ("b.npy", 0, 4)]
    assert [s.index for s in source.shards] == list(range(len(source.shards)))
    assert np.array_equal(_all_rows(source)["x"], x)
    np.savez(tmp_path / "d.npz", x=x, id=np.arange(25))
    npz = open_source(str(tmp_path / "d.npz"), [str(tmp_path)], rows_per_shard=10)
    rows = _all_rows(npz)
    assert np.array_equal(rows["x"], x) and rows["id"].tolist() == list(range(25))


def test_parquet_row_groups_vectors_strings_and_csv(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.random.default_rng(0).random((30, 3)).astype(np.float32)
    table = pa.table({
        "x": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 3),
        "key": pa.array([f"row{i}" for i in range(30)]),
        "n": pa.array(np.arange(30, dtype=np.int64)),
    })
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=7)
    source = open_source(str(tmp_path), [str(tmp_path)], rows_per_shard=9)
    assert source.format == "parquet" and [s.rows for s in source.shards] == [9, 9, 9, 3]
    rows = _all_rows(source)
    assert rows["x"].dtype == np.float32 and np.array_equal(rows["x"], vectors)
    assert rows["key"][:2].tolist() == [b"row0", b"row1"] and rows["n"].tolist() == list(
        range(30))
    ragged = tmp_path / "r"
    ragged.mkdir()
    pq.write_table(pa.table({"x": pa.array([[1.0, 2.0], [3.0]])}), ragged / "r.parquet")
    with pytest.raises(ServingError, match="column x holds lists of different lengths"):
        _all_rows(open_source(str(ragged), [str(tmp_path)]))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "d.csv").write_text("x,y\n1.5,a\n2.5,b\n3.5,c\n")
    csv = open_source(str(tmp_path / "c"), [str(tmp_path)], rows_per_shard=2)
    got = _all_rows(csv)
    assert got["x"].tolist() == [1.5, 2.5, 3.5] and got["y"].tolist() == [b"a", b"b", b"c"]
    assert select_inputs(got, ["x"], "d.csv").keys() == {"x"}
    with pytest.raises(ServingError, match="d.csv: no column z"):
        select_inputs(got, ["x", "z"], "d.csv")


def test_paths_are_confined_and_bad_files_named(tmp_path: Path) -> None:
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir()
    outside.mkdir()
    np.save(outside / "x.npy", np.zeros(3))
    os.symlink(outside / "x.npy", inside / "link.npy")
    for path in (str(outside / "x.npy"), str(inside / "link.npy"),
                 str(inside / ".." / "out" / "x.npy")):
        with pytest.raises(ServingError) as refused:
            open_source(path, [str(inside)])
        assert refused.value.code == Code.PERMISSION_DENIED
    assert confine(str(inside), [str(inside)]) == os.path.realpath(inside)
    with pytest.raises(ServingError) as missing:
        open_source(str(inside / "*.npy.nope"), [str(inside)])
    assert missing.value.code == Code.NOT_FOUND
    (inside / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ServingError, match="bad.npy") as bad:
        open_source(str(inside / "bad.npy"), [str(inside)])
    assert bad.value.code == Code.INVALID_ARGUMENT
    np.save(inside / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ServingError, match="objects.npy"):  # never unpickled
        open_source(str(inside / "objects.npy"), [str(inside)])
    np.savez(inside / "ragged.npz", a=np.zeros(3), b=np.zeros(4))
    with pytest.raises(ServingError, match="same number of rows"):
        open_source(str(inside / "ragged.npz"), [str(inside)])
    (inside / "x.txt").write_text("1")
    with pytest.raises(ServingError, match="extension .txt"):
        open_source(str(inside / "x.txt"), [str(inside)])
    # A file cut short after it was listed: DATA_LOSS naming the file and the rows.
    np.save(inside / "cut.npy", np.zeros((100, 4), np.float32))
    source = open_source(str(inside / "cut.npy"), [str(inside)], rows_per_shard=50)
    with open(inside / "cut.npy", "r+b") as f:
        f.truncate(500)
    with pytest.raises(ServingError, match="rows 50-100 of .*cut.npy") as lost:
        source.read(source.shards[1])
    assert lost.value.code == Code.DATA_LOSS


@pytest.mark.parametrize("fmt", ["parquet", "npz"])
def test_shards_are_written_whole_and_the_manifest_says_which(tmp_path: Path, fmt: str) -> None:
    columns = {"id": np.arange(4), "y": np.arange(8, dtype=np.float32).reshape(4, 2),
               "key": np.array([b"a", b"b", b"c", b"d"], dtype=object)}
    path = shard_file(str(tmp_path), 3, fmt)
    assert write_shard(path, columns, fmt) == 4
    assert os.listdir(tmp_path) == [os.path.basename(path)]  # no temporary file left
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as back:  # strings are bytes, not pickles
            assert np.array_equal(back["y"], columns["y"])
            assert back["key"].tolist() == [b"a", b"b", b"c", b"d"]
    else:
        import pyarrow.parquet as pq

        back = pq.read_table(path).to_pydict()
        assert back["y"] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]
        assert back["key"] == [b"a", b"b", b"c", b"d"]
    with pytest.raises(ServingError, match="different row counts"):
        write_shard(shard_file(str(tmp_path), 4, fmt), {"a": np.zeros(2), "b": np.zeros(3)},
                    fmt)
    assert not os.path.exists(shard_file(str(tmp_path), 4, fmt))
    assert read_manifest(str(tmp_path)) is None
    write_manifest(str(tmp_path), {"shards": {"3": {"file": os.path.basename(path), "rows": 4},
                                              "5": {"file": "part-00005.x", "rows": 9},
                                              "6": {"file": "../escape", "rows": 1}}})
    # Shard 5's file is gone and shard 6 names a path outside: both are done again.
    assert completed_shards(str(tmp_path), read_manifest(str(tmp_path))) == {3: 4}
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(ServingError, match="manifest.json"):
        read_manifest(str(tmp_path))


def test_a_full_disk_is_resource_exhausted_and_leaves_nothing(tmp_path: Path,
                                                             monkeypatch) -> None:
    import errno

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", no_space)
    path = shard_file(str(tmp_path), 0, "npz")
    with pytest.raises(ServingError) as full:
        write_shard(path, {"y": np.zeros(2)}, "npz")
    assert full.value.code == Code.RESOURCE_EXHAUSTED and "part-00000.npz" in full.value.message
    assert os.listdir(tmp_path) == []


def test_formats_by_extension() -> None:
    """TFRecord files (GZIP ones by ``.gz`` after the extension) are one format; a
    PredictionLog shard is not a table (:func:`write_prediction_log` writes it: see
    test_tfrecord.py)."""
    assert [format_of(p) for p in ("a.tfrecord", "b.TFRecords", "c.tfrecord.gz",
                                   "d.tfrecords.GZ", "e.npz", "f.pq")] == [
        "tfrecord", "tfrecord", "tfrecord", "tfrecord", "npz", "parquet"]
    with pytest.raises(ServingError, match=r"extension .gz is not one of .*\.tfrecord\.gz"):
        format_of("g.csv.gz")
    assert shard_file("/o", 7, "prediction_log") == "/o/part-00007.tfrecord"
    with pytest.raises(ServingError, match="Unknown table format 'prediction_log'"):
        write_shard("/o/part-00007.tfrecord", {"y": np.zeros(2)}, "prediction_log")
