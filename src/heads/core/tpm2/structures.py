"""The TPM 2.0 structures heads sends and reads (TPM 2.0 Part 2), marshalled and parsed.

Parsing keeps the marshalled bytes where the TPM hashes them (an object's public area, an NV
index's public area): names are computed over exactly what was read (docs/tpm-objects.md §The
command layer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from heads.core.tpm2.constants import ALG, CAP, ECC_CURVE, TPMA_OBJECT
from heads.core.tpm2.marshal import Reader, tpm2b, u16, u32

__all__ = [
    "NvPublic",
    "PcrSelect",
    "Public",
    "hash_for",
    "keyedhash_seal_template",
    "marshal_pcr_selections",
    "read_capability_kind",
    "read_digests",
    "read_handles",
    "read_pcr_selections",
    "read_properties",
    "sensitive_create",
    "storage_primary_template",
]

_MAX_DIGEST = 64
_MAX_RSA_BYTES = 512
_MAX_ECC_BYTES = 66
_MAX_LIST = 1024
_HASHES = {ALG.SHA1: "sha1", ALG.SHA256: "sha256", ALG.SHA384: "sha384", ALG.SHA512: "sha512"}
# Schemes whose details hold a hash algorithm (TPMS_SCHEME_HASH); ECDAA adds a count.
_HASH_SCHEMES = frozenset(
    {
        ALG.HMAC,
        ALG.RSASSA,
        ALG.RSAPSS,
        ALG.OAEP,
        ALG.ECDSA,
        ALG.ECDH,
        ALG.SM2,
        ALG.ECSCHNORR,
        ALG.ECMQV,
        ALG.KDF1_SP800_56A,
        ALG.KDF2,
        ALG.KDF1_SP800_108,
    }
)


def hash_for(alg: int) -> str:
    """The hashlib name of a TPM hash algorithm.

    Raises:
        ValueError: not a hash heads can compute.
    """
    try:
        return _HASHES[ALG(alg)]
    except (ValueError, KeyError):
        raise ValueError(f"unsupported hash algorithm 0x{alg:04x}") from None


@dataclass(frozen=True, slots=True)
class PcrSelect:
    """One TPMS_PCR_SELECTION: a bank and its bitmap."""

    alg: int
    bitmap: bytes

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.bitmap) * 8) if self.bitmap[i // 8] >> (i % 8) & 1)


def marshal_pcr_selections(selections: Sequence[PcrSelect]) -> bytes:
    """TPML_PCR_SELECTION."""
    out = bytearray(u32(len(selections)))
    for sel in selections:
        out += u16(sel.alg) + bytes((len(sel.bitmap),)) + sel.bitmap
    return bytes(out)


def read_pcr_selections(r: Reader, field: str) -> tuple[PcrSelect, ...]:
    n = r.count(field, 3, 16)
    out = []
    for i in range(n):
        alg = r.u16(f"{field}[{i}].hash")
        size = r.u8(f"{field}[{i}].sizeofSelect")
        if size > 32:
            raise r.fail(f"{field}[{i}].sizeofSelect", f"{size} octets is too many")
        out.append(PcrSelect(alg, r.take(size, f"{field}[{i}].pcrSelect")))
    return tuple(out)


def read_digests(r: Reader, field: str) -> tuple[bytes, ...]:
    """TPML_DIGEST."""
    n = r.count(field, 2, 8)
    return tuple(r.tpm2b(f"{field}[{i}]", _MAX_DIGEST) for i in range(n))


def read_capability_kind(r: Reader, field: str, expected: CAP) -> None:
    """The capability selector of a TPMS_CAPABILITY_DATA, which must be the one asked for."""
    cap = r.u32(f"{field}.capability")
    if cap != expected:
        raise r.fail(f"{field}.capability", f"0x{cap:x}, not the 0x{expected:x} asked for")


def read_handles(r: Reader, field: str) -> tuple[int, ...]:
    """TPML_HANDLE."""
    n = r.count(field, 4, _MAX_LIST)
    return tuple(r.u32(f"{field}[{i}]") for i in range(n))


def read_properties(r: Reader, field: str) -> dict[int, int]:
    """TPML_TAGGED_TPM_PROPERTY."""
    n = r.count(field, 8, _MAX_LIST)
    props: dict[int, int] = {}
    for i in range(n):
        prop = r.u32(f"{field}[{i}].property")
        props[prop] = r.u32(f"{field}[{i}].value")
    return props


def _read_scheme(r: Reader, field: str) -> None:
    scheme = r.u16(f"{field}.scheme")
    if scheme == ALG.NULL:
        return
    if scheme == ALG.XOR:
        r.u16(f"{field}.details.hashAlg")
        r.u16(f"{field}.details.kdf")
    elif scheme == ALG.ECDAA:
        r.u16(f"{field}.details.hashAlg")
        r.u16(f"{field}.details.count")
    elif scheme in _HASH_SCHEMES:
        r.u16(f"{field}.details.hashAlg")
    elif scheme != ALG.RSAES:
        raise r.fail(f"{field}.scheme", f"unknown scheme 0x{scheme:04x}")


def _read_symmetric(r: Reader, field: str) -> None:
    if r.u16(f"{field}.algorithm") != ALG.NULL:
        r.u16(f"{field}.keyBits")
        r.u16(f"{field}.mode")


@dataclass(frozen=True, slots=True)
class Public:
    """A TPMT_PUBLIC: the fields heads looks at, and its marshalled bytes (``raw``)."""

    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    raw: bytes
    rsa_modulus: bytes = b""
    rsa_exponent: int = 0
    ecc_curve: int = 0
    ecc_x: bytes = b""
    ecc_y: bytes = b""

    @classmethod
    def read(cls, r: Reader, field: str) -> Public:
        """A TPM2B_PUBLIC."""
        size = r.u16(f"{field}.size")
        return cls.from_bytes(r.take(size, field), r.source, field)

    @classmethod
    def from_bytes(cls, raw: bytes, source: str, field: str = "TPMT_PUBLIC") -> Public:
        r = Reader(raw, source)
        kind = r.u16(f"{field}.type")
        name_alg = r.u16(f"{field}.nameAlg")
        attrs = r.u32(f"{field}.objectAttributes")
        policy = r.tpm2b(f"{field}.authPolicy", _MAX_DIGEST)
        params = f"{field}.parameters"
        extra: dict[str, bytes | int] = {}
        if kind == ALG.KEYEDHASH:
            _read_scheme(r, f"{params}.scheme")
            r.tpm2b(f"{field}.unique", _MAX_DIGEST)
        elif kind == ALG.SYMCIPHER:
            _read_symmetric(r, f"{params}.sym")
            r.tpm2b(f"{field}.unique", _MAX_DIGEST)
        elif kind == ALG.RSA:
            _read_symmetric(r, f"{params}.symmetric")
            _read_scheme(r, f"{params}.scheme")
            r.u16(f"{params}.keyBits")
            extra["rsa_exponent"] = r.u32(f"{params}.exponent")
            extra["rsa_modulus"] = r.tpm2b(f"{field}.unique", _MAX_RSA_BYTES)
        elif kind == ALG.ECC:
            _read_symmetric(r, f"{params}.symmetric")
            _read_scheme(r, f"{params}.scheme")
            extra["ecc_curve"] = r.u16(f"{params}.curveID")
            _read_scheme(r, f"{params}.kdf")
            extra["ecc_x"] = r.tpm2b(f"{field}.unique.x", _MAX_ECC_BYTES)
            extra["ecc_y"] = r.tpm2b(f"{field}.unique.y", _MAX_ECC_BYTES)
        else:
            raise r.fail(f"{field}.type", f"unknown object type 0x{kind:04x}")
        r.end(field)
        return cls(kind, name_alg, attrs, policy, raw, **extra)  # type: ignore[arg-type]

    def marshal(self) -> bytes:
        """TPM2B_PUBLIC."""
        return tpm2b(self.raw)

    def name(self) -> bytes:
        """The object's name: nameAlg, then the nameAlg digest of the public area.

        Raises:
            ValueError: a nameAlg heads cannot compute.
        """
        return u16(self.name_alg) + hashlib.new(hash_for(self.name_alg), self.raw).digest()


def storage_primary_template() -> bytes:
    """TPMT_PUBLIC of heads' storage primary key: ECC P-256, AES-128-CFB, restricted decrypt.

    These exact bytes make the same key from the same owner seed as every earlier heads
    release (docs/tpm-objects.md §Storage primary key).
    """
    attrs = (
        TPMA_OBJECT.RESTRICTED
        | TPMA_OBJECT.DECRYPT
        | TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.USERWITHAUTH
        | TPMA_OBJECT.NODA
    )
    return (
        u16(ALG.ECC)
        + u16(ALG.SHA256)
        + u32(attrs)
        + tpm2b(b"")
        + u16(ALG.AES)
        + u16(128)
        + u16(ALG.CFB)
        + u16(ALG.NULL)  # scheme
        + u16(ECC_CURVE.NIST_P256)
        + u16(ALG.NULL)  # kdf
        + tpm2b(b"")
        + tpm2b(b"")
    )


def keyedhash_seal_template(auth_policy: bytes, *, no_da: bool) -> bytes:
    """TPMT_PUBLIC of a sealed data object: fixedtpm|fixedparent|adminwithpolicy[|noda]."""
    attrs = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.ADMINWITHPOLICY
    if no_da:
        attrs |= TPMA_OBJECT.NODA
    return (
        u16(ALG.KEYEDHASH)
        + u16(ALG.SHA256)
        + u32(attrs)
        + tpm2b(auth_policy)
        + u16(ALG.NULL)
        + tpm2b(b"")
    )


def sensitive_create(user_auth: bytes, data: bytes) -> bytearray:
    """TPM2B_SENSITIVE_CREATE, in a bytearray the caller wipes (it holds secrets)."""
    inner = bytearray(u16(len(user_auth)))
    inner += user_auth
    inner += u16(len(data))
    inner += data
    out = bytearray(u16(len(inner)))
    out += inner
    inner[:] = bytes(len(inner))
    return out


@dataclass(frozen=True, slots=True)
class NvPublic:
    """A TPMS_NV_PUBLIC and its marshalled bytes."""

    index: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    data_size: int
    raw: bytes

    @classmethod
    def build(cls, index: int, attributes: int, data_size: int) -> NvPublic:
        raw = u32(index) + u16(ALG.SHA256) + u32(attributes) + tpm2b(b"") + u16(data_size)
        return cls(index, ALG.SHA256, attributes, b"", data_size, raw)

    @classmethod
    def read(cls, r: Reader, field: str) -> NvPublic:
        """A TPM2B_NV_PUBLIC."""
        size = r.u16(f"{field}.size")
        raw = r.take(size, field)
        inner = Reader(raw, r.source)
        index = inner.u32(f"{field}.nvIndex")
        name_alg = inner.u16(f"{field}.nameAlg")
        attrs = inner.u32(f"{field}.attributes")
        policy = inner.tpm2b(f"{field}.authPolicy", _MAX_DIGEST)
        data_size = inner.u16(f"{field}.dataSize")
        inner.end(field)
        return cls(index, name_alg, attrs, policy, data_size, raw)

    def marshal(self) -> bytes:
        """TPM2B_NV_PUBLIC."""
        return tpm2b(self.raw)

    def name(self) -> bytes:
        """Raises ValueError for a nameAlg heads cannot compute."""
        return u16(self.name_alg) + hashlib.new(hash_for(self.name_alg), self.raw).digest()
