"""CBFS, coreboot's file system: read, add, remove, as ``cbfstool`` does (docs/firmware-image.md).

The firmware image keeps the payload and the owner's files (``heads/initrd/.gnupg/pubring.kbx``,
``heads/initrd/etc/config.user``, ...) in a CBFS; the runtime measures the user files into PCR 7
in image order.  Checked against coreboot-utils 4.15's ``cbfstool`` in the tests: what it
writes we read, what we write it lists and extracts, and for uncompressed files our images are
byte-identical to its own.

Layout (coreboot ``commonlib/bsd/include/commonlib/bsd/cbfs_serialized.h``, big-endian):

* a file header ``struct cbfs_file``: magic ``LARCHIVE``, ``len`` (data bytes), ``type``,
  ``attributes_offset`` (0: none), ``offset`` (data, from the header start), then the
  NUL-terminated name padded to 4 bytes, the attributes, the data; headers sit on 64-byte
  boundaries from the start of the CBFS, and the bytes between a file's end and the next
  header are erased flash (0xff);
* an attribute is a tag and a length (both u32, the length counting the 8 header bytes) and a
  body, 4-byte aligned; the list ends at the data or at a tag 0 or 0xffffffff.  Known tags:
  compression (``LZCB``: algorithm, decompressed size), hash (``Hash``: three reserved bytes, a
  vboot algorithm number, the digest of the stored data).  Other tags are kept as they are;
* free space is a file of type ``0xffffffff`` with an empty name; removing a file turns it
  into free space and merges it with free neighbours; adding takes the first free entry large
  enough and leaves the rest free;
* x86 images made by ``cbfstool create -m x86`` end with a master header (magic ``ORBC``) whose
  position is stored, as a negative 32-bit offset from the end of the image, in the last
  4 bytes; a CBFS in an FMAP region (``COREBOOT``) has none and spans the region.

Compression: LZMA is stored as coreboot's ``cbfstool`` stores it (a 13-byte header: the
properties byte, the dictionary size, the 64-bit decompressed size, then a raw LZMA1 stream);
LZ4 files (frame format) are read with :mod:`heads.core.lz4`.
"""

from __future__ import annotations

import hashlib
import lzma
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from heads.core.lz4 import lz4_frame_decompress
from heads.errors import FormatError

__all__ = [
    "COMPRESS_LZ4",
    "COMPRESS_LZMA",
    "COMPRESS_NONE",
    "HASH_SHA256",
    "MAX_CONTENT_BYTES",
    "MAX_IMAGE_BYTES",
    "TYPE_RAW",
    "CbfsAttribute",
    "CbfsFile",
    "add_file",
    "build_cbfs",
    "cbfs_bounds",
    "empty_cbfs",
    "format_region",
    "free_bytes",
    "make_file",
    "parse_cbfs",
    "read_cbfs",
    "remove_file",
    "type_name",
]

MAX_IMAGE_BYTES: Final = 64 * 1024 * 1024
#: The most a file may decompress to (a payload kernel plus initramfs is far smaller).
MAX_CONTENT_BYTES: Final = 128 * 1024 * 1024
MAX_FILES: Final = 65536
TYPE_DELETED: Final = 0x00000000
TYPE_BOOTBLOCK: Final = 0x01
TYPE_MASTER_HEADER: Final = 0x02
TYPE_RAW: Final = 0x50
TYPE_NULL: Final = 0xFFFFFFFF
_TYPE_NAMES: Final = {
    TYPE_BOOTBLOCK: "bootblock",
    TYPE_MASTER_HEADER: "cbfs header",
    0x10: "stage",
    0x11: "stage",
    0x20: "simple elf",
    0x21: "fit_payload",
    0x30: "optionrom",
    0x40: "bootsplash",
    TYPE_RAW: "raw",
    0x51: "vsa",
    0x52: "mbi",
    0x53: "microcode",
    0x60: "fsp",
    0x61: "mrc",
    0x62: "mma",
    0x63: "efi",
    0x70: "struct",
    0xAA: "cmos_default",
    0xAB: "spd",
    0xAC: "mrc_cache",
    0x01AA: "cmos_layout",
    TYPE_NULL: "null",
    TYPE_DELETED: "deleted",
}
COMPRESS_NONE: Final = 0
COMPRESS_LZMA: Final = 1
COMPRESS_LZ4: Final = 2
_COMPRESSION_NAMES: Final = {COMPRESS_NONE: "none", COMPRESS_LZMA: "LZMA", COMPRESS_LZ4: "LZ4"}
#: vboot's ``enum vb2_hash_algorithm`` numbers and the matching hashlib names.
HASH_SHA1: Final = 1
HASH_SHA256: Final = 2
HASH_SHA512: Final = 3
_HASHES: Final = {HASH_SHA1: "sha1", HASH_SHA256: "sha256", HASH_SHA512: "sha512"}

