"""Reading v4 signature packets and checking Ed25519 ones (RFC 4880 §5.2.3, §5.2.4).

The runtime verifies /boot with gpgv; this checker serves the key backup (the user ID read
back from a USB drive must carry a valid self-certification) and the tests, which check our
signatures independently of gpg (docs/openpgp.md §What is checked).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from heads.core.openpgp import ed25519
from heads.core.openpgp.packets import Reader, read_subpackets

__all__ = ["HASH_NAMES", "Signature", "parse_signature", "verify_signature"]

# Hashes a signature may use; MD5 and SHA-1 are refused as too weak to certify anything.
HASH_NAMES: Final = {8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
_ALGO_EDDSA: Final = 22


@dataclass(frozen=True, slots=True)
class Signature:
    """The parts of a v4 signature that verification and policy need."""

    sig_type: int
    pubkey_algo: int
    hash_algo: int
    hashed_fields: bytes  # version through the hashed subpackets: what the digest covers
    hashed: tuple[tuple[int, bool, bytes], ...]
    unhashed: tuple[tuple[int, bool, bytes], ...]
    digest_prefix: bytes
    values: tuple[bytes, ...]  # the algorithm's MPIs (R and S for EdDSA)

    def subpacket(self, kind: int) -> bytes | None:
        """The body of the first hashed subpacket of ``kind``, if any."""
        return next((body for k, _, body in self.hashed if k == kind), None)


def parse_signature(body: bytes, *, source: str, base: int) -> Signature:
    """Parse a version 4 signature packet body.

    Raises:
        FormatError: another version, truncated fields, overlong subpacket areas or MPIs.
    """
    reader = Reader(body, source=source, base=base)
    version = reader.byte("signature version")
    if version != 4:
        reader.pos -= 1
        raise reader.fail(f"signature version {version}; only version 4 is read")
    sig_type = reader.byte("signature type")
    algo = reader.byte("signature algorithm")
    hash_algo = reader.byte("signature hash")
    hashed_len = reader.uint(2, "hashed subpacket length")
    hashed_at = base + reader.pos
    hashed = reader.take(hashed_len, "hashed subpackets")
    hashed_fields = body[: reader.pos]
    unhashed_len = reader.uint(2, "unhashed subpacket length")
    unhashed_at = base + reader.pos
    unhashed = reader.take(unhashed_len, "unhashed subpackets")
    prefix = reader.take(2, "digest prefix")
    values: list[bytes] = []
    while reader.remaining:
        values.append(reader.mpi("signature value", max_bytes=1024))
    return Signature(
        sig_type,
        algo,
        hash_algo,
        hashed_fields,
        tuple(read_subpackets(hashed, source=source, base=hashed_at)),
        tuple(read_subpackets(unhashed, source=source, base=unhashed_at)),
        prefix,
        tuple(values),
    )


def verify_signature(public: bytes, signature: Signature, prefix: bytes) -> bool:
    """Whether ``signature`` is the Ed25519 key ``public``'s signature over ``prefix``.

    ``prefix`` is what precedes the signature's own fields in the hash: the data for a
    document signature, the key and user ID for a certification (RFC 4880 §5.2.4).
    """
    name = HASH_NAMES.get(signature.hash_algo)
    if signature.pubkey_algo != _ALGO_EDDSA or name is None or len(signature.values) != 2:
        return False
    r, s = signature.values
    if len(r) > 32 or len(s) > 32:
        return False
    hasher = hashlib.new(name, prefix)
    hasher.update(signature.hashed_fields)
    hasher.update(b"\x04\xff" + len(signature.hashed_fields).to_bytes(4, "big"))
    digest = hasher.digest()
    if digest[:2] != signature.digest_prefix:
        return False
    return ed25519.verify(public, digest, r.rjust(32, b"\x00") + s.rjust(32, b"\x00"))
