"""OpenPGP packet framing, multiprecision integers and signature subpackets (RFC 4880 §4-5).

Only what keys and signatures use: packets are written with old-format headers (as gpg writes
key material) and read in both formats; partial and indeterminate lengths, which only data
packets use, are refused.  Every reader names the source and the byte offset of what it
refuses (docs/openpgp.md §What is checked).
"""

from __future__ import annotations

from typing import Final

from heads.core.frozen_record import FrozenRecord
from heads.errors import FormatError

__all__ = [
    "MAX_PACKET_BYTES",
    "Packet",
    "Reader",
    "encode_mpi",
    "encode_packet",
    "encode_subpacket",
    "packet_header",
    "read_packets",
    "read_subpackets",
]

# A key, a user ID or a signature is a few hundred bytes; a photo ID (user attribute) in a
# key gpg exported may reach some KiB.  Anything beyond 1 MiB is not a key.
MAX_PACKET_BYTES: Final = 1024 * 1024


class Packet(FrozenRecord):
    """One packet: its tag, body, and the offset of its header in the source."""

    tag: int
    body: bytes
    offset: int


def encode_packet(tag: int, body: bytes) -> bytes:
    """An old-format packet (RFC 4880 §4.2.1): tag in 4 bits, a 1-, 2- or 4-byte length."""
    if not 0 < tag < 16:
        raise ValueError("old-format packets carry tags 1-15")
    if len(body) < 0x100:
        return bytes((0x80 | tag << 2,)) + len(body).to_bytes(1, "big") + body
    if len(body) < 0x10000:
        return bytes((0x80 | tag << 2 | 1,)) + len(body).to_bytes(2, "big") + body
    return bytes((0x80 | tag << 2 | 2,)) + len(body).to_bytes(4, "big") + body


def packet_header(
    data: bytes, pos: int, *, source: str, offset: int, what: str
) -> tuple[int, int, int]:
    """(tag, body start, body length) of the packet whose header is at ``pos``, either format
    (RFC 4880 §4.2); the body is not checked against the end of ``data``.

    Raises:
        FormatError: at ``offset``: a byte that starts no packet, a truncated header, or a
            partial or indeterminate length (which no ``what`` packet uses).
    """
    ctb = data[pos]
    if not ctb & 0x80:
        raise FormatError(f"not an OpenPGP packet (byte 0x{ctb:02x})", source=source, offset=offset)
    if ctb & 0x40:  # new format: tag in 6 bits, then a 1-, 2- or 5-octet length
        tag = ctb & 0x3F
        if pos + 1 >= len(data):
            raise FormatError("truncated packet header", source=source, offset=offset)
        first = data[pos + 1]
        if first < 192:
            return tag, pos + 2, first
        if first < 224:
            if pos + 2 >= len(data):
                raise FormatError("truncated packet header", source=source, offset=offset)
            return tag, pos + 3, ((first - 192) << 8) + data[pos + 2] + 192
        if first == 255:
            start = pos + 6
            if start > len(data):
                raise FormatError("truncated packet header", source=source, offset=offset)
            return tag, start, int.from_bytes(data[pos + 2 : start], "big")
        raise FormatError(f"partial body length: not a {what} packet", source=source, offset=offset)
    # old format: tag in 4 bits, length type in 2
    width = {0: 1, 1: 2, 2: 4}.get(ctb & 0x03)
    if width is None:
        raise FormatError(
            f"indeterminate packet length: not a {what} packet", source=source, offset=offset
        )
    start = pos + 1 + width
    if start > len(data):
        raise FormatError("truncated packet header", source=source, offset=offset)
    return (ctb >> 2) & 0x0F, start, int.from_bytes(data[pos + 1 : start], "big")


