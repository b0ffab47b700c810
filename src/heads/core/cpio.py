"""Deterministic cpio "newc" archives: the initramfs format the Linux kernel unpacks.

The format (Linux ``Documentation/driver-api/early-userspace/buffer-format.rst``, GNU cpio's
``newc``): each member is the magic ``070701`` followed by 13 fields of 8 upper-case hex digits
(ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize
including the NUL, check = 0), then the name and its NUL padded to a multiple of 4, then the data
padded to a multiple of 4.  The archive ends with a member named ``TRAILER!!!``.

The writer makes the same bytes from the same members whatever the host: members sorted by path
components (a directory always precedes what it holds), missing parent directories added, uid
and gid 0, one mtime for everything (``SOURCE_DATE_EPOCH``), permissions normalised (0755 for
directories and executables, 0644 for other files, 0777 for symlinks) and inode numbers given in
sorted order from 1.  Device nodes (``/dev/console`` 5,1 above all: without it init has no
stdout) are written straight into the archive, so building needs neither root nor ``mknod``.

The reader is for tests and the build manifest: it takes hostile bytes and returns the members
or raises :class:`~heads.errors.FormatError` naming the byte offset and the reason.
"""

from __future__ import annotations

import enum
import io
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Final

from heads.errors import FormatError

__all__ = [
    "MAGIC",
    "MAX_MEMBERS",
    "MAX_NAME_BYTES",
    "TRAILER",
    "CpioEntry",
    "CpioMember",
    "Kind",
    "build_newc",
    "read_newc",
    "read_newc_at",
    "write_newc",
]

MAGIC: Final = b"070701"
TRAILER: Final = "TRAILER!!!"
MAX_MEMBERS: Final = 200_000
MAX_NAME_BYTES: Final = 4096  # PATH_MAX, as the kernel's unpacker enforces
_HEADER_LEN: Final = 6 + 13 * 8
_MAX_MTIME: Final = 0xFFFFFFFF


class Kind(enum.Enum):
    """What a member is; the value is its ``S_IFMT`` file-type bits."""

    FILE = stat.S_IFREG
    DIRECTORY = stat.S_IFDIR
    SYMLINK = stat.S_IFLNK
    CHAR_DEVICE = stat.S_IFCHR
    BLOCK_DEVICE = stat.S_IFBLK


