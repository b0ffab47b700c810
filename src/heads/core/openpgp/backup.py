"""The owner's secret key as a passphrase-protected backup (RFC 4880 §5.5.3, §3.7).

:func:`export_secret` writes what ``gpg --export-secret-keys --armor`` writes for an Ed25519
key: the secret key packet, the user ID and its self-certification.  The secret (the seed as
an MPI, then its SHA-1) is encrypted with AES-256 in CFB mode under a key from the iterated
and salted S2K with SHA-256 and the largest count (65011712 bytes, the count gpg 2.2 uses
when it exports).  :func:`import_secret` reads that and gpg's own exports (AES-128 or AES-256,
S2K with SHA-1 or SHA-2, the 16-bit or the SHA-1 checksum, or no protection).

A wrong passphrase shows as a checksum that does not match: :class:`WrongPassphraseError`,
whose message names the file only.  A matching checksum is not trusted alone: the decrypted
seed must give the packet's public key, and the user ID must carry a valid self-certification.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Final

from heads.core.openpgp import ed25519
from heads.core.openpgp.armor import armor
from heads.core.openpgp.key import (
    TAG_SECRET_KEY,
    TAG_SIGNATURE,
    TAG_USER_ID,
    OwnerKey,
    check_user_id,
    self_certification,
)
from heads.core.openpgp.packets import Reader, encode_mpi, encode_packet, read_packets
from heads.core.openpgp.s2k import HASHES, derive_key
from heads.core.openpgp.transferable import certified_user_id, read_primary, unarmor
from heads.core.secret import Secret
from heads.core.tpm2 import aes
from heads.errors import FormatError, UsageError, WrongPassphraseError

__all__ = ["S2K_CODED_COUNT", "export_secret", "import_secret"]

S2K_CODED_COUNT: Final = 0xFF
_USAGE_NONE: Final = 0
_USAGE_SHA1: Final = 254
_USAGE_SUM16: Final = 255
_S2K_ITERATED: Final = 3
_S2K_GNU: Final = 101
_CIPHER_KEY_BYTES: Final = {7: 16, 9: 32}  # AES-128, AES-256
_CIPHER_AES256: Final = 9
_HASH_SHA256: Final = 8
_SALT_BYTES: Final = 8


def _wipe(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))


def _random(rng: Callable[[int], bytes], size: int) -> bytes:
    value = bytes(rng(size))
    if len(value) != size:
        raise ValueError(f"the random source did not return {size} bytes")
    return value


def export_secret(
    key: OwnerKey,
    passphrase: Secret,
    *,
    rng: Callable[[int], bytes],
    s2k_count: int = S2K_CODED_COUNT,
) -> bytes:
    """The ASCII-armored transferable secret key, protected by ``passphrase``.

    ``s2k_count`` is the coded S2K count (RFC 4880 §3.7.1.3); tests lower it, the product
    keeps the default.

    Raises:
        UsageError: an empty passphrase (the backup would be readable by whoever finds it).
    """
    if not passphrase.reveal():
        raise UsageError("the key backup needs a passphrase")
    if not 0 <= s2k_count <= 0xFF:
        raise ValueError("the coded S2K count is one byte")
    salt = _random(rng, _SALT_BYTES)
    iv = _random(rng, aes.BLOCK)
    clear = bytearray(encode_mpi(key.seed.reveal()))
    clear += hashlib.sha1(clear, usedforsecurity=False).digest()
    cipher_key = derive_key(
        passphrase, hash_id=_HASH_SHA256, salt=salt, coded_count=s2k_count, size=32
    )
    try:
        encrypted = bytes(aes.cfb_encrypt(bytes(cipher_key), iv, clear))
    finally:
        _wipe(cipher_key)
        _wipe(clear)
    body = (
        key.public_body
        + bytes((_USAGE_SHA1, _CIPHER_AES256, _S2K_ITERATED, _HASH_SHA256))
        + salt
        + bytes((s2k_count,))
        + iv
        + encrypted
    )
    packets = (
        encode_packet(TAG_SECRET_KEY, body)
        + encode_packet(TAG_USER_ID, check_user_id(key.user_id))
        + encode_packet(TAG_SIGNATURE, self_certification(key))
    )
    return armor("PRIVATE KEY BLOCK", packets)


def _decrypt(reader: Reader, passphrase: Secret, *, source: str) -> bytearray:
    """The clear secret fields (MPIs) of the key packet; the caller wipes them."""
    usage = reader.byte("S2K usage")
    if usage == _USAGE_NONE:
        clear = bytearray(reader.rest())
        if len(clear) < 2:
            raise reader.fail("truncated secret key")
        checksum = int.from_bytes(clear[-2:], "big")
        del clear[-2:]
        if sum(clear) & 0xFFFF != checksum:
            raise FormatError("the secret key's checksum differs", source=source)
        return clear
    if usage not in {_USAGE_SHA1, _USAGE_SUM16}:
        raise reader.fail(f"S2K usage {usage}: a key encrypted without an S2K is not read")
    cipher = reader.byte("cipher algorithm")
    key_bytes = _CIPHER_KEY_BYTES.get(cipher)
    if key_bytes is None:
        raise reader.fail(f"cipher algorithm {cipher}; AES-128 (7) and AES-256 (9) are read")
    s2k_type = reader.byte("S2K type")
    if s2k_type == _S2K_GNU:
        raise reader.fail("the secret key is on a smartcard or absent (a gpg stub), not here")
    if s2k_type != _S2K_ITERATED:
        raise reader.fail(f"S2K type {s2k_type}; only iterated and salted (3) is read")
    hash_id = reader.byte("S2K hash")
    if hash_id not in HASHES:
        raise reader.fail(f"S2K hash {hash_id}; SHA-1 and SHA-2 are read")
    salt = reader.take(_SALT_BYTES, "S2K salt")
    coded_count = reader.byte("S2K count")
    iv = reader.take(aes.BLOCK, "cipher IV")
    encrypted = reader.rest()
    cipher_key = derive_key(
        passphrase, hash_id=hash_id, salt=salt, coded_count=coded_count, size=key_bytes
    )
    try:
        clear = aes.cfb_decrypt(bytes(cipher_key), iv, encrypted)
    finally:
        _wipe(cipher_key)
    check_size = 20 if usage == _USAGE_SHA1 else 2
    if len(clear) < check_size:
        _wipe(clear)
        raise FormatError("truncated encrypted secret key", source=source)
    check = bytes(clear[-check_size:])
    del clear[-check_size:]
    if usage == _USAGE_SHA1:
        expected = hashlib.sha1(clear, usedforsecurity=False).digest()
    else:
        expected = (sum(clear) & 0xFFFF).to_bytes(2, "big")
    if not hmac.compare_digest(check, expected):
        _wipe(clear)
        raise WrongPassphraseError(
            f"the passphrase does not unlock the secret key in {source}",
            hint="type the passphrase chosen when the key backup was made; if it is right,"
            " the backup is damaged",
        )
    return clear


def _seed_of(clear: bytearray, *, source: str) -> bytes:
    """The 32-byte seed in the decrypted MPI, read in place (no copy of the whole field)."""
    where = f"{source} (decrypted secret)"
    if len(clear) < 2:
        raise FormatError("truncated secret seed", source=where, offset=0)
    bits = int.from_bytes(clear[:2], "big")
    size = (bits + 7) // 8
    if size > ed25519.SEED_BYTES:
        raise FormatError(f"a secret seed of {bits} bits, not 256", source=where, offset=0)
    if len(clear) != 2 + size:
        raise FormatError("the secret seed does not fill its field", source=where, offset=2)
    return bytes(clear[2:]).rjust(ed25519.SEED_BYTES, b"\x00")


def import_secret(data: bytes, passphrase: Secret, *, source: str) -> OwnerKey:
    """The owner key in a transferable secret key (binary or armored), unlocked.

    Raises:
        WrongPassphraseError: the passphrase does not decrypt the secret.
        FormatError: anything else: not a v4 Ed25519 secret key, a seed that does not give
            the public key, no certified user ID, malformed packets (source and offset).
    """
    binary = unarmor(data, label="PRIVATE KEY BLOCK", source=source)
    packets = read_packets(binary, source=source)
    if not packets or packets[0].tag != TAG_SECRET_KEY:
        raise FormatError("does not start with a secret key packet", source=source, offset=0)
    packet = packets[0]
    primary = read_primary(packet, source=source)
    # The user ID's certification is checked before the slow S2K runs: a forged file fails
    # fast, and nothing is decrypted for a key we would refuse anyway.
    user_id = certified_user_id(packets, primary, source=source)
    reader = Reader(packet.body, source=source, base=packet.offset)
    reader.take(primary.body_end, "public key")
    clear = _decrypt(reader, passphrase, source=source)
    try:
        seed = _seed_of(clear, source=source)
    finally:
        _wipe(clear)
    if not hmac.compare_digest(ed25519.public_key(seed), primary.public):
        raise FormatError(
            "the secret does not belong to the key's public part",
            source=source,
            offset=packet.offset,
        )
    return OwnerKey(Secret(seed), primary.public, primary.created, user_id)