def read_packets(data: bytes, *, source: str, base: int = 0) -> list[Packet]:
    """Split ``data`` into packets.

    Raises:
        FormatError: a byte that starts no packet, a truncated header or body, a partial or
            indeterminate length, or a packet larger than :data:`MAX_PACKET_BYTES`.
    """
    packets: list[Packet] = []
    pos = 0
    while pos < len(data):
        where = base + pos
        tag, start, length = packet_header(
            data, pos, source=source, offset=where, what="key or signature"
        )
        if length > MAX_PACKET_BYTES:
            raise FormatError(
                f"packet of {length} bytes, more than a key or signature needs",
                source=source,
                offset=where,
            )
        end = start + length
        if end > len(data):
            raise FormatError(
                f"packet of {length} bytes runs past the end of the data",
                source=source,
                offset=where,
            )
        if tag == 0:
            raise FormatError("packet tag 0 is reserved", source=source, offset=where)
        packets.append(Packet(tag, data[start:end], where))
        pos = end
    return packets


def encode_mpi(value: bytes) -> bytes:
    """An MPI (RFC 4880 §3.2) of a big-endian byte string: bit count, then the bytes
    without leading zeros."""
    stripped = value.lstrip(b"\x00")
    bits = len(stripped) * 8 - (8 - stripped[0].bit_length()) if stripped else 0
    return bits.to_bytes(2, "big") + stripped


def encode_subpacket(kind: int, body: bytes) -> bytes:
    """A signature subpacket (RFC 4880 §5.2.3.1) with a 1- or 2-byte length."""
    length = len(body) + 1
    if length < 192:
        header = bytes((length,))
    elif length < 8384:
        length -= 192
        header = bytes(((length >> 8) + 192, length & 0xFF))
    else:
        header = b"\xff" + length.to_bytes(4, "big")
    return header + bytes((kind,)) + body


class Reader:
    """Bounded reads from one packet body; every overrun is a FormatError at its offset."""

    __slots__ = ("_base", "_data", "_source", "pos")

    def __init__(self, data: bytes, *, source: str, base: int) -> None:
        self._data = data
        self._source = source
        self._base = base
        self.pos = 0

    def fail(self, reason: str) -> FormatError:
        return FormatError(reason, source=self._source, offset=self._base + self.pos)

    @property
    def remaining(self) -> int:
        return len(self._data) - self.pos

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or self.pos + count > len(self._data):
            raise self.fail(f"truncated {what}")
        chunk = self._data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def uint(self, width: int, what: str) -> int:
        return int.from_bytes(self.take(width, what), "big")

    def mpi(self, what: str, *, max_bytes: int) -> bytes:
        """An MPI's bytes (big-endian); no bit may lie above its stated bit count.

        A top byte with fewer bits than stated is tolerated: some writers count the bits of
        a fixed-size field (an EdDSA seed or signature half) rather than of its value.
        """
        start = self.pos
        bits = self.uint(2, what)
        size = (bits + 7) // 8
        if size > max_bytes:
            self.pos = start
            raise self.fail(f"{what} of {bits} bits, more than {max_bytes * 8}")
        value = self.take(size, what)
        if value and value[0].bit_length() > bits - (size - 1) * 8:
            self.pos = start
            raise self.fail(f"{what}: its bit count does not match its value")
        return value

    def rest(self) -> bytes:
        return self.take(self.remaining, "data")


def read_subpackets(data: bytes, *, source: str, base: int) -> list[tuple[int, bool, bytes]]:
    """(type, critical, body) of each subpacket of one area (RFC 4880 §5.2.3.1).

    Raises:
        FormatError: a length that overruns the area, or an empty subpacket.
    """
    reader = Reader(data, source=source, base=base)
    found: list[tuple[int, bool, bytes]] = []
    while reader.remaining:
        first = reader.byte("subpacket length")
        if first < 192:
            length = first
        elif first < 255:
            length = ((first - 192) << 8) + reader.byte("subpacket length") + 192
        else:
            length = reader.uint(4, "subpacket length")
        if length == 0:
            raise reader.fail("empty subpacket")
        kind = reader.byte("subpacket type")
        body = reader.take(length - 1, "subpacket")
        found.append((kind & 0x7F, bool(kind & 0x80), body))
    return found