def _check_path(path: str) -> str:
    """The archive name for ``path``: relative, normalised, no ``.``/``..`` components."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise ValueError(f"cpio member path {path!r} names the archive root")
    if ".." in parts:
        raise ValueError(f"cpio member path {path!r} contains '..'")
    name = "/".join(parts)
    if "\0" in name or name == TRAILER:
        raise ValueError(f"cpio member path {path!r} is not allowed")
    if len(name.encode()) + 1 > MAX_NAME_BYTES:
        raise ValueError(f"cpio member path {path[:60]!r}... is longer than {MAX_NAME_BYTES} bytes")
    return name


@dataclass(frozen=True, slots=True)
class CpioEntry:
    """One member to write.  Build it with the class methods, which normalise it.

    Attributes:
        path: the name in the archive, relative (``usr/bin/python3.11``).
        kind: file, directory, symlink or device node.
        perm: permission bits (no file-type bits).
        data: file contents, or the target of a symlink (UTF-8).
        rdev: (major, minor) of a device node.
    """

    path: str
    kind: Kind
    perm: int
    data: bytes = field(default=b"", repr=False)
    rdev: tuple[int, int] = (0, 0)

    @classmethod
    def file(cls, path: str, data: bytes, *, executable: bool = False) -> CpioEntry:
        """A regular file, mode 0755 if ``executable`` else 0644.

        Raises:
            ValueError: the path is empty, absolute-only, or climbs with ``..``.
        """
        return cls(_check_path(path), Kind.FILE, 0o755 if executable else 0o644, data)

    @classmethod
    def directory(cls, path: str) -> CpioEntry:
        """A directory, mode 0755.

        Raises:
            ValueError: bad path (see :meth:`file`).
        """
        return cls(_check_path(path), Kind.DIRECTORY, 0o755)

    @classmethod
    def symlink(cls, path: str, target: str) -> CpioEntry:
        """A symbolic link to ``target`` (stored as the member's data, as cpio does).

        Raises:
            ValueError: bad path (see :meth:`file`) or an empty target.
        """
        if not target or "\0" in target:
            raise ValueError(f"symlink {path!r} has an empty or NUL-containing target")
        return cls(_check_path(path), Kind.SYMLINK, 0o777, target.encode())

    @classmethod
    def char_device(cls, path: str, major: int, minor: int, *, perm: int = 0o600) -> CpioEntry:
        """A character device node (e.g. ``dev/console`` 5,1).

        Raises:
            ValueError: bad path or device numbers out of range.
        """
        if not (0 <= major <= 0xFFFFFFFF and 0 <= minor <= 0xFFFFFFFF):
            raise ValueError(f"device numbers {major},{minor} out of range")
        return cls(_check_path(path), Kind.CHAR_DEVICE, perm & 0o7777, b"", (major, minor))


@dataclass(frozen=True, slots=True)
class CpioMember:
    """One member as read back, with every header field."""

    name: str
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    devmajor: int
    devminor: int
    rdevmajor: int
    rdevminor: int
    data: bytes = field(repr=False)
    offset: int = 0

    @property
    def kind(self) -> Kind | None:
        """The member's file type, or ``None`` for a type this module does not write."""
        try:
            return Kind(stat.S_IFMT(self.mode))
        except ValueError:
            return None


def _header(fields: tuple[int, ...]) -> bytes:
    """``fields``: ino, mode, nlink, mtime, filesize, rdevmajor, rdevminor, namesize."""
    ino, mode, nlink, mtime, size, rmaj, rmin, namesize = fields
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rmaj, rmin, namesize, 0)
    return MAGIC + b"".join(b"%08X" % f for f in fields)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _sorted_with_parents(entries: Iterable[CpioEntry]) -> list[CpioEntry]:
    by_path: dict[str, CpioEntry] = {}
    for entry in entries:
        if entry.path in by_path:
            raise ValueError(f"cpio member {entry.path!r} given twice")
        by_path[entry.path] = entry
    for path in list(by_path):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            existing = by_path.get(parent)
            if existing is None:
                by_path[parent] = CpioEntry.directory(parent)
            elif existing.kind is not Kind.DIRECTORY:
                raise ValueError(f"cpio member {path!r} lies under {parent!r}, not a directory")
    return sorted(by_path.values(), key=lambda e: e.path.split("/"))


def write_newc(entries: Iterable[CpioEntry], out: BinaryIO, *, mtime: int) -> int:
    """Write a deterministic newc archive of ``entries`` to ``out``.

    Args:
        entries: the members, in any order; missing parent directories are added.
        out: a binary stream.
        mtime: the one modification time of every member (seconds since the epoch).

    Returns:
        The number of bytes written.

    Raises:
        ValueError: a path given twice, a member under a non-directory, or mtime out of range.
    """
    if not 0 <= mtime <= _MAX_MTIME:
        raise ValueError(f"mtime {mtime} does not fit the newc header")
    written = 0
    for ino, entry in enumerate(_sorted_with_parents(entries), start=1):
        name = entry.path.encode() + b"\0"
        nlink = 2 if entry.kind is Kind.DIRECTORY else 1
        head = _header(
            (
                ino,
                entry.kind.value | entry.perm,
                nlink,
                mtime,
                len(entry.data),
                *entry.rdev,
                len(name),
            )
        )
        # The name's padding counts the 110-byte header: header + name is a multiple of 4.
        chunk = head + name + _pad(len(head) + len(name))
        out.write(chunk)
        out.write(entry.data)
        out.write(_pad(len(entry.data)))
        written += len(chunk) + len(entry.data) + (-len(entry.data) % 4)
    trailer_name = TRAILER.encode() + b"\0"
    head = _header((0, 0, 1, 0, 0, 0, 0, len(trailer_name)))
    chunk = head + trailer_name + _pad(len(head) + len(trailer_name))
    out.write(chunk)
    return written + len(chunk)


def build_newc(entries: Iterable[CpioEntry], *, mtime: int) -> bytes:
    """:func:`write_newc` into memory.

    Raises:
        ValueError: as :func:`write_newc`.
    """
    buf = io.BytesIO()
    write_newc(entries, buf, mtime=mtime)
    return buf.getvalue()