_MAGIC: Final = b"LARCHIVE"
_FILE_HDR: Final = struct.Struct(">8sIIII")
_MASTER_MAGIC: Final = 0x4F524243  # "ORBC"
_MASTER_VERSION: Final = 0x31313132
_MASTER_HDR: Final = struct.Struct(">IIIIIIII")
_ARCH_X86: Final = 1
_ALIGN: Final = 64
_NAME_ALIGN: Final = 4
_MAX_NAME: Final = 256
#: Metadata (header, name, attributes, alignment padding) larger than this is refused.
_MAX_METADATA: Final = 0x10000
_EMPTY_HDR_SIZE: Final = _FILE_HDR.size + _NAME_ALIGN
_ATTR_HDR: Final = struct.Struct(">II")
ATTR_COMPRESSION: Final = 0x42435A4C  # "BCZL"
ATTR_HASH: Final = 0x68736148  # "hsaH"
_ATTR_UNUSED: Final = (0x00000000, 0xFFFFFFFF)
_LZMA_HDR: Final = struct.Struct("<BIQ")


@dataclass(frozen=True, slots=True)
class CbfsAttribute:
    """One file attribute: its tag and the bytes after the tag and length."""

    tag: int
    body: bytes


@dataclass(frozen=True, slots=True)
class CbfsFile:
    """One CBFS file as stored: name, type, data (compressed if it is), attributes.

    ``offset`` is where its header starts, from the start of the CBFS (what ``cbfstool print``
    shows); ``metadata_size`` is the header, name and attributes (0 for a file not yet placed).
    """

    name: str
    data: bytes
    type: int = TYPE_RAW
    offset: int = 0
    attributes: tuple[CbfsAttribute, ...] = ()
    metadata_size: int = field(default=0, compare=False)

    def _attribute(self, tag: int) -> bytes | None:
        return next((a.body for a in self.attributes if a.tag == tag), None)

    @property
    def compression(self) -> int:
        body = self._attribute(ATTR_COMPRESSION)
        return struct.unpack_from(">I", body)[0] if body and len(body) >= 4 else COMPRESS_NONE

    @property
    def decompressed_size(self) -> int:
        body = self._attribute(ATTR_COMPRESSION)
        if body is None or len(body) < 8:
            return len(self.data)
        return int(struct.unpack_from(">I", body, 4)[0])

    @property
    def hash(self) -> tuple[str, bytes] | None:
        """The hash attribute as (hashlib name, digest), or None."""
        body = self._attribute(ATTR_HASH)
        if body is None or len(body) < 4:
            return None
        name = _HASHES.get(body[3])
        return None if name is None else (name, body[4 : 4 + hashlib.new(name).digest_size])

    def content(self, *, source: str = "CBFS image") -> bytes:
        """The file's content, decompressed.

        Raises:
            FormatError: the compressed data is damaged, uses an unknown algorithm, or does
                not decompress to the size its attribute states.
        """
        where = f"{source}: {self.name}"
        size = self.decompressed_size
        if size > MAX_CONTENT_BYTES:
            raise FormatError(
                f"decompresses to {size} bytes, more than {MAX_CONTENT_BYTES}", source=where
            )
        if self.compression == COMPRESS_NONE:
            return self.data
        if self.compression == COMPRESS_LZMA:
            out = _lzma_decompress(self.data, where)
        elif self.compression == COMPRESS_LZ4:
            out = lz4_frame_decompress(self.data, limit=size, source=where)
        else:
            raise FormatError(f"unknown compression {self.compression}", source=where)
        if len(out) != size:
            raise FormatError(
                f"decompressed to {len(out)} bytes, its attribute says {size}", source=where
            )
        return out

    @property
    def compression_name(self) -> str:
        return _COMPRESSION_NAMES.get(self.compression, f"unknown({self.compression})")


