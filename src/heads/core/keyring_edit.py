"""Adding a public key to the firmware image's keyring without gpg (docs/firmware-update.md
§Adding a key).

The payload carries gpgv but not gpg, so the runtime cannot ``gpg --import``.  gpgv reads
two keyring formats and tells them apart by content, not by name: a GnuPG keybox (``KBXf``
header) or a plain sequence of OpenPGP keyblocks.  Adding a key therefore takes the keyblocks
out of the current keyring (a keybox blob of type 2 holds its keyblock verbatim, at the
offset and length given in the blob's fixed header: GnuPG ``kbx/keybox-blob.c``), appends the
new key (ASCII armor removed, its CRC-24 checked: RFC 9580 §6) and writes the result as a
keyblock sequence at the keyring's usual name.  Trust is not recorded: gpgv has no trust
model, every key in its keyring counts.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from heads.core.cbfs import CbfsFile
from heads.core.flash_image import FlashImage
from heads.core.keyring import MAX_KEYRING_BYTES, parse_keyring
from heads.errors import FormatError

__all__ = ["PUBRING", "dearmor", "keyblocks", "with_added_key"]

PUBRING: Final = "heads/initrd/.gnupg/pubring.kbx"
_LEGACY_PUBRING: Final = "heads/initrd/.gnupg/pubring.gpg"
_TRUSTDB: Final = "heads/initrd/.gnupg/trustdb.gpg"
_BEGIN: Final = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
_END: Final = b"-----END PGP PUBLIC KEY BLOCK-----"
_KBX_MAGIC: Final = b"KBXf"
_KBX_OPENPGP: Final = 2
_KBX_FIXED: Final = 16  # length, type, version, flags, keyblock offset, keyblock length
_CRC24_INIT: Final = 0xB704CE
_CRC24_POLY: Final = 0x1864CFB


def _crc24(data: bytes) -> int:
    crc = _CRC24_INIT
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= _CRC24_POLY
    return crc & 0xFFFFFF


def dearmor(data: bytes, *, source: str) -> bytes:
    """The binary key of an ASCII-armored public key block; binary input is returned as is.

    Raises:
        FormatError: armor without its end line, bad base64, or a checksum that differs.
    """
    text = data.lstrip()
    if not text.startswith(b"-----BEGIN PGP"):
        return data
    lines = text.splitlines()
    if lines[0].strip() != _BEGIN:
        raise FormatError("armored, but not a PGP PUBLIC KEY BLOCK", source=source, line=1)
    try:
        end = next(i for i, ln in enumerate(lines) if ln.strip() == _END)
    except StopIteration:
        raise FormatError("the armor has no END line", source=source) from None
    body = lines[1:end]
    # Armor headers ("Comment: ...") end at the first empty line.
    if any(b":" in ln for ln in body[:1]):
        blank = next((i for i, ln in enumerate(body) if not ln.strip()), None)
        if blank is None:
            raise FormatError("armor headers without the empty line after them", source=source)
        body = body[blank + 1 :]
    checksum = None
    if body and body[-1].startswith(b"="):
        checksum, body = body[-1][1:].strip(), body[:-1]
    try:
        decoded = base64.b64decode(b"".join(ln.strip() for ln in body), validate=True)
        expected = base64.b64decode(checksum, validate=True) if checksum is not None else None
    except (binascii.Error, ValueError):
        raise FormatError("the armor is not valid base64", source=source) from None
    if expected is not None and int.from_bytes(expected, "big") != _crc24(decoded):
        raise FormatError("the armor checksum (CRC-24) does not match", source=source)
    return decoded


def keyblocks(data: bytes, *, source: str) -> bytes:
    """The OpenPGP keyblocks of a keyring: a keybox's blobs unpacked, a keyblock sequence as is.

    Raises:
        FormatError: the keyring's framing is wrong (:func:`heads.core.keyring.parse_keyring`)
            or a keybox blob points outside itself.
    """
    summary = parse_keyring(data, source=source)
    if summary.format != "keybox":
        return data
    out = bytearray()
    pos = 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4] == _KBX_OPENPGP:
            if length < _KBX_FIXED:
                raise FormatError("keybox blob too short", source=source, offset=pos)
            offset = int.from_bytes(data[pos + 8 : pos + 12], "big")
            size = int.from_bytes(data[pos + 12 : pos + 16], "big")
            if offset < _KBX_FIXED or offset + size > length:
                raise FormatError(
                    "keybox blob's keyblock lies outside the blob", source=source, offset=pos
                )
            out += data[pos + offset : pos + offset + size]
        pos += length
    return bytes(out)


def with_added_key(image: FlashImage, key: bytes, *, source: str) -> tuple[FlashImage, int]:
    """``image`` with ``key`` (binary or armored) added to its keyring; the key count after.

    Raises:
        FormatError: the key or the current keyring does not parse, or the result is too
            large.
        ValueError: the keyring does not fit in the image.
    """
    new_key = dearmor(key, source=source)
    parse_keyring(new_key, source=source)
    current = image.file(PUBRING) or image.file(_LEGACY_PUBRING)
    where = f"{image.source}: keyring"
    old = keyblocks(current.content(source=where), source=where) if current is not None else b""
    ring = old + new_key
    if len(ring) > MAX_KEYRING_BYTES:
        raise FormatError(
            f"the keyring would be larger than {MAX_KEYRING_BYTES} bytes", source=source
        )
    count = parse_keyring(ring, source=where).keys
    updated = image
    for name in (PUBRING, _LEGACY_PUBRING, _TRUSTDB):
        if updated.file(name) is not None:
            updated = updated.without_file(name)
    return updated.with_file(CbfsFile(PUBRING, ring)), count
