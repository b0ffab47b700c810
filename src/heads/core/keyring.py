"""The structure of a public keyring file, checked before gpgv is trusted with it.

gpgv reads an empty or corrupt keyring without complaint on its status lines: a signature
then comes back "no public key", which reads as tampering (exit 3) when the fault is the
keyring the owner gave (a configuration error, exit 2).  This module walks the file's framing
so that such a keyring is refused by name before any signature is checked.  It does not
validate keys cryptographically; gpgv does that.

Two formats are accepted, the two gpgv reads:

* an OpenPGP packet sequence (``gpg --export``; RFC 9580 §4.2 packet headers, old and new
  format): every packet's length must fit the file, the first packet must be a public key
  (tag 6) of version 3 to 6, and no packet may use an indeterminate or partial length (those
  exist only for data packets, never in a keyring);
* a GnuPG keybox (``pubring.kbx``; GnuPG ``kbx/keybox-blob.c``): a sequence of blobs, each a
  4-byte big-endian length and a type byte, the first a header blob (type 1) carrying the
  magic ``KBXf``; at least one blob must hold an OpenPGP key (type 2).
"""

from __future__ import annotations

from typing import Final

from heads.core.frozen_record import FrozenRecord
from heads.core.openpgp.packets import packet_header
from heads.errors import FormatError

__all__ = ["MAX_KEYRING_BYTES", "KeyringSummary", "parse_keyring"]

# An owner keyring holds one or a few keys (a few KiB each); 16 MiB is far beyond that.
MAX_KEYRING_BYTES: Final = 16 * 1024 * 1024
_TAG_PUBLIC_KEY: Final = 6
_TAG_PUBLIC_SUBKEY: Final = 14
_KEY_VERSIONS: Final = frozenset({3, 4, 5, 6})
_KBX_HEADER: Final = 1
_KBX_OPENPGP: Final = 2
_KBX_MAGIC: Final = b"KBXf"
_KBX_MIN_BLOB: Final = 5  # length field and type byte


class KeyringSummary(FrozenRecord):
    """What the framing says: the format and how many primary public keys it holds."""

    format: str  # "openpgp" or "keybox"
    keys: int


def _packet(data: bytes, pos: int, source: str) -> tuple[int, int, int]:
    """(tag, body start, body end) of the packet at ``pos``."""
    tag, start, length = packet_header(data, pos, source=source, offset=pos, what="keyring")
    end = start + length
    if end > len(data):
        raise FormatError(
            f"packet of {length} bytes runs past the end of the file", source=source, offset=pos
        )
    return tag, start, end


def _parse_openpgp(data: bytes, source: str) -> KeyringSummary:
    keys = 0
    pos = 0
    while pos < len(data):
        tag, start, end = _packet(data, pos, source)
        if pos == 0 and tag != _TAG_PUBLIC_KEY:
            raise FormatError(
                f"starts with an OpenPGP packet of type {tag}, not a public key",
                source=source,
                offset=0,
            )
        if tag in {_TAG_PUBLIC_KEY, _TAG_PUBLIC_SUBKEY}:
            if start == end or data[start] not in _KEY_VERSIONS:
                raise FormatError(
                    "a public key packet of unknown version", source=source, offset=pos
                )
            keys += tag == _TAG_PUBLIC_KEY
        pos = end
    return KeyringSummary("openpgp", keys)


def _parse_keybox(data: bytes, source: str) -> KeyringSummary:
    keys = 0
    pos = 0
    while pos < len(data):
        if pos + _KBX_MIN_BLOB > len(data):
            raise FormatError("truncated keybox blob", source=source, offset=pos)
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4]
        if length < _KBX_MIN_BLOB or pos + length > len(data):
            raise FormatError(
                f"keybox blob of {length} bytes does not fit the file", source=source, offset=pos
            )
        if pos == 0 and kind != _KBX_HEADER:
            raise FormatError("keybox without a header blob", source=source, offset=0)
        keys += kind == _KBX_OPENPGP
        pos += length
    return KeyringSummary("keybox", keys)


def parse_keyring(data: bytes, *, source: str) -> KeyringSummary:
    """Check the framing of a binary keyring and count its public keys.

    Raises:
        FormatError: empty, ASCII-armored, too large, corrupt framing, or no public key.
    """
    if not data:
        raise FormatError("the keyring is empty", source=source)
    if len(data) > MAX_KEYRING_BYTES:
        raise FormatError(f"larger than {MAX_KEYRING_BYTES} bytes", source=source)
    if data.lstrip().startswith(b"-----BEGIN PGP"):
        raise FormatError("ASCII-armored; gpgv needs a binary keyring", source=source)
    if len(data) >= 12 and data[8:12] == _KBX_MAGIC:
        summary = _parse_keybox(data, source)
    else:
        summary = _parse_openpgp(data, source)
    if summary.keys == 0:
        raise FormatError("holds no public key", source=source)
    return summary
