"""A small LZ4 frame decoder, for the LZ4-compressed files of a CBFS (docs/firmware-image.md).

The standard library has LZMA but no LZ4, and a coreboot image may hold files that
``cbfstool add -c lz4`` compressed.  Only decoding is needed: heads writes LZMA when it
compresses.  The format (the LZ4 frame and block formats, all little-endian):

* frame: magic ``0x184D2204``, a descriptor (FLG, BD, optional 8-byte content size, optional
  4-byte dictionary id, a 1-byte header checksum), then blocks, each a 32-bit size (bit 31:
  stored uncompressed; 0: end of frame), the block, and a 4-byte checksum when FLG asks for
  one; after the end mark an optional 4-byte content checksum;
* block: sequences of a token (high nibble: literal count, low nibble: match length - 4, each
  extended by following bytes while they are 255), the literals, a 2-byte match offset back
  into the output, and the match; the last sequence has literals only.

The xxHash32 checksums are skipped, as coreboot's own decoder does: a CBFS file's integrity is
the hash attribute's business, not the compressor's.
"""

from __future__ import annotations

import struct
from typing import Final

from heads.errors import FormatError

__all__ = ["lz4_frame_decompress"]

_MAGIC: Final = 0x184D2204
_FLG_VERSION_MASK: Final = 0xC0
_FLG_VERSION: Final = 0x40
_FLG_BLOCK_CHECKSUM: Final = 0x10
_FLG_CONTENT_SIZE: Final = 0x08
_FLG_CONTENT_CHECKSUM: Final = 0x04
_FLG_DICT_ID: Final = 0x01
_BLOCK_STORED: Final = 0x80000000
_MIN_MATCH: Final = 4


def _fail(source: str, offset: int, reason: str) -> FormatError:
    return FormatError(reason, source=source, offset=offset, hint="the LZ4 data is damaged")


def _length(data: bytes, pos: int, base: int, source: str) -> tuple[int, int]:
    """A nibble length extended by 255-bytes: (length, position after it)."""
    length = base
    if base != 15:
        return length, pos
    while True:
        if pos >= len(data):
            raise _fail(source, pos, "LZ4 length runs past the end of the block")
        byte = data[pos]
        pos += 1
        length += byte
        if byte != 255:
            return length, pos


def _block(data: bytes, out: bytearray, limit: int, source: str, base: int) -> None:
    """Decode one compressed block, appending to ``out`` (which earlier blocks may be in)."""
    pos = 0
    while pos < len(data):
        token = data[pos]
        pos += 1
        literals, pos = _length(data, pos, token >> 4, source)
        if pos + literals > len(data):
            raise _fail(source, base + pos, "LZ4 literals run past the end of the block")
        if len(out) + literals > limit:
            raise _fail(source, base + pos, f"LZ4 data decompresses to more than {limit} bytes")
        out += data[pos : pos + literals]
        pos += literals
        if pos == len(data):
            return  # the last sequence carries literals only
        if pos + 2 > len(data):
            raise _fail(source, base + pos, "LZ4 match offset runs past the end of the block")
        (distance,) = struct.unpack_from("<H", data, pos)
        pos += 2
        match, pos = _length(data, pos, token & 0x0F, source)
        match += _MIN_MATCH
        if distance == 0 or distance > len(out):
            raise _fail(source, base + pos, f"LZ4 match offset {distance} points before the data")
        if len(out) + match > limit:
            raise _fail(source, base + pos, f"LZ4 data decompresses to more than {limit} bytes")
        start = len(out) - distance
        if distance >= match:
            out += out[start : start + match]
        else:  # the match overlaps what it produces: repeat the period
            period = bytes(out[start:])
            whole, rest = divmod(match, distance)
            out += period * whole + period[:rest]


def lz4_frame_decompress(data: bytes, *, limit: int, source: str = "LZ4 data") -> bytes:
    """The content of one LZ4 frame, at most ``limit`` bytes.

    Raises:
        FormatError: not an LZ4 frame, a length or offset out of range, or more than ``limit``
            bytes of output; the message names ``source`` and the byte offset.
    """
    if len(data) < 7:
        raise _fail(source, 0, "too short for an LZ4 frame")
    magic, flg, _bd = struct.unpack_from("<IBB", data, 0)
    if magic != _MAGIC:
        raise _fail(source, 0, f"no LZ4 frame magic (found {magic:#010x})")
    if flg & _FLG_VERSION_MASK != _FLG_VERSION:
        raise _fail(source, 4, f"LZ4 frame version bits {flg >> 6} are not 01")
    pos = 6
    if flg & _FLG_CONTENT_SIZE:
        pos += 8
    if flg & _FLG_DICT_ID:
        raise _fail(source, 4, "LZ4 frame asks for a dictionary, which CBFS never uses")
    pos += 1  # header checksum
    out = bytearray()
    while True:
        if pos + 4 > len(data):
            raise _fail(source, pos, "LZ4 frame ends without an end mark")
        (size,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if size == 0:
            break
        stored = bool(size & _BLOCK_STORED)
        size &= ~_BLOCK_STORED
        if pos + size > len(data):
            raise _fail(source, pos, f"LZ4 block of {size} bytes runs past the end")
        block = data[pos : pos + size]
        if stored:
            if len(out) + size > limit:
                raise _fail(source, pos, f"LZ4 data decompresses to more than {limit} bytes")
            out += block
        else:
            _block(block, out, limit, source, pos)
        pos += size + (4 if flg & _FLG_BLOCK_CHECKSUM else 0)
    if flg & _FLG_CONTENT_CHECKSUM:
        pos += 4
    if pos > len(data):
        raise _fail(source, len(data), "LZ4 frame ends inside its checksum")
    return bytes(out)