def _hex_field(data: bytes, pos: int, source: str) -> int:
    raw = data[pos : pos + 8]
    if len(raw) != 8 or any(c not in b"0123456789abcdefABCDEF" for c in raw):
        raise FormatError("header field is not 8 hex digits", source=source, offset=pos)
    return int(raw, 16)


def read_newc(
    data: bytes, *, source: str = "<cpio>", max_members: int = MAX_MEMBERS
) -> list[CpioMember]:
    """Parse a newc archive up to its trailer (trailing zero padding is allowed).

    Args:
        data: the whole (uncompressed) archive.
        source: the file name for error messages.
        max_members: refuse archives with more members than this.

    Returns:
        The members in archive order, without the trailer.

    Raises:
        FormatError: bad magic, a non-hex field, a truncated name or body, a name without its
            NUL, a non-zero checksum field, too many members, a missing trailer, or non-zero
            bytes after it.
    """
    members, end = read_newc_at(data, 0, source=source, max_members=max_members)
    if data[end:].strip(b"\0"):
        raise FormatError("non-zero bytes after the trailer", source=source, offset=end)
    return members


def read_newc_at(
    data: bytes, start: int, *, source: str = "<cpio>", max_members: int = MAX_MEMBERS
) -> tuple[list[CpioMember], int]:
    """Parse the newc archive that starts at ``start`` of ``data``, up to its trailer.

    An initrd is often several archives one after the other (an uncompressed early one with
    CPU microcode, then a compressed one); this reads one of them and says where it ends.

    Returns:
        The members in archive order (without the trailer; offsets are within ``data``) and
        the offset just after the trailer's body, 4-aligned from ``start`` as the kernel
        reads it (capped at ``len(data)``).

    Raises:
        FormatError: as :func:`read_newc`, except that bytes after the trailer are not read.
    """
    members: list[CpioMember] = []
    pos = start
    end = len(data)
    while True:
        if pos + _HEADER_LEN > end:
            raise FormatError(
                "archive ends before its TRAILER!!! member", source=source, offset=pos
            )
        if data[pos : pos + 6] != MAGIC:
            raise FormatError(
                f"bad magic {data[pos : pos + 6]!r} (expected {MAGIC!r}, newc)",
                source=source,
                offset=pos,
            )
        f = [_hex_field(data, pos + 6 + 8 * i, source) for i in range(13)]
        ino, mode, uid, gid, nlink, mtime, size, dmaj, dmin, rmaj, rmin, namesize, check = f
        if check != 0:
            raise FormatError("newc check field is not zero", source=source, offset=pos + 102)
        if not 1 <= namesize <= MAX_NAME_BYTES:
            raise FormatError(
                f"name size {namesize} outside 1..{MAX_NAME_BYTES}", source=source, offset=pos + 94
            )
        name_at = pos + _HEADER_LEN
        if name_at + namesize > end:
            raise FormatError("name runs past the end of the archive", source=source, offset=pos)
        raw_name = data[name_at : name_at + namesize]
        if raw_name[-1] != 0 or 0 in raw_name[:-1]:
            raise FormatError(
                "name is not a single NUL-terminated string", source=source, offset=name_at
            )
        try:
            name = raw_name[:-1].decode()
        except UnicodeDecodeError:
            raise FormatError("name is not UTF-8", source=source, offset=name_at) from None
        body_at = name_at + namesize + (-(_HEADER_LEN + namesize) % 4)
        if body_at + size > end:
            raise FormatError(
                f"member {name!r} claims {size} bytes; the archive ends first",
                source=source,
                offset=pos,
            )
        if name == TRAILER:
            return members, min(end, body_at + size + (-(body_at + size - start) % 4))
        if len(members) >= max_members:
            raise FormatError(f"more than {max_members} members", source=source, offset=pos)
        members.append(
            CpioMember(
                name=name,
                ino=ino,
                mode=mode,
                uid=uid,
                gid=gid,
                nlink=nlink,
                mtime=mtime,
                devmajor=dmaj,
                devminor=dmin,
                rdevmajor=rmaj,
                rdevminor=rmin,
                data=data[body_at : body_at + size],
                offset=pos,
            )
        )
        pos = body_at + size + (-size % 4)