def type_name(ftype: int) -> str:
    """``cbfstool print``'s name for a file type (``raw``, ``stage``, ...)."""
    return _TYPE_NAMES.get(ftype, f"{ftype:#x}")


def _align(value: int, to: int = _ALIGN) -> int:
    return (value + to - 1) // to * to


def _fail(source: str, offset: int, reason: str) -> FormatError:
    return FormatError(reason, source=source, offset=offset, hint="the CBFS image is damaged")


# --- compression ---------------------------------------------------------------------------


def _lzma_dict_size(length: int) -> int:
    """The dictionary size LZMA's encoder settles on for ``length`` bytes (2^n or 3*2^(n-1))."""
    for shift in range(11, 31):
        if length <= 2 << shift:
            return 2 << shift
        if length <= 3 << shift:
            return 3 << shift
    return 1 << 30


def _lzma_compress(data: bytes) -> bytes:
    # cbfstool's settings: lc=1, lp=0, pb=0 (props byte 1), a dictionary as large as the data.
    dict_size = _lzma_dict_size(len(data))
    filters = [{"id": lzma.FILTER_LZMA1, "lc": 1, "lp": 0, "pb": 0, "dict_size": dict_size}]
    stream = lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)
    return _LZMA_HDR.pack(1, dict_size, len(data)) + stream


def _lzma_decompress(data: bytes, where: str) -> bytes:
    if len(data) < _LZMA_HDR.size:
        raise FormatError("LZMA data is shorter than its header", source=where, offset=0)
    props, dict_size, size = _LZMA_HDR.unpack_from(data)
    if props >= 9 * 5 * 5:
        raise FormatError(f"LZMA properties byte {props} is invalid", source=where, offset=0)
    if size > MAX_CONTENT_BYTES:
        raise FormatError(f"LZMA data claims {size} bytes", source=where, offset=5)
    pb, rest = divmod(props, 45)
    lp, lc = divmod(rest, 9)
    filters = [
        {"id": lzma.FILTER_LZMA1, "lc": lc, "lp": lp, "pb": pb, "dict_size": max(dict_size, 4096)}
    ]
    try:
        decoder = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=filters)
        return decoder.decompress(data[_LZMA_HDR.size :], max_length=size)
    except (lzma.LZMAError, ValueError) as exc:
        raise FormatError(f"LZMA data is damaged ({exc})", source=where, offset=13) from None


def make_file(
    name: str,
    content: bytes,
    *,
    type: int = TYPE_RAW,
    compression: int = COMPRESS_NONE,
    hash_algorithm: int | None = None,
) -> CbfsFile:
    """A file ready to add, with the attributes ``cbfstool add -c ... -A ...`` gives it.

    Compression that does not make the data smaller is dropped, as cbfstool does.

    Raises:
        ValueError: an algorithm heads does not write (LZ4 is read only).
    """
    attributes: list[CbfsAttribute] = []
    data = content
    if compression == COMPRESS_LZMA:
        packed = _lzma_compress(content)
        if len(packed) < len(content):
            data = packed
            attributes.append(
                CbfsAttribute(ATTR_COMPRESSION, struct.pack(">II", compression, len(content)))
            )
    elif compression != COMPRESS_NONE:
        raise ValueError(f"heads writes LZMA or no compression, not algorithm {compression}")
    if hash_algorithm is not None:
        algo = _HASHES.get(hash_algorithm)
        if algo is None:
            raise ValueError(f"unknown hash algorithm {hash_algorithm}")
        digest = hashlib.new(algo, data).digest()
        attributes.append(CbfsAttribute(ATTR_HASH, bytes([0, 0, 0, hash_algorithm]) + digest))
    return CbfsFile(name, data, type, attributes=tuple(attributes))


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """A header found by the walk: a file or free space, and where the next header may be."""

    pos: int
    end: int  # the next 64-byte boundary after the data: where the next header may start
    free: bool
    file: CbfsFile | None


