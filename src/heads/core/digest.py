"""Hash algorithms as the TPM names them, and the PCR extend arithmetic.

TPM 2.0 Part 1 §17.2: extend is ``new = H(old || digest)``; every PCR starts at zeros
(except PCR 0 under a StartupLocality or H-CRTM event, handled by the event-log replay).
"""

from __future__ import annotations

from enum import Enum

# As typing.TYPE_CHECKING, without importing typing (docs/architecture.md §Command start-up)
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Final

__all__ = ["HashAlg", "extend", "extend_string", "zero_digest"]


class HashAlg(Enum):
    """A PCR bank's hash algorithm: value is the name used in selections ("sha256")."""

    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"
    SM3_256 = "sm3_256"

    # Enum hashes a member by hashing its name, in Python code; a member is a singleton
    # compared by identity, so the identity hash (in C) is as good, and the event-log replay,
    # which keys every digest and PCR bank by HashAlg, runs measurably faster with it.
    __hash__ = object.__hash__

    @property
    def tpm_alg_id(self) -> int:
        """TPM_ALG_ID (TPM 2.0 Part 2 §6.3)."""
        return _ALG_IDS[self]

    @property
    def digest_size(self) -> int:
        return _SIZES[self]

    @classmethod
    def from_tpm_alg_id(cls, alg_id: int) -> HashAlg:
        """Raises ValueError for an algorithm id that is not a hash we know."""
        for alg, value in _ALG_IDS.items():
            if value == alg_id:
                return alg
        raise ValueError(f"unknown TPM hash algorithm id 0x{alg_id:04x}")

    @classmethod
    def from_name(cls, name: str) -> HashAlg:
        """Accepts "sha256", "SHA256", "sha-256"; raises ValueError otherwise."""
        norm = name.strip().lower().replace("-", "").replace("_", "")
        for alg in cls:
            if alg.value.replace("_", "") == norm:
                return alg
        raise ValueError(f"unknown hash algorithm {name!r}")

    def hash(self, data: bytes) -> bytes:
        """Digest of ``data``.  Raises ValueError for SM3 when OpenSSL lacks it."""
        # Imported here: the event-log replay calls this only for SM3 and must not load
        # OpenSSL otherwise (heads.core.eventlog.model._HASHERS).
        import hashlib  # noqa: PLC0415

        try:
            return hashlib.new(_OPENSSL_NAMES[self], data).digest()
        except ValueError as exc:  # pragma: no cover - depends on the OpenSSL build
            raise ValueError(f"{self.value} is not available in this Python's OpenSSL") from exc


_ALG_IDS: Final = {
    HashAlg.SHA1: 0x0004,
    HashAlg.SHA256: 0x000B,
    HashAlg.SHA384: 0x000C,
    HashAlg.SHA512: 0x000D,
    HashAlg.SM3_256: 0x0012,
}
_OPENSSL_NAMES: Final = {
    HashAlg.SHA1: "sha1",
    HashAlg.SHA256: "sha256",
    HashAlg.SHA384: "sha384",
    HashAlg.SHA512: "sha512",
    HashAlg.SM3_256: "sm3",
}
_SIZES: Final = {
    HashAlg.SHA1: 20,
    HashAlg.SHA256: 32,
    HashAlg.SHA384: 48,
    HashAlg.SHA512: 64,
    HashAlg.SM3_256: 32,
}


def zero_digest(alg: HashAlg) -> bytes:
    """The reset value of PCRs 0-15 (and of PCR 0 without a locality/H-CRTM event)."""
    return b"\0" * alg.digest_size


def extend(alg: HashAlg, old: bytes, digest: bytes) -> bytes:
    """``H(old || digest)``.  Raises ValueError when a size does not fit the bank."""
    if len(old) != alg.digest_size or len(digest) != alg.digest_size:
        raise ValueError(
            f"{alg.value} extend needs {alg.digest_size}-byte values, "
            f"got {len(old)} and {len(digest)}"
        )
    return alg.hash(old + digest)


def extend_string(alg: HashAlg, old: bytes, text: str) -> bytes:
    """Heads' "extend with string S": extend with H(S), no trailing newline."""
    return extend(alg, old, alg.hash(text.encode("utf-8")))
