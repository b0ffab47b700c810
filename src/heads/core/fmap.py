"""FMAP: the flash map naming the regions of a firmware image (docs/firmware-image.md).

A coreboot image carries one FMAP blob, usually in a region itself named ``FMAP``.  Layout
(flashmap's ``fmap.h``, all little-endian, packed):

* header: signature ``__FMAP__``, version major 1 and minor, the flash base address (u64),
  the flash size (u32), a 32-byte NUL-padded name, the number of areas (u16);
* each area: offset (u32, from the flash start), size (u32), 32-byte name, flags (u16).

Areas may nest (``SI_BIOS`` holds ``COREBOOT``) but never partly overlap, and all of them lie
inside the flash; an FMAP breaking either rule is refused rather than guessed at.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from heads.errors import FormatError

__all__ = [
    "AREA_PRESERVE",
    "AREA_RO",
    "AREA_STATIC",
    "Fmap",
    "FmapArea",
    "find_fmap",
    "parse_fmap",
]

SIGNATURE: Final = b"__FMAP__"
_HEADER: Final = struct.Struct("<8sBBQI32sH")
_AREA: Final = struct.Struct("<II32sH")
_NAME_LEN: Final = 32
_VERSION_MAJOR: Final = 1
_VERSION_MINOR: Final = 1
#: More areas than any real layout has; caps the work a hostile header can ask for.
MAX_AREAS: Final = 256
AREA_STATIC: Final = 1 << 0
AREA_RO: Final = 1 << 2
AREA_PRESERVE: Final = 1 << 3


@dataclass(frozen=True, slots=True)
class FmapArea:
    """One named region: ``size`` bytes from ``offset`` (bytes from the start of the flash)."""

    name: str
    offset: int
    size: int
    flags: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.size

    def contains(self, other: FmapArea) -> bool:
        return self.offset <= other.offset and other.end <= self.end


@dataclass(frozen=True, slots=True)
class Fmap:
    """A flash map: the flash's name, base address and size, and its areas in FMAP order."""

    name: str
    base: int
    size: int
    areas: tuple[FmapArea, ...]
    version_minor: int = _VERSION_MINOR

    def area(self, name: str) -> FmapArea | None:
        return next((a for a in self.areas if a.name == name), None)

    def to_bytes(self) -> bytes:
        """The FMAP blob, as ``fmaptool`` writes it."""
        out = bytearray(
            _HEADER.pack(
                SIGNATURE,
                _VERSION_MAJOR,
                self.version_minor,
                self.base,
                self.size,
                _name_field(self.name),
                len(self.areas),
            )
        )
        for a in self.areas:
            out += _AREA.pack(a.offset, a.size, _name_field(a.name), a.flags)
        return bytes(out)

    @property
    def blob_size(self) -> int:
        return _HEADER.size + _AREA.size * len(self.areas)


def _name_field(name: str) -> bytes:
    raw = name.encode("ascii")
    if not raw or len(raw) >= _NAME_LEN:
        raise ValueError(f"FMAP name {name!r} is empty or longer than 31 characters")
    return raw.ljust(_NAME_LEN, b"\0")


def _name(field: bytes, source: str, offset: int) -> str:
    raw = field.split(b"\0", 1)[0]
    if not raw or not all(0x21 <= b <= 0x7E for b in raw):
        raise FormatError("FMAP name is empty or not printable ASCII", source=source, offset=offset)
    return raw.decode("ascii")


def check_areas(areas: Sequence[FmapArea], size: int, source: str, offset: int = 0) -> None:
    """Refuse areas outside the flash, repeated names and partial overlaps.

    Raises:
        FormatError: naming the area(s) at fault.
    """
    seen: set[str] = set()
    for a in areas:
        if a.name in seen:
            raise FormatError(f"FMAP area {a.name} is defined twice", source=source, offset=offset)
        seen.add(a.name)
        if a.size == 0 or a.end > size:
            raise FormatError(
                f"FMAP area {a.name} ({a.offset:#x}+{a.size:#x}) lies outside the "
                f"{size:#x}-byte flash",
                source=source,
                offset=offset,
            )
    for i, a in enumerate(areas):
        for b in areas[i + 1 :]:
            disjoint = a.end <= b.offset or b.end <= a.offset
            if not (disjoint or a.contains(b) or b.contains(a)):
                raise FormatError(
                    f"FMAP areas {a.name} and {b.name} partly overlap",
                    source=source,
                    offset=offset,
                )


def parse_fmap(blob: bytes, offset: int = 0, *, source: str = "FMAP") -> Fmap:
    """The FMAP whose header starts at ``offset`` in ``blob``.

    Raises:
        FormatError: a wrong signature or version, a truncated area list, a bad name, or areas
            outside the flash or partly overlapping; the message names ``source`` and the
            byte offset.
    """
    if offset + _HEADER.size > len(blob):
        raise FormatError("FMAP header runs past the end", source=source, offset=offset)
    sig, major, minor, base, size, name, count = _HEADER.unpack_from(blob, offset)
    if sig != SIGNATURE:
        raise FormatError("no FMAP signature", source=source, offset=offset)
    if major != _VERSION_MAJOR:
        raise FormatError(f"FMAP version {major}.{minor} is not 1.x", source=source, offset=offset)
    if count > MAX_AREAS:
        raise FormatError(
            f"FMAP has {count} areas, more than the {MAX_AREAS} allowed",
            source=source,
            offset=offset,
        )
    end = offset + _HEADER.size + count * _AREA.size
    if end > len(blob):
        raise FormatError(f"FMAP's {count} areas run past the end", source=source, offset=offset)
    areas = []
    for i in range(count):
        pos = offset + _HEADER.size + i * _AREA.size
        a_off, a_size, a_name, flags = _AREA.unpack_from(blob, pos)
        areas.append(FmapArea(_name(a_name, source, pos + 8), a_off, a_size, flags))
    check_areas(areas, size, source, offset)
    return Fmap(_name(name, source, offset + 22), base, size, tuple(areas), minor)


def find_fmap(image: bytes, *, source: str = "firmware image") -> tuple[int, Fmap] | None:
    """The first valid FMAP in ``image`` and its offset, or None when there is none.

    Every occurrence of the signature is tried, as flashmap's search does, so that a stray
    ``__FMAP__`` in file data does not hide the real map; the first one that parses wins.

    Raises:
        FormatError: signatures exist but none is a valid FMAP (the first one's reason).
    """
    first_error: FormatError | None = None
    pos = image.find(SIGNATURE)
    while pos >= 0:
        try:
            return pos, parse_fmap(image, pos, source=source)
        except FormatError as exc:
            first_error = first_error or exc
        pos = image.find(SIGNATURE, pos + 1)
    if first_error is not None:
        raise first_error
    return None
