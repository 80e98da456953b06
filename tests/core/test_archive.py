"""core.archive: version directories packed by the kernel and unpacked, distrustfully, by the
server."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_tfserving.core.archive import pack_directory, unpack_version_archive
from jupyter_tfserving.core.status import Code, ServingError


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]], *, gz: bool = True) -> bytes:
    """An archive of hand-made members (data None: a member without a body)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _file(name: str, data: bytes = b"data") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o777
    return info, None


def _special(name: str, type_: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    return info, None


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` -> file contents (None for directories)."""
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel] = None if path.is_dir() else path.read_bytes()
    return out


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "staging" / "dest"
    d.mkdir(parents=True)
    return d


@pytest.fixture
def restrictive_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _refused(data: bytes, dest: Path, **kwargs: int) -> ServingError:
    with pytest.raises(ServingError) as info:
        unpack_version_archive(data, str(dest), **kwargs)
    assert info.value.code == Code.INVALID_ARGUMENT
    return info.value


def _assert_nothing_written(tmp_path: Path, dest: Path) -> None:
    """dest is still empty and nothing appeared beside it or above it."""
    assert list(dest.iterdir()) == []
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "staging",
        "staging/dest",
    ]


# --- round trips ----------------------------------------------------------------------------------


def _make_version(src: Path) -> None:
    (src / "variables").mkdir(parents=True)
    (src / "assets").mkdir()  # empty directories survive the trip
    (src / "saved_model.pb").write_bytes(bytes(range(256)) * 10)
    (src / "variables" / "variables.index").write_bytes(b"index")
    (src / "variables" / "deep" / "er").mkdir(parents=True)
    (src / "variables" / "deep" / "er" / "file.txt").write_text("nested\n")
    (src / "variables" / "empty").write_bytes(b"")
    os.chmod(src / "saved_model.pb", 0o600)
    os.chmod(src / "variables" / "variables.index", 0o777)


def test_round_trip_of_a_nested_directory(tmp_path: Path, dest: Path) -> None:
    src = tmp_path / "src"
    _make_version(src)

    data = pack_directory(str(src))
    unpack_version_archive(data, str(dest))

    assert _tree(dest) == _tree(src)
    assert _tree(dest)["assets"] is None


def test_unpacked_modes_are_fixed_whatever_the_archive_or_umask_says(
    tmp_path: Path, dest: Path, restrictive_umask: None
) -> None:
    data = _tar([_dir("d"), (_set_mode(_file("d/f"), 0o4777)), _file("g/h")])

    unpack_version_archive(data, str(dest))

    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "g").stat().st_mode) == 0o755  # implied parent
    assert stat.S_IMODE((dest / "d" / "f").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "g" / "h").stat().st_mode) == 0o644


def _set_mode(member: tuple[tarfile.TarInfo, bytes], mode: int) -> tuple[tarfile.TarInfo, bytes]:
    member[0].mode = mode
    return member


def test_pack_names_members_relative_to_src_in_sorted_order(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _make_version(src)

    with tarfile.open(fileobj=io.BytesIO(pack_directory(str(src))), mode="r:gz") as tar:
        members = tar.getmembers()

    names = [m.name for m in members]
    assert names == [
        "assets",
        "saved_model.pb",
        "variables",
        "variables/deep",
        "variables/deep/er",
        "variables/deep/er/file.txt",
        "variables/empty",
        "variables/variables.index",
    ]
    assert all(m.isdir() or m.isreg() for m in members)
    assert {m.mode for m in members if m.isreg()} == {0o644}
    assert all(m.uid == 0 and m.uname == "" for m in members)


def test_pack_is_deterministic(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _make_version(src)
    assert pack_directory(str(src)) == pack_directory(str(src))


def test_pack_refuses_a_symlink_inside_src(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "outside").write_text("secret")
    (src / "sub").mkdir()
    (src / "sub" / "link").symlink_to(tmp_path / "outside")

    with pytest.raises(ServingError) as info:
        pack_directory(str(src))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "sub/link" in info.value.message
    assert "symbolic link" in info.value.message


def test_pack_refuses_a_fifo_inside_src(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe")
    with pytest.raises(ServingError) as info:
        pack_directory(str(src))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "pipe" in info.value.message


def test_pack_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as info:
        pack_directory(str(tmp_path / "nope"))
    assert info.value.code == Code.INVALID_ARGUMENT


def test_plain_tar_and_leading_dot_slash_are_accepted(dest: Path) -> None:
    data = _tar([_dir("."), _dir("./a"), _file("./a/b", b"hello"), _file("./c", b"")], gz=False)

    unpack_version_archive(data, str(dest))

    assert _tree(dest) == {"a": None, "a/b": b"hello", "c": b""}


def test_reads_from_a_seekable_file_object(dest: Path) -> None:
    unpack_version_archive(io.BytesIO(_tar([_file("x", b"1")])), str(dest))
    assert _tree(dest) == {"x": b"1"}


class _Pipe(io.RawIOBase):
    """A non-seekable byte stream, like a socket or a request body reader."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(b), 1000))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_reads_from_a_non_seekable_stream(dest: Path) -> None:
    pipe: Any = _Pipe(_tar([_file("a/x", b"1" * 5000)]))
    unpack_version_archive(pipe, str(dest))
    assert _tree(dest) == {"a": None, "a/x": b"1" * 5000}


def test_limits_are_inclusive(dest: Path) -> None:
    data = _tar([_file("a", b"12345"), _file("b", b"67890"), _dir("c")])
    unpack_version_archive(data, str(dest), max_bytes=10, max_members=3)
    assert _tree(dest) == {"a": b"12345", "b": b"67890", "c": None}


def test_destination_must_be_an_empty_directory(tmp_path: Path, dest: Path) -> None:
    (dest / "already").write_text("here")
    with pytest.raises(ServingError) as info:
        unpack_version_archive(_tar([_file("x")]), str(dest))
    assert info.value.code == Code.FAILED_PRECONDITION
    with pytest.raises(ServingError):
        unpack_version_archive(_tar([_file("x")]), str(tmp_path / "missing"))
    assert not (dest / "x").exists()


def test_a_python_without_extraction_filters_fails_at_unpack_time(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(tarfile, "data_filter")  # as on Python < 3.10.12 / 3.11.4
    with pytest.raises(ServingError) as info:
        unpack_version_archive(_tar([_file("x")]), str(dest))
    assert info.value.code == Code.UNIMPLEMENTED
    assert "3.11.4" in info.value.message
    assert list(dest.iterdir()) == []


# --- hostile archives -----------------------------------------------------------------------------


def test_absolute_path_is_refused(tmp_path: Path, dest: Path) -> None:
    target = tmp_path / "pwned"
    err = _refused(_tar([_file("ok"), _file(str(target))]), dest)
    assert str(target) in err.message
    assert "absolute" in err.message
    assert not target.exists()
    _assert_nothing_written(tmp_path, dest)


@pytest.mark.parametrize("name", ["../x", "a/../../x", "a/../b", "./../staging/x", "a/b/.."])
def test_dot_dot_components_are_refused(tmp_path: Path, dest: Path, name: str) -> None:
    err = _refused(_tar([_file("first"), _file(name)]), dest)
    assert repr(name) in err.message
    assert "'..'" in err.message
    _assert_nothing_written(tmp_path, dest)


def test_dot_dot_directory_member_is_refused(tmp_path: Path, dest: Path) -> None:
    err = _refused(_tar([_dir("../up")]), dest)
    assert "../up" in err.message
    _assert_nothing_written(tmp_path, dest)


@pytest.mark.parametrize(
    "member, what",
    [
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (_special("link", tarfile.SYMTYPE, "inside"), "symbolic link"),
        (_special("hard", tarfile.LNKTYPE, "first"), "hard link"),
        # Refused by tarfile's data filter, which names them all "special file".
        (_special("pipe", tarfile.FIFOTYPE), "special file"),
        (_special("tty", tarfile.CHRTYPE), "special file"),
        (_special("disk", tarfile.BLKTYPE), "special file"),
        (_special("odd", b"Z"), "special file"),
    ],
    ids=["symlink-out", "symlink-in", "hardlink", "fifo", "chardev", "blockdev", "unknown-type"],
)
def test_non_regular_members_are_refused(
    tmp_path: Path, dest: Path, member: tuple[tarfile.TarInfo, None], what: str
) -> None:
    err = _refused(_tar([_file("first"), member]), dest)
    assert repr(member[0].name) in err.message
    assert what in err.message
    _assert_nothing_written(tmp_path, dest)


def test_a_symlink_used_as_a_directory_is_refused(tmp_path: Path, dest: Path) -> None:
    # The classic escape: a link to the outside, then a file "through" it.
    data = _tar([_special("esc", tarfile.SYMTYPE, str(tmp_path)), _file("esc/pwned")])
    _refused(data, dest)
    assert not (tmp_path / "pwned").exists()
    _assert_nothing_written(tmp_path, dest)


def test_too_many_members_is_refused(tmp_path: Path, dest: Path) -> None:
    data = _tar([_file(f"f{i}") for i in range(4)])
    err = _refused(data, dest, max_members=3)
    assert "more than 3 members" in err.message
    _assert_nothing_written(tmp_path, dest)


def test_too_large_is_refused(tmp_path: Path, dest: Path) -> None:
    data = _tar([_file("a", b"12345"), _file("b", b"678901")])
    err = _refused(data, dest, max_bytes=10)
    assert "larger than 10 bytes" in err.message
    assert "'b'" in err.message
    _assert_nothing_written(tmp_path, dest)


def test_too_large_non_seekable_stream_is_refused_while_spooling(dest: Path) -> None:
    data = _tar([_file("a", os.urandom(20_000))])  # random: gzip cannot shrink it
    with pytest.raises(ServingError) as info:
        pipe: Any = _Pipe(data)
        unpack_version_archive(pipe, str(dest), max_bytes=10, max_members=1)
    assert info.value.code == Code.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "members",
    [
        [_file("a"), _file("a")],
        [_file("a"), _file("a/b")],
        [_file("a/b"), _file("a")],
        [_file("a"), _dir("a")],
    ],
    ids=["duplicate-file", "file-then-child", "child-then-file", "file-then-dir"],
)
def test_conflicting_names_are_refused(
    tmp_path: Path, dest: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]
) -> None:
    _refused(_tar(members), dest)
    _assert_nothing_written(tmp_path, dest)


@pytest.mark.parametrize(
    "data",
    [b"", b"this is not a tar archive at all" * 100, gzip.compress(b"not a tar either" * 100)],
    ids=["empty", "garbage", "gzipped-garbage"],
)
def test_not_an_archive_is_refused(tmp_path: Path, dest: Path, data: bytes) -> None:
    err = _refused(data, dest)
    assert err.message.startswith("Not a valid tar archive: ")
    _assert_nothing_written(tmp_path, dest)


def test_truncated_gzip_is_refused(tmp_path: Path, dest: Path) -> None:
    data = _tar([_file("a", os.urandom(50_000)), _file("b", os.urandom(50_000))])
    err = _refused(data[: len(data) // 2], dest)
    assert err.message.startswith("Not a valid tar archive: ")
    assert not (tmp_path / "b").exists()


def test_truncated_plain_tar_is_refused(tmp_path: Path, dest: Path) -> None:
    data = _tar([_file("a", b"x" * 5000)], gz=False)
    err = _refused(data[:3000], dest)
    assert err.message.startswith("Not a valid tar archive: ")
