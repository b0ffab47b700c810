"""The TPM's key derivation functions (TPM 2.0 Part 1 §11.4.10): KDFa (SP 800-108 counter mode
with HMAC) and KDFe (SP 800-56A concatenation KDF), and RSA-OAEP encryption of a salt
(docs/tpm-objects.md §Sessions and parameter encryption)."""

from __future__ import annotations

import hashlib
import hmac
import struct

__all__ = ["kdfa", "kdfe", "oaep_encrypt"]


def _label(label: bytes) -> bytes:
    return label if label.endswith(b"\0") else label + b"\0"


def kdfa(
    hash_name: str, key: bytes, label: bytes, context_u: bytes, context_v: bytes, *, bits: int
) -> bytes:
    """KDFa: HMAC(key, counter || label || 0 || contextU || contextV || bits), repeated."""
    out = bytearray()
    counter = 0
    tail = _label(label) + context_u + context_v + struct.pack(">I", bits)
    while len(out) * 8 < bits:
        counter += 1
        out += hmac.new(key, struct.pack(">I", counter) + tail, hash_name).digest()
    return _truncate(out, bits)


def kdfe(
    hash_name: str, z: bytes, label: bytes, party_u: bytes, party_v: bytes, *, bits: int
) -> bytes:
    """KDFe: H(counter || Z || label || 0 || partyUInfo || partyVInfo), repeated."""
    out = bytearray()
    counter = 0
    tail = _label(label) + party_u + party_v
    while len(out) * 8 < bits:
        counter += 1
        out += hashlib.new(hash_name, struct.pack(">I", counter) + z + tail).digest()
    return _truncate(out, bits)


def _truncate(out: bytearray, bits: int) -> bytes:
    result = bytearray(out[: (bits + 7) // 8])
    if bits % 8:
        result[0] &= (1 << (bits % 8)) - 1
    return bytes(result)


def _mgf1(hash_name: str, seed: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.new(hash_name, seed + struct.pack(">I", counter)).digest()
        counter += 1
    return bytes(out[:length])


def oaep_encrypt(
    hash_name: str, modulus: bytes, exponent: int, message: bytes, *, label: bytes, seed: bytes
) -> bytes:
    """RSAES-OAEP encryption (RFC 8017 §7.1.1) with MGF1 over the same hash.

    ``seed`` is hLen random bytes from the caller; ``label`` includes its terminating 0 as the
    TPM wants it ("SECRET\\0").

    Raises:
        ValueError: the message does not fit the key, or the seed is not hLen bytes.
    """
    h_len = hashlib.new(hash_name).digest_size
    k = len(modulus.lstrip(b"\0"))
    n = int.from_bytes(modulus, "big")
    if len(seed) != h_len:
        raise ValueError("the OAEP seed must be one digest long")
    if len(message) > k - 2 * h_len - 2:
        raise ValueError("the message is too long for this RSA key")
    l_hash = hashlib.new(hash_name, label).digest()
    db = l_hash + b"\0" * (k - len(message) - 2 * h_len - 2) + b"\1" + message
    masked_db = bytes(a ^ b for a, b in zip(db, _mgf1(hash_name, seed, len(db)), strict=True))
    masked_seed = bytes(
        a ^ b for a, b in zip(seed, _mgf1(hash_name, masked_db, h_len), strict=True)
    )
    em = int.from_bytes(b"\0" + masked_seed + masked_db, "big")
    return pow(em, exponent, n).to_bytes(k, "big")
