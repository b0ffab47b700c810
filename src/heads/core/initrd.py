"""The members of an OS initrd: cpio newc archives one after the other, each uncompressed or
compressed (docs/disk-key.md §Crypttab overrides).

Distributions ship an uncompressed early archive (CPU microcode) followed by the main one
compressed with gzip, xz, lzma or zstd; the kernel unpacks each in turn, skipping the zero
padding between them, and a compressed stream may itself hold several archives.  gzip, xz and
lzma are decompressed here (Python's zlib and lzma); zstd only through the ``zstd`` callable
the caller gives (the ``zstd`` tool on a host; the payload has none).  Pure: bytes in, members
out; every refusal is a FormatError naming the initrd and the offset.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from heads.core.cpio import MAGIC, CpioMember, read_newc_at
from heads.errors import FormatError, HeadsError

__all__ = ["MAX_UNPACKED_BYTES", "InitrdContents", "ZstdMissingError", "read_initrd"]

#: No initrd this reads unpacks to more (a decompression bomb stops here).
MAX_UNPACKED_BYTES: Final = 1 << 30
_MAX_SEGMENTS: Final = 64
_GZIP: Final = b"\x1f\x8b"
_XZ: Final = b"\xfd7zXZ\x00"
_ZSTD: Final = b"\x28\xb5\x2f\xfd"
# lzma "alone": properties byte 0x5d (lc=3, lp=0, pb=2, as every lzma tool writes) and a
# dictionary size, then the uncompressed size (-1 when unknown).
_LZMA: Final = b"\x5d\x00\x00"


class ZstdMissingError(FormatError):
    """A zstd-compressed part and no way to decompress it here."""


@dataclass(frozen=True, slots=True)
class InitrdContents:
    """The members of every archive, in order, and how each part was stored."""

    members: tuple[CpioMember, ...]
    parts: tuple[str, ...] = field(default=())


def _decompress(kind: str, data: bytes, at: int, source: str, budget: int) -> tuple[bytes, int]:
    """One compressed stream at ``at``: its output and the offset just after it."""
    decoder: zlib._Decompress | lzma.LZMADecompressor
    if kind == "gzip":
        decoder = zlib.decompressobj(wbits=31)
    elif kind == "xz":
        decoder = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    else:
        decoder = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    try:
        out = decoder.decompress(data[at:], budget + 1)
    except (zlib.error, lzma.LZMAError) as exc:
        raise FormatError(
            f"{kind} data does not decompress: {exc}", source=source, offset=at
        ) from None
    if len(out) > budget:
        raise FormatError(
            f"{kind} data unpacks to more than {MAX_UNPACKED_BYTES} bytes", source=source, offset=at
        )
    if isinstance(decoder, lzma.LZMADecompressor):
        if not decoder.eof:
            raise FormatError(f"{kind} data is truncated", source=source, offset=at)
        return out, len(data) - len(decoder.unused_data)
    if not decoder.eof:
        raise FormatError(f"{kind} data is truncated", source=source, offset=at)
    return out, len(data) - len(decoder.unused_data)


def _kind(data: bytes, at: int) -> str | None:
    head = data[at : at + 6]
    if head == MAGIC:
        return "cpio"
    if head.startswith(_GZIP):
        return "gzip"
    if head == _XZ:
        return "xz"
    if head.startswith(_ZSTD):
        return "zstd"
    if head.startswith(_LZMA):
        return "lzma"
    return None


def _walk(
    data: bytes,
    source: str,
    *,
    zstd: Callable[[bytes], bytes] | None,
    members: list[CpioMember],
    parts: list[str],
    depth: int,
) -> None:
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            pos += 1
            continue
        if len(parts) >= _MAX_SEGMENTS:
            raise FormatError(f"more than {_MAX_SEGMENTS} archives", source=source, offset=pos)
        kind = _kind(data, pos)
        if kind is None:
            raise FormatError(
                f"neither a cpio archive nor gzip, xz, lzma or zstd data ({data[pos : pos + 6]!r})",
                source=source,
                offset=pos,
            )
        if kind == "cpio":
            found, pos = read_newc_at(data, pos, source=source)
            members.extend(found)
            parts.append("cpio")
            continue
        if depth > 0:
            # The kernel does not decompress inside a decompressed stream either.
            raise FormatError(f"{kind} data inside compressed data", source=source, offset=pos)
        budget = MAX_UNPACKED_BYTES - sum(len(m.data) for m in members)
        inner_source = f"{source} ({kind} data at offset {pos})"
        if kind == "zstd":
            if zstd is None:
                raise ZstdMissingError(
                    "compressed with zstd, which cannot be unpacked here", source=source, offset=pos
                )
            try:
                out, end = zstd(data[pos:]), len(data)
            except HeadsError as err:
                raise FormatError(
                    f"zstd data does not decompress: {err.message}", source=source, offset=pos
                ) from None
            if len(out) > budget:
                raise FormatError(
                    f"zstd data unpacks to more than {MAX_UNPACKED_BYTES} bytes",
                    source=source,
                    offset=pos,
                )
        else:
            out, end = _decompress(kind, data, pos, source, budget)
        parts.append(kind)
        _walk(out, inner_source, zstd=zstd, members=members, parts=parts, depth=depth + 1)
        pos = end


def read_initrd(
    data: bytes, *, source: str, zstd: Callable[[bytes], bytes] | None = None
) -> InitrdContents:
    """Every member of the initrd ``data``, across its archives.

    ``zstd`` decompresses a zstd stream running to the end of the data (all its frames).

    Raises:
        ZstdMissingError: a zstd part and no ``zstd`` given.
        FormatError: anything else that is not an initrd the kernel would unpack.
    """
    members: list[CpioMember] = []
    parts: list[str] = []
    _walk(data, source, zstd=zstd, members=members, parts=parts, depth=0)
    if not parts:
        raise FormatError("empty initrd", source=source, offset=0)
    return InitrdContents(tuple(members), tuple(parts))
