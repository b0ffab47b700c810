"""The owner's Ed25519 OpenPGP key: generation, public export, detached signatures.

The key is a version 4 key of public-key algorithm 22 (EdDSA) on the curve named by OID
1.3.6.1.4.1.11591.15.1, the "legacy" form gpg 2.2 writes for ``ed25519``: the public point is
an MPI of 0x40 followed by the 32-byte key, and a signature is the two MPIs R and S of the
Ed25519 signature of the SHA-256 digest (docs/openpgp.md §Formats).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from heads.core.openpgp import ed25519
from heads.core.openpgp.armor import armor
from heads.core.openpgp.packets import encode_mpi, encode_packet, encode_subpacket
from heads.core.secret import Secret
from heads.core.text import shown
from heads.errors import UsageError

__all__ = [
    "ED25519_OID",
    "MAX_USER_ID_BYTES",
    "OwnerKey",
    "export_public",
    "export_public_armored",
    "generate_owner_key",
    "public_key_body",
    "sign_detached",
    "signature_body",
    "user_id_prefix",
    "user_id_problem",
]

ED25519_OID: Final = bytes.fromhex("2b06010401da470f01")  # 1.3.6.1.4.1.11591.15.1
ALGO_EDDSA: Final = 22
HASH_SHA256: Final = 8
TAG_SIGNATURE: Final = 2
TAG_SECRET_KEY: Final = 5
TAG_PUBLIC_KEY: Final = 6
TAG_USER_ID: Final = 13
SIG_BINARY: Final = 0x00
SIG_POSITIVE_CERT: Final = 0x13
_NATIVE_POINT: Final = 0x40  # marks the MPI's payload as a native RFC 8032 point encoding
MAX_USER_ID_BYTES: Final = 1024
_MAX_TIME: Final = 0xFFFFFFFF

# Signature subpacket types (RFC 4880 §5.2.3.1, RFC 9580 §5.2.3.35 for the fingerprint).
SUB_CREATED: Final = 2
SUB_PREF_SYMMETRIC: Final = 11
SUB_ISSUER: Final = 16
SUB_PREF_HASH: Final = 21
SUB_PREF_COMPRESSION: Final = 22
SUB_KEYSERVER_PREFS: Final = 23
SUB_KEY_FLAGS: Final = 27
SUB_FEATURES: Final = 30
SUB_ISSUER_FINGERPRINT: Final = 33
_FLAGS_CERTIFY_SIGN: Final = 0x03
# AES-256, AES-192, AES-128; SHA-256 first, then SHA-512, SHA-384, SHA-224; ZLIB, BZip2, ZIP.
_PREFERRED_SYMMETRIC: Final = bytes((9, 8, 7))
_PREFERRED_HASH: Final = bytes((8, 10, 9, 11))
_PREFERRED_COMPRESSION: Final = bytes((2, 3, 1))


def _check_time(value: int, what: str) -> int:
    if not 0 <= value <= _MAX_TIME:
        raise UsageError(f"{what} {value} is outside the OpenPGP time range (1970-2106)")
    return value


def check_user_id(user_id: str) -> bytes:
    """The UTF-8 bytes of a user ID fit for a key: not empty, printable, bounded.

    Raises:
        UsageError: empty, too long, or holding control or format characters.
    """
    problem = user_id_problem(user_id)
    if problem is not None:
        raise UsageError(f"the key's user ID {problem}")
    return user_id.encode("utf-8")


def user_id_problem(user_id: str) -> str | None:
    """Why ``user_id`` is unfit for the owner's key (a phrase), or None when it is fit."""
    if shown(user_id) != user_id:
        # Also catches lone surrogates, which have no UTF-8 encoding.
        return f"holds control characters: {shown(user_id)}"
    if not user_id.strip():
        return "is empty"
    if len(user_id.encode("utf-8")) > MAX_USER_ID_BYTES:
        return f"is longer than {MAX_USER_ID_BYTES} bytes"
    return None


def public_key_body(public: bytes, created: int) -> bytes:
    """The body of the v4 public key packet (RFC 4880 §5.5.2) of an Ed25519 key."""
    return (
        bytes((4,))
        + created.to_bytes(4, "big")
        + bytes((ALGO_EDDSA, len(ED25519_OID)))
        + ED25519_OID
        + encode_mpi(bytes((_NATIVE_POINT,)) + public)
    )


def key_prefix(public_body: bytes) -> bytes:
    """What a v4 signature over a key hashes first (RFC 4880 §5.2.4): 0x99, length, body."""
    return b"\x99" + len(public_body).to_bytes(2, "big") + public_body


def user_id_prefix(public_body: bytes, user_id: bytes) -> bytes:
    """What a certification of ``user_id`` hashes before the signature's own fields."""
    return key_prefix(public_body) + b"\xb4" + len(user_id).to_bytes(4, "big") + user_id


def fingerprint_of(public_body: bytes) -> str:
    """The v4 fingerprint (RFC 4880 §12.2): SHA-1 of the prefixed key body, upper-case hex."""
    return hashlib.sha1(key_prefix(public_body), usedforsecurity=False).hexdigest().upper()


@dataclass(frozen=True, slots=True)
class OwnerKey:
    """An Ed25519 signing key with one user ID.

    ``seed`` is the RFC 8032 private key (32 bytes); ``public`` the encoded point.
    """

    seed: Secret
    public: bytes
    created: int
    user_id: str

    def __post_init__(self) -> None:
        if len(self.seed) != ed25519.SEED_BYTES or len(self.public) != 32:
            raise ValueError("an Ed25519 key has a 32-byte seed and a 32-byte public key")
        _check_time(self.created, "the key creation time")

    @property
    def public_body(self) -> bytes:
        return public_key_body(self.public, self.created)

    @property
    def fingerprint(self) -> str:
        """40 upper-case hex digits (v4)."""
        return fingerprint_of(self.public_body)

    @property
    def key_id(self) -> bytes:
        """The low 64 bits of the fingerprint (RFC 4880 §12.2)."""
        return bytes.fromhex(self.fingerprint[-16:])


