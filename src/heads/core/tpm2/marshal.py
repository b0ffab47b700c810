"""Marshalling of TPM 2.0 values: big-endian integers, sized buffers (TPM2B), lists (TPML).

:class:`Reader` reads a response (or a stored structure) and raises :class:`FormatError`
naming what it was reading and which field was short or wrong: a garbled or hostile response
never surfaces as ``IndexError`` or ``struct.error`` (docs/tpm-objects.md §The command layer).
"""

from __future__ import annotations

import struct
from typing import Final

from heads.errors import FormatError

__all__ = ["Reader", "tpm2b", "u8", "u16", "u32", "u64"]

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")


def u8(value: int) -> bytes:
    return bytes((value,))


def u16(value: int) -> bytes:
    return _U16.pack(value)


def u32(value: int) -> bytes:
    return _U32.pack(value)


def u64(value: int) -> bytes:
    return _U64.pack(value)


def tpm2b(data: bytes | bytearray) -> bytes:
    """A TPM2B: a 16-bit size, then the bytes.

    Raises:
        ValueError: more than 65535 bytes.
    """
    if len(data) > 0xFFFF:
        raise ValueError("a TPM2B holds at most 65535 bytes")
    return _U16.pack(len(data)) + bytes(data)


class Reader:
    """Reads marshalled TPM values from ``data``; ``source`` names it in errors."""

    __slots__ = ("_data", "_pos", "source")

    def __init__(self, data: bytes, source: str) -> None:
        self._data = data
        self._pos = 0
        self.source = source

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def fail(self, field: str, reason: str) -> FormatError:
        return FormatError(f"{field}: {reason}", source=self.source, offset=self._pos)

    def take(self, n: int, field: str) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise self.fail(
                field, f"needs {n} bytes, only {max(0, self.remaining)} left in the buffer"
            )
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        (value,) = _U16.unpack(self.take(2, field))
        return int(value)

    def u32(self, field: str) -> int:
        (value,) = _U32.unpack(self.take(4, field))
        return int(value)

    def u64(self, field: str) -> int:
        (value,) = _U64.unpack(self.take(8, field))
        return int(value)

    def tpm2b(self, field: str, max_size: int = 0xFFFF) -> bytes:
        size = self.u16(f"{field}.size")
        if size > max_size:
            raise self.fail(field, f"size {size} exceeds the largest allowed, {max_size}")
        return self.take(size, field)

    def count(self, field: str, item_size: int, max_count: int) -> int:
        """A TPML count, checked against ``max_count`` and against the bytes left."""
        n = self.u32(f"{field}.count")
        if n > max_count:
            raise self.fail(field, f"count {n} exceeds the largest allowed, {max_count}")
        if n * item_size > self.remaining:
            raise self.fail(field, f"count {n} does not fit the {self.remaining} bytes left")
        return n

    def end(self, field: str) -> None:
        """Raises FormatError unless everything was read."""
        if self.remaining:
            raise self.fail(field, f"{self.remaining} unexpected bytes after it")
