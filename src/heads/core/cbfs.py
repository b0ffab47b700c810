"""A minimal CBFS: read the files of a coreboot file system image, write a small one.

Enough for the firmware image's user files (``heads/initrd/.gnupg/pubring.kbx``,
``heads/initrd/etc/config.user``, ...), which the runtime measures into PCR 7 in image order.
Checked against coreboot-utils 4.15's ``cbfstool`` (``create -m x86``, ``add -t raw``,
``print``, ``extract``) in the tests; compressed files are reported, not decompressed.

Layout (coreboot ``commonlib/bsd/include/commonlib/bsd/cbfs_serialized.h``, all big-endian):

* a file header ``struct cbfs_file``: magic ``LARCHIVE``, ``len`` (data bytes), ``type``,
  ``attributes_offset`` (0: none), ``offset`` (data, from the header start), then the
  NUL-terminated name padded to 4 bytes, the attributes, the data; headers sit on 64-byte
  boundaries from the start of the CBFS;
* free space is a file of type ``0xffffffff`` with an empty name;
* x86 images made by ``cbfstool create -m x86`` end with a master header (magic ``ORBC``) whose
  position is stored, as a negative 32-bit offset from the end of the image (equal to its
  address under 4 GiB), in the last 4 bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from heads.errors import FormatError

__all__ = [
    "MAX_IMAGE_BYTES",
    "TYPE_RAW",
    "CbfsFile",
    "build_cbfs",
    "parse_cbfs",
]

MAX_IMAGE_BYTES: Final = 64 * 1024 * 1024
TYPE_RAW: Final = 0x50
TYPE_NULL: Final = 0xFFFFFFFF
TYPE_DELETED: Final = 0x00000000
TYPE_MASTER_HEADER: Final = 0x02
_MAGIC: Final = b"LARCHIVE"
_FILE_HDR: Final = struct.Struct(">8sIIII")
_MASTER_MAGIC: Final = 0x4F524243  # "ORBC"
_MASTER_VERSION: Final = 0x31313132
_MASTER_HDR: Final = struct.Struct(">IIIIIIII")
_ARCH_X86: Final = 1
_ALIGN: Final = 64
_NAME_ALIGN: Final = 4
_MAX_NAME: Final = 256
# struct cbfs_file_attribute: tag, len (both u32 big-endian), then data.
_ATTR_HDR: Final = struct.Struct(">II")
_ATTR_COMPRESSION: Final = 0x42435A4C  # "LZCB"
_ATTR_UNUSED: Final = (0x00000000, 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class CbfsFile:
    """One CBFS file: name, type, data, and where its header starts in the image."""

    name: str
    data: bytes
    type: int = TYPE_RAW
    offset: int = 0
    compression: int = 0


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def _fail(source: str, offset: int, reason: str) -> FormatError:
    return FormatError(reason, source=source, offset=offset, hint="the CBFS image is damaged")


def _master_header(image: bytes, source: str) -> tuple[int, int] | None:
    """(CBFS start, CBFS end) from an x86 master header, or None when there is none."""
    if len(image) < 4 + _MASTER_HDR.size:
        return None
    (rel,) = struct.unpack_from("<i", image, len(image) - 4)
    pos = len(image) + rel
    if not 0 <= pos <= len(image) - 4 - _MASTER_HDR.size:
        return None
    magic, version, romsize, bootblock, align, offset, _arch, _pad = _MASTER_HDR.unpack_from(
        image, pos
    )
    if magic != _MASTER_MAGIC:
        return None
    if version != _MASTER_VERSION or align != _ALIGN or romsize != len(image):
        raise _fail(source, pos, "CBFS master header does not match the image")
    end = min(romsize - bootblock, pos)
    if not 0 <= offset < end:
        raise _fail(source, pos, f"CBFS master header gives a bad start offset {offset}")
    return offset, end


def _compression(image: bytes, start: int, end: int, source: str) -> int:
    """Walk the attribute list; returns the compression algorithm (0: none)."""
    pos = start
    compression = 0
    while pos + _ATTR_HDR.size <= end:
        tag, length = _ATTR_HDR.unpack_from(image, pos)
        if tag in _ATTR_UNUSED:
            break
        if length < _ATTR_HDR.size or pos + length > end:
            raise _fail(source, pos, f"CBFS attribute length {length} is out of range")
        if tag == _ATTR_COMPRESSION and length >= _ATTR_HDR.size + 4:
            (compression,) = struct.unpack_from(">I", image, pos + _ATTR_HDR.size)
        pos += length
    return compression


def parse_cbfs(image: bytes, *, source: str = "CBFS image") -> list[CbfsFile]:
    """The files of a CBFS image in image order (free space and deleted files left out).

    Raises:
        FormatError: the image is too large, has no CBFS, or a header is out of range; the
            message names ``source`` and the byte offset.
    """
    if len(image) > MAX_IMAGE_BYTES:
        raise FormatError(
            f"image is {len(image)} bytes, more than the {MAX_IMAGE_BYTES} allowed", source=source
        )
    bounds = _master_header(image, source)
    start, end = bounds if bounds is not None else (0, len(image))
    if image[start : start + len(_MAGIC)] != _MAGIC:
        raise _fail(source, start, "no CBFS file header (LARCHIVE) at the start of the CBFS")
    files: list[CbfsFile] = []
    pos = start
    while pos + _FILE_HDR.size <= end:
        magic, length, ftype, attr_off, data_off = _FILE_HDR.unpack_from(image, pos)
        if magic != _MAGIC:
            break  # the rest is unused space (erased flash or the bootblock)
        name_end = image.find(b"\0", pos + _FILE_HDR.size, pos + _FILE_HDR.size + _MAX_NAME)
        if name_end < 0:
            raise _fail(source, pos, "CBFS file name is not terminated within 256 bytes")
        if data_off < name_end + 1 - pos or pos + data_off + length > end:
            raise _fail(source, pos, "CBFS file data lies outside the image")
        meta_end = pos + data_off
        if attr_off:
            if not name_end + 1 - pos <= attr_off <= data_off:
                raise _fail(source, pos, f"CBFS attribute offset {attr_off} is out of range")
            compression = _compression(image, pos + attr_off, meta_end, source)
        else:
            compression = 0
        try:
            name = image[pos + _FILE_HDR.size : name_end].decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(source, pos, "CBFS file name is not UTF-8") from None
        if ftype not in (TYPE_NULL, TYPE_DELETED, TYPE_MASTER_HEADER):
            data = image[meta_end : meta_end + length]
            files.append(CbfsFile(name, data, ftype, pos - start, compression))
        pos = _align(meta_end + length, _ALIGN)  # data_off > 24, so this always advances
    return files


def _file_bytes(name: bytes, ftype: int, data: bytes) -> bytes:
    name_field = name + b"\0" * (_align(len(name) + 1, _NAME_ALIGN) - len(name))
    data_off = _FILE_HDR.size + len(name_field)
    return _FILE_HDR.pack(_MAGIC, len(data), ftype, 0, data_off) + name_field + data


def build_cbfs(files: Sequence[CbfsFile], *, size: int = 0x20000) -> bytes:
    """An x86 CBFS image of ``size`` bytes holding ``files`` (uncompressed) in the given order.

    The layout is the one ``cbfstool create -m x86 -s SIZE`` followed by ``add -t raw`` makes:
    files from offset 0 on 64-byte boundaries, one free-space file, the master header at the
    end and the pointer to it in the last 4 bytes.

    Raises:
        ValueError: a name is empty, too long or repeated, or the files do not fit.
    """
    master_pos = size - 4 - _MASTER_HDR.size
    free_end = master_pos // _ALIGN * _ALIGN
    out = bytearray(b"\xff" * size)
    pos = 0
    seen: set[str] = set()
    for f in files:
        raw_name = f.name.encode("utf-8")
        if not raw_name or len(raw_name) >= _MAX_NAME or b"\0" in raw_name or f.name in seen:
            raise ValueError(f"bad or repeated CBFS file name {f.name!r}")
        seen.add(f.name)
        if f.compression:
            raise ValueError("build_cbfs writes uncompressed files only")
        blob = _file_bytes(raw_name, f.type, f.data)
        if pos + len(blob) > free_end:
            raise ValueError(f"CBFS files do not fit in {size} bytes")
        out[pos : pos + len(blob)] = blob
        pos = _align(pos + len(blob), _ALIGN)
    if pos + _FILE_HDR.size + _NAME_ALIGN <= free_end:
        empty_len = free_end - pos - _FILE_HDR.size - _NAME_ALIGN
        header = _FILE_HDR.pack(_MAGIC, empty_len, TYPE_NULL, 0, _FILE_HDR.size + _NAME_ALIGN)
        out[pos : pos + len(header) + _NAME_ALIGN] = header + b"\0" * _NAME_ALIGN
    out[master_pos : master_pos + _MASTER_HDR.size] = _MASTER_HDR.pack(
        _MASTER_MAGIC, _MASTER_VERSION, size, 0, _ALIGN, 0, _ARCH_X86, 0xFFFFFFFF
    )
    struct.pack_into("<i", out, size - 4, master_pos - size)
    return bytes(out)
