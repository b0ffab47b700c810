"""LUKS1/LUKS2 headers: just enough to measure what Heads measures into PCR 6 (docs/disk-key.md).

Heads' ``qubes-measure-luks.sh`` runs ``cryptsetup luksHeaderBackup`` on each device and
measures the SHA-256 of every backup file.  The backup is a prefix of the device, rounded up to
the page size (4096 bytes), and we reproduce its bytes without cryptsetup (the payload has
none):

* LUKS2: ``2 * hdr_size + config.keyslots_size`` bytes (both binary headers, both JSON areas,
  the keyslots area); the primary header's checksum is checked first;
* LUKS1: up to the end of the last key-material area (``keyMaterialOffset`` +
  ``ceil(keyBytes * stripes / 512)`` sectors of the slot placed last), zero-padded to the page
  size; the bytes between the 592-byte header and the first key-material area are kept as
  they are on the device (cryptsetup 2.6.1 does not wipe them either), so they are measured.

A device is read in two steps: :func:`header_bytes_needed` on the first 4096 bytes says how
much to read for :func:`parse_header`, which says how many bytes the backup covers
(:attr:`LuksHeader.backup_size`); :func:`header_backup` turns those bytes into the backup.
Everything here is hostile input: any inconsistency raises FormatError naming the source.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from typing import Final

from heads.errors import FormatError

__all__ = [
    "FIRST_READ",
    "MAX_BACKUP_BYTES",
    "LuksHeader",
    "backup_padding",
    "header_backup",
    "header_bytes_needed",
    "parse_header",
]

MAGIC: Final = b"LUKS\xba\xbe"
#: Bytes to read first: a LUKS2 binary header, more than a LUKS1 header.
FIRST_READ: Final = 4096
_PAGE: Final = 4096
_SECTOR: Final = 512
#: More than any header cryptsetup makes (LUKS2 keyslots areas are at most 128 MiB).
MAX_BACKUP_BYTES: Final = 136 * 1024 * 1024
_LUKS1_HEADER: Final = 592
_LUKS1_SLOTS: Final = 8
_LUKS2_HDR_SIZES: Final = frozenset(0x4000 << i for i in range(9))  # 16 KiB .. 4 MiB
_UUID_RE: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


@dataclass(frozen=True, slots=True)
class LuksHeader:
    """What the measurement needs from a LUKS header.

    Attributes:
        version: 1 or 2.
        uuid: the LUKS UUID (as ``cryptsetup luksUUID`` prints it).
        backup_size: bytes of the device the header backup covers (before page rounding).
    """

    version: int
    uuid: str
    backup_size: int


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def _cstr(raw: bytes, *, source: str, offset: int, what: str) -> str:
    text = raw.split(b"\0", 1)[0]
    try:
        return text.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(f"{what} is not ASCII", source=source, offset=offset) from None


def _uuid(raw: bytes, *, source: str, offset: int) -> str:
    uuid = _cstr(raw, source=source, offset=offset, what="UUID")
    if not _UUID_RE.fullmatch(uuid):
        raise FormatError(f"bad UUID {uuid[:40]!r}", source=source, offset=offset)
    return uuid


def _version(data: bytes, source: str) -> int:
    if len(data) < 8:
        raise FormatError(f"only {len(data)} bytes: too short for a LUKS header", source=source)
    if data[:6] != MAGIC:
        raise FormatError("not a LUKS device (no LUKS magic)", source=source, offset=0)
    (version,) = struct.unpack_from(">H", data, 6)
    if version not in (1, 2):
        raise FormatError(f"unsupported LUKS version {version}", source=source, offset=6)
    return int(version)


def header_bytes_needed(first: bytes, *, source: str) -> int:
    """How many bytes from the start of the device :func:`parse_header` needs.

    Args:
        first: at least the first :data:`FIRST_READ` bytes of the device (fewer only if the
            device is that small).
        source: the device, for error messages.

    Raises:
        FormatError: not a LUKS1/LUKS2 header, or an impossible header size.
    """
    version = _version(first, source)
    if version == 1:
        return _LUKS1_HEADER
    if len(first) < 16:
        raise FormatError("truncated LUKS2 header", source=source)
    (hdr_size,) = struct.unpack_from(">Q", first, 8)
    if hdr_size not in _LUKS2_HDR_SIZES:
        raise FormatError(f"impossible LUKS2 header size {hdr_size}", source=source, offset=8)
    return int(hdr_size)


def _parse_luks1(data: bytes, source: str) -> LuksHeader:
    if len(data) < _LUKS1_HEADER:
        raise FormatError(f"truncated LUKS1 header ({len(data)} bytes)", source=source)
    payload_offset, key_bytes = struct.unpack_from(">II", data, 104)
    uuid = _uuid(data[168:208], source=source, offset=168)
    if not 0 < key_bytes <= 512:
        raise FormatError(f"impossible key size {key_bytes}", source=source, offset=108)
    end = 0
    for slot in range(_LUKS1_SLOTS):
        at = 208 + 48 * slot
        _active, _iterations = struct.unpack_from(">II", data, at)
        material, stripes = struct.unpack_from(">II", data, at + 40)
        if material == 0 or not 0 < stripes <= 0x10000:
            raise FormatError(
                f"key slot {slot}: impossible key material at sector {material} "
                f"with {stripes} stripes",
                source=source,
                offset=at + 40,
            )
        # cryptsetup's LUKS_device_sectors: the end of the area placed last.
        end = max(end, material + _round_up(key_bytes * stripes, _SECTOR) // _SECTOR)
    size = end * _SECTOR
    if size > MAX_BACKUP_BYTES:
        raise FormatError(f"key material ends at {size} bytes: too large", source=source)
    if payload_offset and payload_offset * _SECTOR < size:
        raise FormatError(
            f"data at sector {payload_offset} overlaps the key material",
            source=source,
            offset=104,
        )
    return LuksHeader(1, uuid, size)


def _luks2_checksum_ok(data: bytes, hdr_size: int) -> bool:
    alg = data[72:104].split(b"\0", 1)[0]
    if alg != b"sha256":
        return False
    blanked = data[:448] + b"\0" * 64 + data[512:hdr_size]
    return hashlib.sha256(blanked).digest() == data[448:480]


def _json_int(obj: object, what: str, source: str) -> int:
    # LUKS2 JSON stores 64-bit numbers as decimal strings.
    if not isinstance(obj, str) or not obj.isdigit() or len(obj) > 20:
        raise FormatError(f"{what} is not a decimal string", source=source)
    return int(obj)


def _parse_luks2(data: bytes, source: str) -> LuksHeader:
    if len(data) < FIRST_READ:
        raise FormatError(f"truncated LUKS2 header ({len(data)} bytes)", source=source)
    hdr_size = header_bytes_needed(data, source=source)
    if len(data) < hdr_size:
        raise FormatError(
            f"truncated LUKS2 header ({len(data)} of {hdr_size} bytes)", source=source
        )
    (hdr_offset,) = struct.unpack_from(">Q", data, 256)
    if hdr_offset != 0:
        raise FormatError(
            f"the primary LUKS2 header says it is at offset {hdr_offset}", source=source, offset=256
        )
    if not _luks2_checksum_ok(data, hdr_size):
        raise FormatError("LUKS2 header checksum mismatch", source=source, offset=448)
    uuid = _uuid(data[168:208], source=source, offset=168)
    area = data[FIRST_READ:hdr_size].split(b"\0", 1)[0]
    try:
        meta = json.loads(area.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FormatError("LUKS2 metadata is not JSON", source=source, offset=FIRST_READ) from None
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict):
        raise FormatError("LUKS2 metadata has no config object", source=source)
    keyslots_size = _json_int(config.get("keyslots_size"), "config.keyslots_size", source)
    size = 2 * hdr_size + keyslots_size
    if keyslots_size % _PAGE or size > MAX_BACKUP_BYTES:
        raise FormatError(f"impossible keyslots area size {keyslots_size}", source=source)
    return LuksHeader(2, uuid, size)


def parse_header(data: bytes, *, source: str) -> LuksHeader:
    """Parse a LUKS header from the device's first :func:`header_bytes_needed` bytes (or more).

    Raises:
        FormatError: not a LUKS header, or an inconsistent one.
    """
    if _version(data, source) == 1:
        return _parse_luks1(data, source)
    return _parse_luks2(data, source)


def header_backup(header: LuksHeader, data: bytes, *, source: str) -> bytes:
    """The bytes ``cryptsetup luksHeaderBackup`` writes, from the device's first
    ``header.backup_size`` bytes (or more).

    Raises:
        FormatError: ``data`` is shorter than the header says the backup covers.
    """
    if len(data) < header.backup_size:
        raise FormatError(
            f"device ends at {len(data)} bytes, inside its LUKS header area "
            f"({header.backup_size} bytes)",
            source=source,
        )
    return data[: header.backup_size] + bytes(backup_padding(header))


def backup_padding(header: LuksHeader) -> int:
    """Zero bytes after the device's ``backup_size`` bytes in the backup (page rounding)."""
    return _round_up(header.backup_size, _PAGE) - header.backup_size
