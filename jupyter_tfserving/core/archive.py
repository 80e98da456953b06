"""Version archives: how a version directory travels from a kernel to the server (DESIGN §2).

The kernel client packs a version directory with :func:`pack_directory`; the server's upload path
unpacks the uploaded bytes with :func:`unpack_version_archive` into an empty staging directory on
the repository's file system, then renames it into place (publishing stays atomic).

Unpacking trusts nothing in the archive. Every member is checked before anything is written: only
regular files and directories, relative names without ``..``, nothing that lands outside the
destination, bounded member count and total size. Files are written by this module (never by
``tarfile.extractall``) with fixed modes; owners, times and archive modes are dropped.
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


def _refuse(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def _not_a_tar(e: BaseException) -> ServingError:
    return _refuse(f"Not a valid tar archive: {e}")


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


def _kind_refusal(member: tarfile.TarInfo) -> ServingError:
    name = member.name
    if member.issym():
        what = f"a symbolic link (to {member.linkname!r})"
    elif member.islnk():
        what = f"a hard link (to {member.linkname!r})"
    elif member.ischr():
        what = "a character device"
    elif member.isblk():
        what = "a block device"
    elif member.isfifo():
        what = "a FIFO"
    else:
        what = f"of unsupported type {member.type!r}"
    return _refuse(
        f"Archive member {name!r} is {what}; only regular files and directories are allowed"
    )


def _spool(stream: BinaryIO, limit: int) -> BinaryIO:
    """Copy a non-seekable stream to a seekable temporary file (tarfile's ``r:*`` seeks),
    refusing input longer than ``limit`` bytes."""
    spooled = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
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


def _check_members(
    tar: tarfile.TarFile, max_bytes: int, max_members: int
) -> list[tuple[tarfile.TarInfo, tuple[str, ...]]]:
    """Read every header and check every member; nothing is written. Returns the members to
    write with their path components, in archive order."""
    checked: list[tuple[tarfile.TarInfo, tuple[str, ...]]] = []
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
        if not (member.isreg() or member.isdir()):
            raise _kind_refusal(member)
        parts = _member_parts(member)
        if not parts:
            if member.isdir():
                continue
            raise _refuse(f"Archive member {member.name!r} is a file without a name")
        for i in range(1, len(parts)):
            if kinds.get(parts[:i]) == "file":
                raise _refuse(
                    f"Archive member {member.name!r} is inside {'/'.join(parts[:i])!r}, "
                    "which the archive has as a file"
                )
            kinds[parts[:i]] = "dir"
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
        checked.append((member, parts))
    return checked


def _make_dirs(root: str, parts: tuple[str, ...]) -> None:
    """Create ``root/parts...`` one level at a time with DIR_MODE; every level must be a real
    directory (never followed through a link)."""
    path = root
    for part in parts:
        path = os.path.join(path, part)
        try:
            os.mkdir(path, DIR_MODE)
            os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise _refuse(f"Archive path {'/'.join(parts)!r} is not a directory") from None


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - isreg() members always have a file object
        raise _refuse(f"Archive member {member.name!r} has no data")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), FILE_MODE)  # os.open's mode is masked by the umask
        written = 0
        while True:
            try:
                chunk = source.read(_CHUNK)
            except _READ_ERRORS as e:
                raise _not_a_tar(e) from None
            if not chunk:
                break
            written += len(chunk)
            out.write(chunk)
    if written != member.size:
        raise _not_a_tar(
            ValueError(f"member {member.name!r} is truncated ({written} of {member.size} bytes)")
        )


def unpack_version_archive(
    data: bytes | BinaryIO,
    dest: str,
    *,
    max_bytes: int = 4 << 30,
    max_members: int = 100_000,
) -> None:
    """Unpack a tar archive (plain or gzip, autodetected) of one version directory into ``dest``.

    Called by the server's upload path, on a worker thread, with the uploaded bytes (or a binary
    file object positioned at the archive) and an existing, empty staging directory.

    Raises ``ServingError(INVALID_ARGUMENT)`` naming the offending member for: absolute names,
    ``..`` components, anything but regular files and directories (symlinks, hard links, devices,
    FIFOs, ...), names that escape ``dest``, duplicate or file/directory-conflicting names, more
    than ``max_members`` members, more than ``max_bytes`` of file data, and ("Not a valid tar
    archive: ...") input that is not a tar archive or ends early. Every header is checked before
    the first file is written; data errors (a truncated last member) can still surface while
    writing. On any error ``dest`` may hold part of the archive: the caller deletes it.

    Files are written with mode 0o644 and directories 0o755, whatever the archive says.
    Write failures of the file system (disk full) propagate as ``OSError``.
    """
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
            tar = tarfile.open(fileobj=stream, mode="r:*")
        except _READ_ERRORS as e:
            raise _not_a_tar(e) from None
        with tar:
            members = _check_members(tar, max_bytes, max_members)
            for member, parts in members:
                path = os.path.join(root, *parts)
                # Redundant with the component checks; kept as the last word on escaping.
                if os.path.commonpath([root, os.path.normpath(path)]) != root:
                    raise _refuse(f"Archive member {member.name!r} escapes the destination")
                if member.isdir():
                    _make_dirs(root, parts)
                    continue
                _make_dirs(root, parts[:-1])
                try:
                    _write_file(tar, member, path)
                except OSError as e:
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
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
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