def generate_owner_key(user_id: str, *, created: int, rng: Callable[[int], bytes]) -> OwnerKey:
    """A new key from 32 bytes of ``rng`` (``os.urandom`` in the product).

    Raises:
        UsageError: a user ID that is empty, too long or not printable; a time outside
            OpenPGP's 32-bit range.
        ValueError: ``rng`` did not return 32 bytes.
    """
    check_user_id(user_id)
    _check_time(created, "the key creation time")
    seed = bytes(rng(ed25519.SEED_BYTES))
    if len(seed) != ed25519.SEED_BYTES:
        raise ValueError("the random source did not return 32 bytes")
    return OwnerKey(Secret(seed), ed25519.public_key(seed), created, user_id)


def signature_body(
    key: OwnerKey,
    sig_type: int,
    *,
    prefix: bytes,
    hashed: bytes,
    unhashed: bytes,
) -> bytes:
    """A v4 signature packet body (RFC 4880 §5.2.3) by ``key`` over ``prefix``.

    The digest is SHA-256 of the prefix, the signature's fields up to its hashed subpackets
    and the v4 trailer; Ed25519 signs that digest.
    """
    fields = bytes((4, sig_type, ALGO_EDDSA, HASH_SHA256)) + len(hashed).to_bytes(2, "big") + hashed
    trailer = b"\x04\xff" + len(fields).to_bytes(4, "big")
    hasher = hashlib.sha256(prefix)
    hasher.update(fields)
    hasher.update(trailer)
    digest = hasher.digest()
    signature = ed25519.sign(key.seed.reveal(), digest)
    return (
        fields
        + len(unhashed).to_bytes(2, "big")
        + unhashed
        + digest[:2]
        + encode_mpi(signature[:32])
        + encode_mpi(signature[32:])
    )


def _issuer_subpackets(key: OwnerKey, created: int) -> tuple[bytes, bytes]:
    """(hashed, unhashed) subpackets naming the signer, as gpg 2.2 places them."""
    fingerprint = bytes.fromhex(key.fingerprint)
    hashed = encode_subpacket(SUB_ISSUER_FINGERPRINT, b"\x04" + fingerprint)
    hashed += encode_subpacket(SUB_CREATED, created.to_bytes(4, "big"))
    return hashed, encode_subpacket(SUB_ISSUER, key.key_id)


def self_certification(key: OwnerKey) -> bytes:
    """The positive certification (0x13) binding the user ID, made at key creation.

    Key flags certify + sign; preferences SHA-256 first; made at ``key.created``, so the
    export of a key is always the same bytes (Ed25519 signatures are deterministic).
    """
    user_id = check_user_id(key.user_id)
    hashed, unhashed = _issuer_subpackets(key, key.created)
    hashed += encode_subpacket(SUB_KEY_FLAGS, bytes((_FLAGS_CERTIFY_SIGN,)))
    hashed += encode_subpacket(SUB_PREF_SYMMETRIC, _PREFERRED_SYMMETRIC)
    hashed += encode_subpacket(SUB_PREF_HASH, _PREFERRED_HASH)
    hashed += encode_subpacket(SUB_PREF_COMPRESSION, _PREFERRED_COMPRESSION)
    hashed += encode_subpacket(SUB_FEATURES, b"\x01")  # modification detection
    hashed += encode_subpacket(SUB_KEYSERVER_PREFS, b"\x80")  # no-modify
    return signature_body(
        key,
        SIG_POSITIVE_CERT,
        prefix=user_id_prefix(key.public_body, user_id),
        hashed=hashed,
        unhashed=unhashed,
    )


def export_public(key: OwnerKey) -> bytes:
    """The binary transferable public key: key packet, user ID, self-certification.

    gpg imports it, and gpgv reads it as a keyring, also under the name ``pubring.kbx``
    (gpgv recognises a keybox by its magic, not by the file name; docs/openpgp.md).
    """
    return (
        encode_packet(TAG_PUBLIC_KEY, key.public_body)
        + encode_packet(TAG_USER_ID, check_user_id(key.user_id))
        + encode_packet(TAG_SIGNATURE, self_certification(key))
    )


def export_public_armored(key: OwnerKey) -> bytes:
    """:func:`export_public` in ASCII armor (``public-key.asc`` beside a key backup)."""
    return armor("PUBLIC KEY BLOCK", export_public(key))


def sign_detached(key: OwnerKey, data: bytes, *, created: int) -> bytes:
    """An ASCII-armored detached signature of binary ``data`` (type 0x00, SHA-256).

    Raises:
        UsageError: ``created`` outside OpenPGP's 32-bit time range, or before the key's
            creation (a clock that is wrong).
    """
    _check_time(created, "the signature time")
    if created < key.created:
        # gpgv refuses a signature older than its key; better to say why here, where the
        # wrong clock can still be fixed, than to leave /boot signed but unverifiable.
        raise UsageError(
            f"the signature time {created} is before the key was made ({key.created})",
            hint="set the system clock to the current date and sign again",
        )
    hashed, unhashed = _issuer_subpackets(key, created)
    body = signature_body(key, SIG_BINARY, prefix=data, hashed=hashed, unhashed=unhashed)
    return armor("SIGNATURE", encode_packet(TAG_SIGNATURE, body))
