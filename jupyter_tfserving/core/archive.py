"""Version archives: how a version directory travels from a kernel to the server (DESIGN §2).

The kernel client packs a version directory with :func:`pack_directory`; the server's upload
path (``ControlPlane.publish_version``) unpacks the uploaded bytes with
:func:`unpack_version_archive` into an empty staging directory, then renames it into place
(publishing stays atomic).

Unpacking trusts nothing in the archive. Every header is checked before anything is written, by
tarfile's ``data`` extraction filter (PEP 706: devices, FIFOs, unknown types, paths that resolve
outside the destination) and by hand for what the filter allows: links of any kind, absolute
names (it strips the ``/``), ``..`` (it allows one that stays inside), duplicate or
file/directory-conflicting names, and archive bombs (member count, unpacked size). tarfile then
extracts under the same filter, with modes fixed to 0o644/0o755 and owners and times dropped.
Needs extraction filters (Python 3.10.12+, 3.11.4+); without them unpacking, not importing, fails.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from typing import BinaryIO

from .status import Code, ServingError

__all__ = ["pack_directory", "unpack_version_archive"]

FILE_MODE = 0o644
DIR_MODE = 0o755

_CHUNK = 1 << 20
# Tar overhead per member, upper bound: a header block, a pax/GNU long-name header with its data
# block, and up to a block of padding. Used only to bound the spooling of a non-seekable input.
_MEMBER_OVERHEAD = 4 * tarfile.BLOCKSIZE
# Non-seekable input is spooled to a temporary file once it is larger than this.
_SPOOL_IN_MEMORY = 64 << 20

# tarfile raises these (and OSError subclasses such as gzip.BadGzipFile) for a stream that is not
# a tar archive or that ends early.
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)

_Filter = Callable[[tarfile.TarInfo, str], tarfile.TarInfo]


def _refuse(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def _not_a_tar(e: object) -> ServingError:
    return _refuse(f"Not a valid tar archive: {e}")


def _filter_refusal(e: tarfile.FilterError) -> ServingError:
    hint = isinstance(e, tarfile.SpecialFileError)
    return _refuse(f"Archive member refused: {e}" + (" (not a file or directory)" if hint else ""))


def _member_parts(member: tarfile.TarInfo) -> tuple[str, ...]:
    """The member's path below the destination as components ('.' and empty ones dropped).

    Raises INVALID_ARGUMENT for a name that is absolute, has a ``..`` component or a NUL byte.
    ``()`` is the destination itself (``./`` in archives made with ``tar -C dir .``).
    """
    name = member.name
    if "\x00" in name:
        raise _refuse(f"Archive member {name!r} has a NUL byte in its name")
    if name.startswith("/"):
        raise _refuse(f"Archive member {name!r} has an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _refuse(f"Archive member {name!r} has a '..' path component")
    return parts


def _spool(stream: BinaryIO, limit: int) -> BinaryIO:
    """Copy a non-seekable stream to a seekable temporary file (tarfile's ``r:*`` seeks),
    refusing input longer than ``limit`` bytes."""
    # Returned open: the caller owns and closes it.
    spooled = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
    total = 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            spooled.close()
            raise _refuse(f"Archive is larger than {limit} bytes")
        spooled.write(chunk)
    spooled.seek(0)
    return spooled  # type: ignore[return-value]


def _data_filter() -> _Filter:
    """tarfile's ``data`` filter, looked up at unpack time (an old Python still imports us)."""
    data_filter: _Filter | None = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        raise ServingError(
            Code.UNIMPLEMENTED,
            "Publishing needs tarfile extraction filters (PEP 706: Python 3.10.12+, 3.11.4+ or "
            "3.12+); this server runs an older Python",
        )
    return data_filter


def _fixed_modes(data_filter: _Filter) -> _Filter:
    """The extraction filter: the library's ``data`` filter, then fixed modes and no times."""

    def extraction_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        member = data_filter(member, dest)
        mode = DIR_MODE if member.isdir() else FILE_MODE
        return member.replace(mode=mode, mtime=None, deep=False)  # type: ignore[arg-type]

    return extraction_filter


def _check_members(
    tar: tarfile.TarFile, root: str, data_filter: _Filter, max_bytes: int, max_members: int
) -> list[tarfile.TarInfo]:
    """Read every header and check every member; nothing is written. Returns what to extract, in
    archive order, with a directory member added for each implied parent (tarfile would create
    those with the umask's mode)."""
    checked: list[tarfile.TarInfo] = []
    # path components -> "file" | "dir", implied parent directories included.
    kinds: dict[tuple[str, ...], str] = {}
    count = 0
    total = 0
    while True:
        try:
            member = tar.next()
        except _READ_ERRORS as e:
            raise _not_a_tar(e) from None
        if member is None:
            break
        count += 1
        if count > max_members:
            raise _refuse(f"Archive has more than {max_members} members")
        if member.issym() or member.islnk():
            raise _refuse(
                f"Archive member {member.name!r} is a {'symbolic' if member.issym() else 'hard'} "
                f"link (to {member.linkname!r}); only regular files and directories are allowed"
            )
        parts = _member_parts(member)
        try:
            data_filter(member, root)  # the library's verdict, before anything is written
        except tarfile.FilterError as e:
            raise _filter_refusal(e) from None
        if not (member.isreg() or member.isdir()):  # the filter refuses these; never rely on it
            raise _refuse(f"Archive member {member.name!r} of type {member.type!r} is refused")
        if not parts:
            if member.isdir():
                continue
            raise _refuse(f"Archive member {member.name!r} is a file without a name")
        for i in range(1, len(parts)):
            kind = kinds.get(parts[:i])
            if kind == "file":
                raise _refuse(
                    f"Archive member {member.name!r} is inside {'/'.join(parts[:i])!r}, "
                    "which the archive has as a file"
                )
            if kind is None:
                kinds[parts[:i]] = "dir"
                implied = tarfile.TarInfo("/".join(parts[:i]))
                implied.type = tarfile.DIRTYPE
                checked.append(implied)
        previous = kinds.get(parts)
        if member.isreg():
            if previous is not None:
                raise _refuse(
                    f"Archive member {member.name!r} appears more than once "
                    "(or as both a file and a directory)"
                )
            kinds[parts] = "file"
            total += member.size
            if total > max_bytes:
                raise _refuse(
                    f"Archive is larger than {max_bytes} bytes uncompressed "
                    f"(reached at member {member.name!r})"
                )
        else:
            if previous == "file":
                raise _refuse(
                    f"Archive member {member.name!r} appears as both a file and a directory"
                )
            kinds[parts] = "dir"
        checked.append(member)
    return checked


def unpack_version_archive(
    data: bytes | BinaryIO,
    dest: str,
    *,
    max_bytes: int = 4 << 30,
    max_members: int = 100_000,
) -> None:
    """Unpack a tar archive (plain or gzip, autodetected) of one version directory into ``dest``.

    Called by the server's upload path, on a worker thread, with the uploaded bytes (or a binary
    file object positioned at the archive) and an existing, empty staging directory that nothing
    else writes to while this runs.

    Raises ``ServingError(INVALID_ARGUMENT)`` naming the offending member for: absolute names,
    ``..`` components, anything but regular files and directories (symlinks, hard links, devices,
    FIFOs, ...), names that escape ``dest`` (tarfile's data filter decides), duplicate or
    file/directory-conflicting names, more than ``max_members`` members, more than ``max_bytes``
    of file data, and ("Not a valid tar archive: ...") input that is not a tar archive or ends
    early. Every header is checked before the first file is written; data errors (a truncated
    last member) can still surface while writing. On any error ``dest`` may hold part of the
    archive: the caller deletes it. ``ServingError(UNIMPLEMENTED)`` if this Python's tarfile has
    no extraction filters; ``FAILED_PRECONDITION`` if ``dest`` is not an empty directory.

    Files are written with mode 0o644 and directories 0o755, whatever the archive or the umask
    says. Write failures of the file system (disk full) propagate as ``OSError``.
    """
    data_filter = _data_filter()
    if not os.path.isdir(dest):
        raise ServingError(
            Code.FAILED_PRECONDITION, f"Unpack destination {dest} is not a directory"
        )
    if os.listdir(dest):
        raise ServingError(Code.FAILED_PRECONDITION, f"Unpack destination {dest} is not empty")
    root = os.path.realpath(dest)

    owned: BinaryIO | None = None
    if isinstance(data, (bytes, bytearray, memoryview)):
        stream: BinaryIO = io.BytesIO(bytes(data))
    elif not data.seekable():
        limit = max_bytes + (max_members + 2) * _MEMBER_OVERHEAD
        stream = owned = _spool(data, limit)
    else:
        stream = data
    try:
        try:
            # errorlevel 2: a chmod that fails raises instead of leaving the archive's mode.
            # Not a `with`: only the open's errors are "not a tar"; `with tar:` follows.
            tar = tarfile.open(fileobj=stream, mode="r:*", errorlevel=2)  # noqa: SIM115
        except _READ_ERRORS as e:
            raise _not_a_tar(e) from None
        with tar:
            members = _check_members(tar, root, data_filter, max_bytes, max_members)
            extraction_filter = _fixed_modes(data_filter)
            for member in members:
                try:
                    tar.extract(member, root, filter=extraction_filter)
                except tarfile.FilterError as e:
                    raise _filter_refusal(e) from None
                except tarfile.ExtractError as e:  # a chmod failed: the file system's doing
                    raise OSError(f"Cannot unpack {member.name!r}: {e}") from e
                except (tarfile.TarError, EOFError, zlib.error) as e:
                    raise _not_a_tar(f"member {member.name!r}: {e}") from None
                except OSError as e:
                    if e.errno is None:  # decompressors (gzip.BadGzipFile, bz2) set no errno
                        raise _not_a_tar(f"member {member.name!r}: {e}") from None
                    if e.errno in (errno.ENAMETOOLONG, errno.EILSEQ):
                        raise _refuse(
                            f"Archive member {member.name!r} cannot be written: {e.strerror}"
                        ) from None
                    raise
    finally:
        if owned is not None:
            owned.close()


def _refuse_kind(rel: str, mode: int) -> ServingError:
    if stat.S_ISLNK(mode):
        return _refuse(f"Cannot pack {rel!r}: it is a symbolic link (copy the file it points to)")
    return _refuse(f"Cannot pack {rel!r}: only regular files and directories can be packed")


def pack_directory(src: str) -> bytes:
    """A gzip tar of the contents of ``src`` for :func:`unpack_version_archive`.

    Called by the kernel client to upload a version directory. Members are named relative to
    ``src`` (no leading directory, no ``./``), in sorted order, directories included (empty ones
    matter: a SavedModel's ``assets/``); modes are normalised to 0o644/0o755 and owners dropped.
    ``src`` itself may be reached through a symlink; anything inside it that is a symlink or not
    a regular file or directory is refused with ``ServingError(INVALID_ARGUMENT)``.
    """
    if not os.path.isdir(src):
        raise _refuse(f"Cannot pack {src}: not a directory")
    buf = io.BytesIO()
    # mtime=0: the same directory packs to the same bytes.
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        _pack_into(tar, src, "")
    return buf.getvalue()


def _pack_into(tar: tarfile.TarFile, directory: str, prefix: str) -> None:
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = prefix + entry.name
        st = entry.stat(follow_symlinks=False)
        info = tarfile.TarInfo(rel)
        info.mtime = int(st.st_mtime)
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            info.mode = DIR_MODE
            tar.addfile(info)
            _pack_into(tar, entry.path, rel + "/")
        elif stat.S_ISREG(st.st_mode):
            flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
            with os.fdopen(os.open(entry.path, flags), "rb") as f:
                info.type = tarfile.REGTYPE
                info.mode = FILE_MODE
                info.size = os.fstat(f.fileno()).st_size
                tar.addfile(info, f)
        else:
            raise _refuse_kind(rel, st.st_mode)
