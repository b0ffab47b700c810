"""Reading transferable keys: the primary key, its first user ID and that ID's certification.

Shared by :mod:`heads.core.openpgp.backup` (secret keys) and :func:`read_public` (public
keys).  Only a v4 Ed25519 primary key is read (docs/openpgp.md §Formats); subkeys, further
user IDs, user attributes and trust packets after it are skipped.  The user ID must carry a
certification by the primary key that verifies, so a key file whose user ID was replaced is
refused rather than shown under a name its owner never signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from heads.core.openpgp.armor import MAX_ARMOR_BYTES, dearmor
from heads.core.openpgp.key import (
    ALGO_EDDSA,
    ED25519_OID,
    SUB_ISSUER,
    SUB_ISSUER_FINGERPRINT,
    TAG_SIGNATURE,
    TAG_USER_ID,
    fingerprint_of,
    public_key_body,
    user_id_prefix,
    user_id_problem,
)
from heads.core.openpgp.packets import Packet, Reader, read_packets
from heads.core.openpgp.verify import Signature, parse_signature, verify_signature
from heads.errors import FormatError

__all__ = [
    "MAX_SIGNATURE_CHECKS",
    "PrimaryKey",
    "PublicKey",
    "read_primary",
    "read_public",
    "unarmor",
]

_TAG_SUBKEYS: Final = frozenset({7, 14})
_CERTIFICATIONS: Final = frozenset({0x10, 0x11, 0x12, 0x13})
MAX_SIGNATURE_CHECKS: Final = 16
_NATIVE_POINT: Final = 0x40


@dataclass(frozen=True, slots=True)
class PrimaryKey:
    """The public part of a primary key packet and where its fields ended."""

    public: bytes
    created: int
    body_end: int  # offset in the packet body after the public fields
    public_body: bytes


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verified public key: the Ed25519 point, its creation time and certified user ID."""

    public: bytes
    created: int
    user_id: str

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(public_key_body(self.public, self.created))


def unarmor(data: bytes, *, label: str, source: str) -> bytes:
    """Binary packets as given, or the contents of an armor block with ``label``.

    Raises:
        FormatError: larger than any key file (:data:`MAX_ARMOR_BYTES`), or bad armor.
    """
    if len(data) > MAX_ARMOR_BYTES:
        raise FormatError(f"larger than {MAX_ARMOR_BYTES} bytes: not a key file", source=source)
    if data.lstrip()[:5] == b"-----":
        return dearmor(data, label=label, source=source)
    return data


def read_primary(packet: Packet, *, source: str) -> PrimaryKey:
    """The public fields of a v4 EdDSA/Ed25519 key packet (public or secret).

    Raises:
        FormatError: another version, algorithm or curve, or a malformed point.
    """
    reader = Reader(packet.body, source=source, base=packet.offset)
    version = reader.byte("key version")
    if version != 4:
        raise reader.fail(f"key version {version}; only version 4 keys are read")
    created = reader.uint(4, "key creation time")
    algo = reader.byte("key algorithm")
    if algo != ALGO_EDDSA:
        raise reader.fail(f"key algorithm {algo}; only EdDSA (22) Ed25519 keys are read")
    oid_len = reader.byte("curve OID length")
    if oid_len in {0, 0xFF}:
        raise reader.fail("reserved curve OID length")
    oid = reader.take(oid_len, "curve OID")
    if oid != ED25519_OID:
        raise reader.fail(f"curve OID {oid.hex()}; only Ed25519 (1.3.6.1.4.1.11591.15.1)")
    point = reader.mpi("public point", max_bytes=33)
    if len(point) != 33 or point[0] != _NATIVE_POINT:
        raise reader.fail("the public point is not a native 32-byte Ed25519 point")
    return PrimaryKey(point[1:], created, reader.pos, packet.body[: reader.pos])


def _names_another_issuer(signature: Signature, fingerprint: bytes) -> bool:
    """Whether the signature says it was made by a key other than ``fingerprint``'s."""
    for kind, _, body in (*signature.hashed, *signature.unhashed):
        if kind == SUB_ISSUER_FINGERPRINT and body[1:] != fingerprint:
            return True
        if kind == SUB_ISSUER and body != fingerprint[-8:]:
            return True
    return False


def certified_user_id(packets: list[Packet], primary: PrimaryKey, *, source: str) -> str:
    """The first user ID of the primary key that has a valid certification by that key.

    Signatures that name another issuer (certifications by other people) are skipped
    unchecked, and at most :data:`MAX_SIGNATURE_CHECKS` are verified: a file stuffed with
    signatures cannot keep the Ed25519 arithmetic busy for minutes.

    Raises:
        FormatError: no user ID, a certified user ID that is unfit (not UTF-8, control
            characters, empty), none certified, or too many signatures to check.
    """
    fingerprint = bytes.fromhex(fingerprint_of(primary.public_body))
    checks = 0
    seen_user_id = False
    index = 1
    while index < len(packets) and packets[index].tag not in _TAG_SUBKEYS:
        packet = packets[index]
        index += 1
        if packet.tag != TAG_USER_ID:
            continue
        seen_user_id = True
        prefix = user_id_prefix(primary.public_body, packet.body)
        while index < len(packets) and packets[index].tag == TAG_SIGNATURE:
            sig_packet = packets[index]
            index += 1
            try:
                signature = parse_signature(sig_packet.body, source=source, base=sig_packet.offset)
            except FormatError:
                continue  # a signature we cannot read certifies nothing; others may
            if signature.sig_type not in _CERTIFICATIONS or _names_another_issuer(
                signature, fingerprint
            ):
                continue
            checks += 1
            if checks > MAX_SIGNATURE_CHECKS:
                raise FormatError(
                    f"more than {MAX_SIGNATURE_CHECKS} certifications to check",
                    source=source,
                    offset=sig_packet.offset,
                )
            if verify_signature(primary.public, signature, prefix):
                return _fit_user_id(packet, source=source)
    if not seen_user_id:
        raise FormatError("the key has no user ID", source=source)
    raise FormatError("no user ID of the key carries a valid self-certification", source=source)


def _fit_user_id(packet: Packet, *, source: str) -> str:
    try:
        user_id = packet.body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(
            "a user ID that is not UTF-8", source=source, offset=packet.offset
        ) from None
    problem = user_id_problem(user_id)
    if problem is not None:
        raise FormatError(f"the user ID {problem}", source=source, offset=packet.offset)
    return user_id


def read_public(data: bytes, *, source: str) -> PublicKey:
    """The first key of a transferable public key (binary or armored ``PUBLIC KEY BLOCK``).

    Raises:
        FormatError: not a v4 Ed25519 public key with a certified user ID.
    """
    packets = read_packets(unarmor(data, label="PUBLIC KEY BLOCK", source=source), source=source)
    if not packets or packets[0].tag != 6:
        raise FormatError("does not start with a public key packet", source=source, offset=0)
    primary = read_primary(packets[0], source=source)
    if primary.body_end != len(packets[0].body):
        raise FormatError(
            "trailing bytes after the public key", source=source, offset=packets[0].offset
        )
    user_id = certified_user_id(packets, primary, source=source)
    return PublicKey(primary.public, primary.created, user_id)