def cbfs_bounds(image: bytes, source: str) -> tuple[int, int] | None:
    """(CBFS start, CBFS end) from an x86 master header, or None when there is none.

    Raises:
        FormatError: a master header is there but does not match the image.
    """
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


def _attributes(image: bytes, start: int, end: int, source: str) -> tuple[CbfsAttribute, ...]:
    pos = start
    out: list[CbfsAttribute] = []
    while pos + _ATTR_HDR.size <= end:
        tag, length = _ATTR_HDR.unpack_from(image, pos)
        if tag in _ATTR_UNUSED:
            break
        if length < _ATTR_HDR.size or length % _NAME_ALIGN or pos + length > end:
            raise _fail(source, pos, f"CBFS attribute length {length} is out of range")
        out.append(CbfsAttribute(tag, bytes(image[pos + _ATTR_HDR.size : pos + length])))
        pos += length
    return tuple(out)


def _check_file(f: CbfsFile, source: str, pos: int) -> None:
    body = f._attribute(ATTR_COMPRESSION)
    if body is not None and len(body) < 8:
        raise _fail(source, pos, f"{f.name}: compression attribute is too short")
    body = f._attribute(ATTR_HASH)
    if body is None:
        return
    if len(body) < 4 or body[3] not in _HASHES:
        raise _fail(source, pos, f"{f.name}: hash attribute names an unknown algorithm")
    algo = _HASHES[body[3]]
    want = body[4:]
    if len(want) < hashlib.new(algo).digest_size:
        raise _fail(source, pos, f"{f.name}: {algo} hash attribute is too short")
    got = hashlib.new(algo, f.data).digest()
    if want[: len(got)] != got:
        raise _fail(source, pos, f"{f.name}: {algo} hash attribute does not match the data")


def _walk(image: bytes, start: int, end: int, source: str) -> list[_Entry]:
    """Every header from ``start`` on, until the first that is not one."""
    if end - start > MAX_IMAGE_BYTES or end > len(image):
        raise _fail(source, start, f"CBFS of {end - start} bytes is out of range")
    if image[start : start + len(_MAGIC)] != _MAGIC:
        raise _fail(source, start, "no CBFS file header (LARCHIVE) at the start of the CBFS")
    entries: list[_Entry] = []
    names: set[str] = set()
    pos = start
    while pos + _FILE_HDR.size <= end:
        magic, length, ftype, attr_off, data_off = _FILE_HDR.unpack_from(image, pos)
        if magic != _MAGIC:
            break  # the rest is unused space (erased flash or the bootblock)
        if len(entries) >= MAX_FILES:
            raise _fail(source, pos, f"CBFS holds more than {MAX_FILES} entries")
        name_end = image.find(b"\0", pos + _FILE_HDR.size, pos + _FILE_HDR.size + _MAX_NAME)
        if name_end < 0:
            raise _fail(source, pos, "CBFS file name is not terminated within 256 bytes")
        meta = name_end + 1 - pos
        if not meta <= data_off <= _MAX_METADATA or pos + data_off + length > end:
            raise _fail(source, pos, "CBFS file data lies outside the CBFS")
        if attr_off and not meta <= attr_off <= data_off:
            raise _fail(source, pos, f"CBFS attribute offset {attr_off} is out of range")
        next_pos = _align(pos + data_off + length - start) + start
        if ftype in (TYPE_NULL, TYPE_DELETED):
            entries.append(_Entry(pos, next_pos, True, None))
            pos = next_pos
            continue
        try:
            name = image[pos + _FILE_HDR.size : name_end].decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(source, pos, "CBFS file name is not UTF-8") from None
        if name in names:
            raise _fail(source, pos, f"CBFS file name {name!r} appears twice")
        names.add(name)
        attrs = _attributes(image, pos + attr_off, pos + data_off, source) if attr_off else ()
        data = bytes(image[pos + data_off : pos + data_off + length])
        f = CbfsFile(name, data, ftype, pos - start, attrs, data_off)
        _check_file(f, source, pos)
        entries.append(_Entry(pos, next_pos, False, f))
        pos = next_pos  # data_off > 24, so this always advances
    return entries


