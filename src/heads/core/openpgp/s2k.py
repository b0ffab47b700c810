"""The iterated and salted string-to-key function (RFC 4880 §3.7.1.3).

The passphrase protecting an exported secret key becomes a cipher key by hashing the salt and
passphrase, repeated up to a byte count coded in one octet.  The repetition is fed to hashlib
in 64 KiB chunks, so the cost is the hash's own speed (docs/openpgp.md §Secret key backup).
The chunk holds the passphrase and is overwritten before it is released.
"""

from __future__ import annotations

import hashlib
from typing import Final

from heads.core.secret import Secret

__all__ = ["HASHES", "MAX_COUNT", "decode_count", "derive_key"]

HASHES: Final = {2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
MAX_COUNT: Final = (16 + 15) << (15 + 6)  # coded count 255: 65011712 bytes
_CHUNK: Final = 64 * 1024


def decode_count(coded: int) -> int:
    """The number of bytes hashed for a coded count (RFC 4880 §3.7.1.3)."""
    return (16 + (coded & 15)) << ((coded >> 4) + 6)


def derive_key(
    passphrase: Secret, *, hash_id: int, salt: bytes, coded_count: int, size: int
) -> bytearray:
    """``size`` bytes of key from ``passphrase`` (a fresh bytearray: the caller wipes it).

    A key longer than one digest takes further hash contexts preloaded with 1, 2, ... zero
    bytes (RFC 4880 §3.7.1).

    Raises:
        ValueError: a hash this module does not know (callers check :data:`HASHES` first).
    """
    name = HASHES[hash_id]
    unit = bytearray(salt) + passphrase.reveal()
    count = max(decode_count(coded_count), len(unit))
    chunk = bytearray(unit * (_CHUNK // len(unit) + 1)) if unit else bytearray()
    key = bytearray()
    try:
        preload = 0
        while len(key) < size:
            digest = hashlib.new(name)
            digest.update(bytes(preload))
            left = count
            while unit and left >= len(chunk):
                digest.update(chunk)
                left -= len(chunk)
            if left:
                digest.update(memoryview(chunk)[:left])
            key += digest.digest()
            preload += 1
        return key[:size]
    finally:
        for buffer in (unit, chunk, key):
            buffer[:] = bytes(len(buffer))