def read_cbfs(
    image: bytes, start: int = 0, end: int | None = None, *, source: str = "CBFS image"
) -> list[CbfsFile]:
    """The files of the CBFS spanning ``image[start:end]`` in image order (no free space).

    Raises:
        FormatError: no CBFS there, a header or attribute out of range, a repeated name, or a
            hash attribute that does not match; the message names ``source`` and the offset.
    """
    stop = len(image) if end is None else end
    return [e.file for e in _walk(image, start, stop, source) if e.file is not None]


def parse_cbfs(image: bytes, *, source: str = "CBFS image") -> list[CbfsFile]:
    """The files of a flat CBFS image (master header or none) in image order.

    The ``cbfs header`` file older images carry is left out along with free space.

    Raises:
        FormatError: the image is too large, has no CBFS, or a header is out of range; the
            message names ``source`` and the byte offset.
    """
    if len(image) > MAX_IMAGE_BYTES:
        raise FormatError(
            f"image is {len(image)} bytes, more than the {MAX_IMAGE_BYTES} allowed", source=source
        )
    bounds = cbfs_bounds(image, source)
    start, end = bounds if bounds is not None else (0, len(image))
    files = read_cbfs(image, start, end, source=source)
    return [f for f in files if f.type != TYPE_MASTER_HEADER]


def free_bytes(image: bytes, start: int, end: int, *, source: str = "CBFS image") -> int:
    """The data bytes the largest free entry can take (what fits in one more file)."""
    best = 0
    for e in _walk(image, start, end, source):
        if e.free:
            best = max(best, e.end - e.pos - _FILE_HDR.size)
    return best


# --- writing -------------------------------------------------------------------------------


def _name_field(name: str) -> bytes:
    raw = name.encode("utf-8")
    if not raw or len(raw) >= _MAX_NAME or b"\0" in raw:
        raise ValueError(f"bad CBFS file name {name!r}")
    return raw + b"\0" * (_align(len(raw) + 1, _NAME_ALIGN) - len(raw))


def _file_bytes(f: CbfsFile) -> bytes:
    name_field = _name_field(f.name)
    attrs = b"".join(
        _ATTR_HDR.pack(a.tag, _ATTR_HDR.size + len(a.body)) + a.body for a in f.attributes
    )
    if len(attrs) % _NAME_ALIGN:
        raise ValueError(f"attributes of {f.name!r} are not 4-byte aligned")
    attr_off = _FILE_HDR.size + len(name_field) if attrs else 0
    data_off = _FILE_HDR.size + len(name_field) + len(attrs)
    header = _FILE_HDR.pack(_MAGIC, len(f.data), f.type, attr_off, data_off)
    return header + name_field + attrs + f.data


def _empty_header(length: int) -> bytes:
    return _FILE_HDR.pack(_MAGIC, length, TYPE_NULL, 0, _EMPTY_HDR_SIZE) + b"\0" * _NAME_ALIGN


def _mark_free(out: bytearray, pos: int, end: int, *, spare_tail: int = 0) -> None:
    """Make ``out[pos:end]`` one free entry over erased flash (its data ``spare_tail`` short)."""
    out[pos:end] = b"\xff" * (end - pos)
    out[pos : pos + _EMPTY_HDR_SIZE] = _empty_header(end - pos - _EMPTY_HDR_SIZE - spare_tail)


def add_file(
    image: bytes, f: CbfsFile, start: int = 0, end: int | None = None, *, source: str = "CBFS"
) -> bytes:
    """``image`` with ``f`` added in the first free entry large enough, as ``cbfstool add``.

    Raises:
        ValueError: the name is bad or already taken, or no free entry is large enough.
        FormatError: the CBFS there is damaged.
    """
    stop = len(image) if end is None else end
    entries = _walk(image, start, stop, source)
    if any(e.file is not None and e.file.name == f.name for e in entries):
        raise ValueError(f"a CBFS file named {f.name!r} is already in the image")
    blob = _file_bytes(f)
    for e in entries:
        if e.free and e.pos + len(blob) <= e.end:
            out = bytearray(image)
            out[e.pos : e.end] = b"\xff" * (e.end - e.pos)
            out[e.pos : e.pos + len(blob)] = blob
            rest = _align(e.pos + len(blob) - start) + start
            if rest < e.end:
                # cbfstool keeps the CBFS's last 4 bytes out of the free entry it splits off
                # (room for x86's master header pointer); doing the same keeps images identical.
                _mark_free(out, rest, e.end, spare_tail=4 if e.end > stop - 4 else 0)
            return bytes(out)
    raise ValueError(
        f"no free space for {f.name!r} ({len(blob)} bytes with its header) in the CBFS"
    )


def remove_file(
    image: bytes, name: str, start: int = 0, end: int | None = None, *, source: str = "CBFS"
) -> bytes:
    """``image`` without the file ``name``, its space free and merged with free neighbours.

    Raises:
        KeyError: no file of that name.
        FormatError: the CBFS there is damaged.
    """
    stop = len(image) if end is None else end
    entries = _walk(image, start, stop, source)
    if not any(e.file is not None and e.file.name == name for e in entries):
        raise KeyError(name)
    out = bytearray(image)
    run_start: int | None = None
    for i, e in enumerate(entries):
        if not (e.free or _named(e, name)):
            continue
        if run_start is None:
            run_start = e.pos
        following = entries[i + 1] if i + 1 < len(entries) else None
        if following is None or not (following.free or _named(following, name)):
            _mark_free(out, run_start, e.end)
            run_start = None
    return bytes(out)


def _named(e: _Entry, name: str) -> bool:
    return e.file is not None and e.file.name == name


def empty_cbfs(size: int) -> bytes:
    """A flat x86 CBFS image of ``size`` bytes with no files, as ``cbfstool create -m x86``."""
    master_pos = size - 4 - _MASTER_HDR.size
    free_end = master_pos // _ALIGN * _ALIGN
    if free_end < _ALIGN:
        raise ValueError(f"a CBFS of {size} bytes is too small")
    out = bytearray(b"\xff" * size)
    _mark_free(out, 0, free_end)
    out[master_pos : master_pos + _MASTER_HDR.size] = _MASTER_HDR.pack(
        _MASTER_MAGIC, _MASTER_VERSION, size, 0, _ALIGN, 0, _ARCH_X86, 0xFFFFFFFF
    )
    struct.pack_into("<i", out, size - 4, master_pos - size)
    return bytes(out)


def format_region(image: bytes, start: int, end: int) -> bytes:
    """``image`` with ``[start, end)`` made an empty CBFS (``cbfstool create -M ... -r``)."""
    out = bytearray(image)
    _mark_free(out, start, end)
    return bytes(out)


def build_cbfs(files: Iterable[CbfsFile], *, size: int = 0x20000) -> bytes:
    """A flat x86 CBFS image of ``size`` bytes holding ``files`` in the given order.

    The layout is the one ``cbfstool create -m x86 -s SIZE`` followed by ``add`` makes.

    Raises:
        ValueError: a name is empty, too long or repeated, or the files do not fit.
    """
    image = empty_cbfs(size)
    start, end = 0, size - 4 - _MASTER_HDR.size
    for f in files:
        try:
            image = add_file(image, f, start, end)
        except ValueError as exc:
            if "no free space" in str(exc):
                raise ValueError(f"CBFS files do not fit in {size} bytes") from None
            raise ValueError(f"bad or repeated CBFS file name {f.name!r}") from None
    return image
